//! Agents: the machine-to-machine clients of an MCP server (the dashboard's MCP server → Clients →
//! "Create Client", DOCS `authenticate/mcp/topologies/agent-mcp.mdx`) and their grant,
//! `client_credentials` (RFC 6749 §4.4) with the agent's secret, an optional `scope` within the
//! agent's set and an optional `resource` (RFC 8707) naming its server.
//!
//! Agents come from the fixtures (each resource's `agents`) or from the control API, which creates
//! and deletes them; created ones are durable. Of a secret only its digest is kept. An agent has
//! no redirect URI and is not a client of `/oauth/authorize`: it is not in `Flows::clients`.

use scalekit_wire::{Check, prefix};

use super::{ClientRefusal, DurableChange, Flows};
use crate::config::{MAX_AGENT_TOKEN_LIFETIME_SECS, ResourceConfig};
use crate::ids::IdGenerator;
use crate::types::{ClientId, ClientSecret, ClientSecretDigest, ResourceId, ScopeSet};

/// The most agents the control API may create in one environment (the fixtures' come on top), so
/// that a runaway script does not grow the emulator without bound.
pub const MAX_CREATED_AGENTS: usize = 1000;

/// The longest agent name the control API takes.
pub const MAX_AGENT_NAME_CHARS: usize = 200;

/// An agent as the state machine keeps it.
#[derive(Debug, Clone)]
pub(super) struct Agent {
    id: ClientId,
    name: Option<String>,
    resource: ResourceId,
    scopes: Vec<String>,
    token_lifetime_secs: u64,
    secret: ClientSecretDigest,
    /// Unix seconds of its creation through the control API; `None` for a fixture's agent.
    created_at: Option<u64>,
}

impl Agent {
    /// The agents a resource's configuration declares.
    pub(super) fn configured(resource: &ResourceConfig) -> impl Iterator<Item = Agent> + '_ {
        resource.agents.iter().map(|agent| Agent {
            id: ClientId::new(&agent.client_id),
            name: agent.name.clone(),
            resource: ResourceId::new(&resource.id),
            scopes: agent.scopes.clone(),
            token_lifetime_secs: agent.token_lifetime_secs,
            secret: ClientSecretDigest::of(agent.client_secret.expose()),
            created_at: None,
        })
    }

    fn view(&self) -> AgentView {
        AgentView {
            client_id: self.id.clone(),
            name: self.name.clone(),
            resource: self.resource.clone(),
            scopes: self.scopes.clone(),
            token_lifetime_secs: self.token_lifetime_secs,
            created_at: self.created_at,
        }
    }

    fn stored(&self, created_at: u64) -> StoredAgent {
        StoredAgent {
            client_id: self.id.to_string(),
            name: self.name.clone(),
            resource: self.resource.to_string(),
            scopes: self.scopes.clone(),
            token_lifetime_secs: self.token_lifetime_secs,
            secret_sha256: self.secret.to_hex(),
            created_at,
        }
    }
}

/// An agent as the control API lists it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    /// `m2m_…`.
    pub client_id: ClientId,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// The resource its tokens are for.
    pub resource: ResourceId,
    /// The scopes it may ask for.
    pub scopes: Vec<String>,
    /// Lifetime of its tokens.
    pub token_lifetime_secs: u64,
    /// Unix seconds of its creation through the control API; `None` for a fixture's agent.
    pub created_at: Option<u64>,
}

/// An agent to create, its fields read from the control API's body.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// The `res_…` the agent belongs to.
    pub resource: String,
    /// A name, optional.
    pub name: Option<String>,
    /// The scopes it may ask for.
    pub scopes: Vec<String>,
    /// Lifetime of its tokens.
    pub token_lifetime_secs: u64,
}

/// A newly created agent: the one time its secret is shown.
#[derive(Debug)]
pub struct CreatedAgent {
    /// What the listing shows of it.
    pub agent: AgentView,
    /// The secret, shown once.
    pub client_secret: ClientSecret,
}

