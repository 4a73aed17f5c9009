//! `/_emulator/agents`: create, list and delete the agents (M2M clients) of the environment's MCP
//! servers, as the dashboard's MCP server → Clients tab does ("Create Client": the secret is shown
//! once). An agent gets access tokens for its server at `POST /oauth/token` with
//! `client_credentials`. With a state directory, created agents survive restarts (only the
//! SHA-256 of a secret is stored); the fixtures' agents are listed too and cannot be deleted here.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, PRAGMA};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::super::extract::GatewayPath;
use super::{ControlBody, ControlQuery, WholeNumber};
use crate::config::DEFAULT_AGENT_TOKEN_LIFETIME_SECS;
use crate::flow::{
    AgentRequest, AgentView, CreateAgentError, DeleteAgentError, MAX_AGENT_NAME_CHARS,
};
use crate::management::{ApiError, GrpcCode, violation};
use crate::state::AppState;
use crate::types::ClientSecret;

/// `POST /_emulator/agents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRequest {
    /// The `res_…` the agent belongs to.
    resource_id: String,
    /// A name, optional.
    name: Option<String>,
    /// The scopes it may ask for; default none (the dashboard's scopes are optional).
    #[serde(default)]
    scopes: Vec<String>,
    /// Default 3600 s (the M2M default).
    token_lifetime_secs: Option<WholeNumber>,
}

/// `GET /_emulator/agents`.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    /// Only this resource's agents.
    resource_id: Option<String>,
}

/// An agent on the wire: never its secret.
#[derive(Debug, Serialize)]
struct AgentBody {
    client_id: String,
    resource_id: String,
    name: Option<String>,
    scopes: Vec<String>,
    token_lifetime_secs: u64,
    /// `fixtures` or `control`.
    source: &'static str,
    /// Unix seconds of the creation; `null` for a fixture's agent.
    created_at: Option<u64>,
}

impl From<AgentView> for AgentBody {
    fn from(agent: AgentView) -> Self {
        AgentBody {
            client_id: agent.client_id.to_string(),
            resource_id: agent.resource.to_string(),
            name: agent.name,
            scopes: agent.scopes,
            token_lifetime_secs: agent.token_lifetime_secs,
            source: if agent.created_at.is_some() {
                "control"
            } else {
                "fixtures"
            },
            created_at: agent.created_at,
        }
    }
}

/// The creation's answer: the agent and, this once, its secret.
#[derive(Debug, Serialize)]
struct CreatedBody {
    #[serde(flatten)]
    agent: AgentBody,
    client_secret: ClientSecret,
}

#[derive(Debug, Serialize)]
pub(super) struct AgentsBody {
    agents: Vec<AgentBody>,
}

/// 201 with the new agent and its secret, which is never shown again (`no-store`).
pub(super) async fn create(
    State(state): State<AppState>,
    ControlBody(request): ControlBody<CreateRequest>,
) -> Result<Response, ApiError> {
    if request
        .name
        .as_ref()
        .is_some_and(|name| name.chars().count() > MAX_AGENT_NAME_CHARS)
    {
        return Err(ApiError::invalid_argument(
            "invalid request",
            vec![violation(
                "name",
                format!("must be at most {MAX_AGENT_NAME_CHARS} characters"),
            )],
        ));
    }
    let token_lifetime_secs = request
        .token_lifetime_secs
        .map_or(DEFAULT_AGENT_TOKEN_LIFETIME_SECS, |WholeNumber(secs)| secs);
    let now = state.clock.now();
    let created = state
        .flows()
        .create_agent(
            AgentRequest {
                resource: request.resource_id,
                name: request.name,
                scopes: request.scopes,
                token_lifetime_secs,
            },
            now,
            state.ids.as_ref(),
        )
        .map_err(|error| match &error {
            CreateAgentError::UnknownResource(_) => {
                ApiError::new(GrpcCode::NotFound, error.to_string())
            }
            // Like an unknown resource, a scope the resource lacks is something the request
            // names that does not exist: NOT_FOUND, as the schema cannot say which scopes exist.
            CreateAgentError::ScopesNotOffered { .. } => {
                ApiError::new(GrpcCode::NotFound, error.to_string())
            }
            CreateAgentError::LifetimeOutOfRange => ApiError::invalid_argument(
                "invalid request",
                vec![violation("token_lifetime_secs", error.to_string())],
            ),
            CreateAgentError::TooMany => {
                ApiError::new(GrpcCode::ResourceExhausted, error.to_string())
            }
        })?;
    tracing::info!(
        client_id = %created.agent.client_id,
        resource = %created.agent.resource,
        "agent created through the control API"
    );
    let body = CreatedBody {
        agent: AgentBody::from(created.agent),
        client_secret: created.client_secret,
    };
    Ok((
        StatusCode::CREATED,
        [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")],
        Json(body),
    )
        .into_response())
}

/// Every agent (of `resource_id` when given): the fixtures' first, then the created ones, oldest
/// first.
pub(super) async fn list(
    State(state): State<AppState>,
    ControlQuery(query): ControlQuery<ListQuery>,
) -> Json<AgentsBody> {
    let agents = state
        .flows()
        .agents(query.resource_id.as_deref())
        .into_iter()
        .map(AgentBody::from)
        .collect();
    Json(AgentsBody { agents })
}

/// 204. The agent's tokens already issued stay valid until they expire (self-contained JWTs).
pub(super) async fn delete(
    State(state): State<AppState>,
    GatewayPath(client_id): GatewayPath<String>,
) -> Result<StatusCode, ApiError> {
    state
        .flows()
        .delete_agent(&client_id)
        .map_err(|error| match &error {
            DeleteAgentError::Unknown(_) => ApiError::new(GrpcCode::NotFound, error.to_string()),
            // Not this API's to delete: the fixtures would bring it back at the next start.
            DeleteAgentError::Configured(_) => {
                ApiError::new(GrpcCode::PermissionDenied, error.to_string())
            }
        })?;
    tracing::info!(%client_id, "agent deleted through the control API");
    Ok(StatusCode::NO_CONTENT)
}