/// Why an agent was not created (Scalekit's gateway error at the control API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateAgentError {
    /// No resource with this id: NOT_FOUND.
    #[error("resource {0} is not configured")]
    UnknownResource(String),
    /// Scopes the resource does not offer: NOT_FOUND.
    #[error("scope {} is not offered by resource {resource}", .scopes.join(" "))]
    ScopesNotOffered {
        /// The scopes the resource lacks.
        scopes: Vec<String>,
        /// The resource.
        resource: ResourceId,
    },
    /// A lifetime of 0 or more than a year: INVALID_ARGUMENT on `token_lifetime_secs`.
    #[error("must be from 1 to {MAX_AGENT_TOKEN_LIFETIME_SECS}")]
    LifetimeOutOfRange,
    /// [`MAX_CREATED_AGENTS`] exist already: RESOURCE_EXHAUSTED.
    #[error(
        "at most {MAX_CREATED_AGENTS} agents can be created; delete some, or POST /_emulator/reset"
    )]
    TooMany,
}

/// Why an agent was not deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeleteAgentError {
    /// No agent with this id: NOT_FOUND.
    #[error("agent {0} not found")]
    Unknown(String),
    /// The agent comes from the fixtures, which the next start would bring back:
    /// PERMISSION_DENIED.
    #[error("agent {0} comes from the fixtures; remove it there")]
    Configured(String),
}

/// A `client_credentials` request of a client that is not the environment's API client. Its
/// `Debug` redacts the secret (a borrowed `&str`, so that the request stays `Copy`).
#[derive(Clone, Copy)]
pub struct AgentTokenRequest<'a> {
    /// `client_id`.
    pub client_id: &'a str,
    /// `client_secret` (form or HTTP Basic).
    pub client_secret: Option<&'a str>,
    /// `scope`: a subset of the agent's; absent or empty, all of them.
    pub scope: Option<&'a str>,
    /// `resource` (RFC 8707): the agent's server, by Server URL or `res_…` id, when present.
    pub resource: Option<&'a str>,
    /// `audience` (the docs' form parameter for the same): the same rule.
    pub audience: Option<&'a str>,
}

impl std::fmt::Debug for AgentTokenRequest<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AgentTokenRequest")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.map(|_| scalekit_wire::Secret::new("")),
            )
            .field("scope", &self.scope)
            .field("resource", &self.resource)
            .field("audience", &self.audience)
            .finish()
    }
}

/// What an agent was granted: plain data for the token minter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentGrant {
    /// The agent: the token's `sub` and `client_id`.
    pub client_id: ClientId,
    /// The MCP server the token is for.
    pub resource: ResourceId,
    /// The token's scopes.
    pub scopes: ScopeSet,
    /// The token's lifetime.
    pub token_lifetime_secs: u64,
}

/// Why an agent's token request was refused (OAuth JSON at the HTTP edge): the variant is the
/// wire error and its `Display` the `error_description`, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentTokenError {
    /// Unknown client, or a missing or wrong secret: 401 `invalid_client`.
    #[error("{0}")]
    InvalidClient(ClientRefusal),
    /// `resource` or `audience` names something other than the agent's server: 400
    /// `invalid_target`.
    #[error("{parameter} {value} is not the MCP server agent {agent} belongs to")]
    InvalidTarget {
        /// `resource` or `audience`.
        parameter: &'static str,
        /// The value as sent.
        value: String,
        /// The agent.
        agent: ClientId,
    },
    /// Scopes beyond the agent's set: 400 `invalid_scope`.
    #[error("scope {} is not allowed for agent {agent}", .scopes.join(" "))]
    InvalidScope {
        /// The scopes outside the agent's set.
        scopes: Vec<String>,
        /// The agent.
        agent: ClientId,
    },
}

impl AgentTokenError {
    /// The check that failed.
    pub fn failed_check(&self) -> Check {
        match self {
            AgentTokenError::InvalidClient(_) => Check::ClientCredentialsValid,
            AgentTokenError::InvalidTarget { .. } => Check::ResourceMatches,
            AgentTokenError::InvalidScope { .. } => Check::ScopesAllowed,
        }
    }
}

/// An agent created through the control API, as the store keeps it (fixtures' agents come from
/// the configuration each start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAgent {
    /// `m2m_…`.
    pub client_id: String,
    /// Its name.
    pub name: Option<String>,
    /// `res_…`.
    pub resource: String,
    /// The scopes it may ask for.
    pub scopes: Vec<String>,
    /// Lifetime of its tokens.
    pub token_lifetime_secs: u64,
    /// The SHA-256 of its secret, lowercase hex; never the secret.
    pub secret_sha256: String,
    /// Unix seconds of its creation.
    pub created_at: u64,
}

impl Flows {
    /// Creates an agent for `request.resource` with a new `m2m_…` id and secret.
    pub fn create_agent(
        &mut self,
        request: AgentRequest,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<CreatedAgent, CreateAgentError> {
        let resource = self
            .resources
            .iter()
            .find(|resource| resource.id.as_str() == request.resource)
            .ok_or_else(|| CreateAgentError::UnknownResource(request.resource.clone()))?;
        let lacking: Vec<String> = ScopeSet::from_iter(request.scopes.iter().map(String::as_str))
            .outside_of(&resource.scopes)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if !lacking.is_empty() {
            return Err(CreateAgentError::ScopesNotOffered {
                scopes: lacking,
                resource: resource.id.clone(),
            });
        }
        if !(1..=MAX_AGENT_TOKEN_LIFETIME_SECS).contains(&request.token_lifetime_secs) {
            return Err(CreateAgentError::LifetimeOutOfRange);
        }
        let created = self
            .agents
            .iter()
            .filter(|agent| agent.created_at.is_some())
            .count();
        if created >= MAX_CREATED_AGENTS {
            return Err(CreateAgentError::TooMany);
        }
        let resource = resource.id.clone();
        let client_secret = ClientSecret::new(ids.secret());
        let agent = Agent {
            id: self.fresh_client_id(ids),
            name: request.name,
            resource,
            scopes: ScopeSet::from_iter(request.scopes.iter().map(String::as_str))
                .as_slice()
                .to_vec(),
            token_lifetime_secs: request.token_lifetime_secs,
            secret: ClientSecretDigest::of(client_secret.expose()),
            created_at: Some(now),
        };
        self.record(DurableChange::AgentCreated(agent.stored(now)));
        let view = agent.view();
        self.agents.push(agent);
        Ok(CreatedAgent {
            agent: view,
            client_secret,
        })
    }

    /// The agents, the fixtures' first (in their order), then the created ones, oldest first;
    /// only those of `resource` when it is given.
    pub fn agents(&self, resource: Option<&str>) -> Vec<AgentView> {
        self.agents
            .iter()
            .filter(|agent| resource.is_none_or(|wanted| agent.resource.as_str() == wanted))
            .map(Agent::view)
            .collect()
    }

    /// Deletes an agent created through the control API. Tokens it already has stay valid until
    /// they expire: they are self-contained JWTs.
    pub fn delete_agent(&mut self, client_id: &str) -> Result<(), DeleteAgentError> {
        let position = self
            .agents
            .iter()
            .position(|agent| agent.id.as_str() == client_id)
            .ok_or_else(|| DeleteAgentError::Unknown(client_id.to_owned()))?;
        if self.agents[position].created_at.is_none() {
            return Err(DeleteAgentError::Configured(client_id.to_owned()));
        }
        self.agents.remove(position);
        self.record(DurableChange::AgentDeleted {
            client_id: client_id.to_owned(),
        });
        Ok(())
    }

    /// The `client_credentials` grant of an agent: its secret, then `resource` and `audience`
    /// (each, when present, names its server), then `scope` (within its set; absent, its whole
    /// set).
    pub fn agent_token(
        &self,
        request: AgentTokenRequest<'_>,
    ) -> Result<AgentGrant, AgentTokenError> {
        let failed = || AgentTokenError::InvalidClient(ClientRefusal::AuthenticationFailed);
        let agent = self
            .agents
            .iter()
            .find(|agent| agent.id.as_str() == request.client_id)
            .ok_or_else(failed)?;
        if !request
            .client_secret
            .is_some_and(|secret| agent.secret.matches(secret))
        {
            return Err(failed());
        }
        for (parameter, value) in [
            ("resource", request.resource),
            ("audience", request.audience),
        ] {
            let Some(value) = value else {
                continue;
            };
            let names_its_server = self
                .resolve_resource(value)
                .is_some_and(|resource| resource.id == agent.resource);
            if !names_its_server {
                return Err(AgentTokenError::InvalidTarget {
                    parameter,
                    value: value.to_owned(),
                    agent: agent.id.clone(),
                });
            }
        }
        let requested = ScopeSet::parse(request.scope.unwrap_or(""));
        let beyond = requested.outside_of(&agent.scopes);
        if !beyond.is_empty() {
            return Err(AgentTokenError::InvalidScope {
                scopes: beyond.into_iter().map(str::to_owned).collect(),
                agent: agent.id.clone(),
            });
        }
        let scopes = if requested.is_empty() {
            agent.scopes.iter().map(String::as_str).collect()
        } else {
            requested
        };
        Ok(AgentGrant {
            client_id: agent.id.clone(),
            resource: agent.resource.clone(),
            scopes,
            token_lifetime_secs: agent.token_lifetime_secs,
        })
    }

    /// The agent `client_id` names, when `secret` is its secret (compared by digest, in constant
    /// time): the client of a `jwt-bearer` request (Scalekit: "your static clients by default
    /// support cross-app access").
    pub(super) fn agent_with_secret(
        &self,
        client_id: &str,
        secret: Option<&str>,
    ) -> Option<super::AssertionClient> {
        let agent = self
            .agents
            .iter()
            .find(|agent| agent.id.as_str() == client_id)?;
        secret
            .is_some_and(|secret| agent.secret.matches(secret))
            .then(|| super::AssertionClient {
                id: agent.id.clone(),
                resource: agent.resource.clone(),
                allowed_scopes: Some(agent.scopes.iter().map(String::as_str).collect()),
            })
    }

    /// Whether `client_id` names an agent.
    pub(super) fn is_agent(&self, client_id: &str) -> bool {
        self.agents
            .iter()
            .any(|agent| agent.id.as_str() == client_id)
    }

    /// A new `m2m_…` id that no agent or client has: agents and DCR clients draw from the one
    /// generator, and a configured id may have the generated form, so a clash is drawn again
    /// (the generator never repeats itself, so this ends).
    pub(super) fn fresh_client_id(&self, ids: &dyn IdGenerator) -> ClientId {
        loop {
            let id = ClientId::new(ids.id(prefix::MCP_CLIENT));
            if !self.is_agent(id.as_str()) && !self.clients.contains_key(&id) {
                return id;
            }
        }
    }

    /// The created agents, as the store keeps them.
    pub(super) fn stored_agents(&self) -> Vec<StoredAgent> {
        self.agents
            .iter()
            .filter_map(|agent| agent.created_at.map(|created_at| agent.stored(created_at)))
            .collect()
    }

    /// Adds stored agents. One whose id is taken (a fixture now declares it), whose resource is
    /// no longer configured or whose digest does not parse (a hand-edited database) is dropped.
    pub(super) fn import_agents(&mut self, stored: Vec<StoredAgent>) {
        for agent in stored {
            let taken = self.is_agent(&agent.client_id)
                || self.clients.contains_key(&ClientId::new(&agent.client_id));
            let configured = self
                .resources
                .iter()
                .any(|resource| resource.id.as_str() == agent.resource);
            let Some(secret) = ClientSecretDigest::from_hex(&agent.secret_sha256) else {
                continue;
            };
            if taken || !configured {
                continue;
            }
            self.agents.push(Agent {
                id: ClientId::new(agent.client_id),
                name: agent.name,
                resource: ResourceId::new(agent.resource),
                scopes: agent.scopes,
                token_lifetime_secs: agent.token_lifetime_secs,
                secret,
                created_at: Some(agent.created_at),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;
    use crate::config::Config;
    use crate::ids::SequentialIds;

    const FIXTURE: &str = include_str!("../../../../fixtures/environment.toml");
    const AGENT: &str = "m2m_81920374650192842";
    const AGENT_SECRET: &str = "test_agent_secret_testbed_dev_not_for_production";
    const RESOURCE: &str = "res_81920374650192839";
    const SERVER_URL: &str = "http://127.0.0.1:8402/mcp";

    fn flows() -> Flows {
        let config = Config::from_toml_str(FIXTURE).expect("the fixture parses");
        let mut flows = Flows::new(&config, &Url::parse("http://127.0.0.1:8400").unwrap());
        flows.record_durable_changes();
        flows
    }

    #[test]
    fn new_agent_and_client_ids_never_reuse_one_taken() {
        // The sequential generator's first `m2m_…` ids, taken by configured agents and a
        // configured client.
        let taken: Vec<String> = (1..=4)
            .map(|n| format!("m2m_{}", 100_000_000_000_000_000_u64 + n))
            .collect();
        let mut config = Config::from_toml_str(FIXTURE).expect("the fixture parses");
        for id in &taken[..3] {
            config.resources[0].agents.push(crate::config::AgentConfig {
                client_id: id.clone(),
                client_secret: scalekit_wire::Secret::new("a-secret-of-sixteen-chars"),
                scopes: vec!["mcp:read".to_owned()],
                token_lifetime_secs: 60,
                name: None,
            });
        }
        config.clients.push(crate::config::ClientConfig {
            client_id: taken[3].clone(),
            redirect_uris: vec!["http://127.0.0.1/cb".to_owned()],
            resource: RESOURCE.to_owned(),
            client_secret: None,
            client_name: None,
        });
        let mut flows = Flows::new(&config, &Url::parse("http://127.0.0.1:8400").unwrap());
        let ids = SequentialIds::new();
        let agent = flows
            .create_agent(
                AgentRequest {
                    resource: RESOURCE.to_owned(),
                    name: None,
                    scopes: Vec::new(),
                    token_lifetime_secs: 60,
                },
                0,
                &ids,
            )
            .unwrap()
            .agent
            .client_id
            .to_string();
        assert!(!taken.contains(&agent), "{agent}");
        let client = flows
            .register_client(
                RESOURCE,
                super::super::ClientRegistration {
                    client_name: None,
                    redirect_uris: vec!["http://127.0.0.1/cb".to_owned()],
                    scope: None,
                },
                0,
                &SequentialIds::new(),
            )
            .unwrap()
            .client_id
            .to_string();
        assert!(!taken.contains(&client) && client != agent, "{client}");
    }

    fn request<'a>(client_id: &'a str, secret: &'a str) -> AgentTokenRequest<'a> {
        AgentTokenRequest {
            client_id,
            client_secret: Some(secret),
            scope: None,
            resource: None,
            audience: None,
        }
    }

    #[test]
    fn a_fixture_agent_gets_its_whole_set_without_a_scope_and_a_subset_with_one() {
        let flows = flows();
        let grant = flows.agent_token(request(AGENT, AGENT_SECRET)).unwrap();
        assert_eq!(grant.client_id.as_str(), AGENT);
        assert_eq!(grant.resource.as_str(), RESOURCE);
        assert_eq!(grant.scopes.as_slice(), ["mcp:read"]);
        assert_eq!(grant.token_lifetime_secs, 3600);
        let scoped = AgentTokenRequest {
            scope: Some("mcp:read"),
            resource: Some(SERVER_URL),
            audience: Some(RESOURCE),
            ..request(AGENT, AGENT_SECRET)
        };
        assert_eq!(
            flows.agent_token(scoped).unwrap().scopes.as_slice(),
            ["mcp:read"]
        );
    }

    #[test]
    fn each_refusal_names_its_wire_error_and_check() {
        let flows = flows();
        let refused = |request| flows.agent_token(request).unwrap_err();
        let wrong_secret = refused(request(AGENT, "wrong"));
        assert_eq!(wrong_secret.to_string(), "client authentication failed");
        assert_eq!(wrong_secret.failed_check(), Check::ClientCredentialsValid);
        let no_secret = AgentTokenRequest {
            client_secret: None,
            ..request(AGENT, "")
        };
        assert_eq!(refused(no_secret), wrong_secret);
        assert_eq!(refused(request("m2m_1", AGENT_SECRET)), wrong_secret);
        let scope = refused(AgentTokenRequest {
            scope: Some("mcp:read mcp:write"),
            ..request(AGENT, AGENT_SECRET)
        });
        assert_eq!(
            scope.to_string(),
            format!("scope mcp:write is not allowed for agent {AGENT}")
        );
        assert_eq!(scope.failed_check(), Check::ScopesAllowed);
        let target = refused(AgentTokenRequest {
            resource: Some("http://other.example/mcp"),
            ..request(AGENT, AGENT_SECRET)
        });
        assert_eq!(
            target.to_string(),
            format!(
                "resource http://other.example/mcp is not the MCP server agent {AGENT} belongs to"
            )
        );
        assert_eq!(target.failed_check(), Check::ResourceMatches);
        let audience = refused(AgentTokenRequest {
            audience: Some("res_1"),
            ..request(AGENT, AGENT_SECRET)
        });
        assert!(
            audience.to_string().starts_with("audience res_1 "),
            "{audience}"
        );
    }

    #[test]
    fn a_created_agent_is_durable_listed_without_its_secret_and_deletable() {
        let mut flows = flows();
        let ids = SequentialIds::new();
        let created = flows
            .create_agent(
                AgentRequest {
                    resource: RESOURCE.to_owned(),
                    name: Some("nightly".to_owned()),
                    scopes: vec![
                        "mcp:write".to_owned(),
                        "mcp:read".to_owned(),
                        "mcp:read".to_owned(),
                    ],
                    token_lifetime_secs: 60,
                },
                1_000,
                &ids,
            )
            .unwrap();
        let id = created.agent.client_id.to_string();
        assert!(id.starts_with("m2m_"));
        assert_eq!(created.agent.scopes, ["mcp:write", "mcp:read"]);
        let grant = flows
            .agent_token(request(&id, created.client_secret.expose()))
            .unwrap();
        assert_eq!(grant.token_lifetime_secs, 60);
        let changes = flows.take_durable_changes();
        let [DurableChange::AgentCreated(stored)] = changes.as_slice() else {
            panic!("{changes:?}");
        };
        assert_eq!(stored.client_id, id);
        assert!(
            !stored
                .secret_sha256
                .contains(created.client_secret.expose())
        );
        assert_eq!(flows.agents(Some(RESOURCE)).len(), 2);
        assert!(flows.agents(Some("res_1")).is_empty());

        // A restart: the stored agent comes back and its secret still works.
        let mut restarted = self::flows();
        restarted.import_agents(vec![stored.clone()]);
        assert!(
            restarted
                .agent_token(request(&id, created.client_secret.expose()))
                .is_ok()
        );

        assert_eq!(
            flows.delete_agent(AGENT),
            Err(DeleteAgentError::Configured(AGENT.to_owned()))
        );
        flows.delete_agent(&id).unwrap();
        assert_eq!(
            flows.take_durable_changes(),
            [DurableChange::AgentDeleted {
                client_id: id.clone()
            }]
        );
        assert_eq!(flows.delete_agent(&id), Err(DeleteAgentError::Unknown(id)));
    }

    #[test]
    fn creation_checks_the_resource_its_scopes_and_the_lifetime() {
        let mut flows = flows();
        let ids = SequentialIds::new();
        let create = |flows: &mut Flows, resource: &str, scopes: &[&str], lifetime| {
            flows.create_agent(
                AgentRequest {
                    resource: resource.to_owned(),
                    name: None,
                    scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
                    token_lifetime_secs: lifetime,
                },
                0,
                &ids,
            )
        };
        assert_eq!(
            create(&mut flows, "res_1", &[], 60).unwrap_err(),
            CreateAgentError::UnknownResource("res_1".to_owned())
        );
        assert_eq!(
            create(&mut flows, RESOURCE, &["admin", "mcp:read"], 60)
                .unwrap_err()
                .to_string(),
            format!("scope admin is not offered by resource {RESOURCE}")
        );
        assert_eq!(
            create(&mut flows, RESOURCE, &[], 0).unwrap_err(),
            CreateAgentError::LifetimeOutOfRange
        );
        for _ in 0..MAX_CREATED_AGENTS {
            create(&mut flows, RESOURCE, &[], 60).unwrap();
        }
        assert_eq!(
            create(&mut flows, RESOURCE, &[], 60).unwrap_err(),
            CreateAgentError::TooMany
        );
    }
}
