//! `GET /oauth/authorize` (RFC 6749 §4.1.1, RFC 7636, RFC 8707): checks the request and creates a
//! login request for "Your App".

use url::Url;

use super::cimd::{ClientMetadata, MetadataError};
use super::redirect::{ClientRedirect, RedirectError, RedirectOutcome};
use super::{Client, Flows, LoginRequest, PendingAuthorization};
use crate::ids::IdGenerator;
use crate::types::{
    ClientId, ClientState, LoginRequestId, LoginState, PkceChallenge, RedirectUri, ScopeSet,
};
use scalekit_wire::prefix;

/// The authorization request's parameters as sent; the transition does the checking, in the
/// order RFC 6749 §4.1.2.1 requires (client and redirect URI first, as they decide whether an
/// error may be redirected at all).
#[derive(Debug, Clone, Default)]
pub struct AuthorizeRequest {
    /// `client_id`.
    pub client_id: Option<String>,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `response_type`.
    pub response_type: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `code_challenge`.
    pub code_challenge: Option<String>,
    /// `code_challenge_method`.
    pub code_challenge_method: Option<String>,
    /// `nonce` (OIDC).
    pub nonce: Option<String>,
    /// `resource` (RFC 8707).
    pub resource: Option<String>,
}

/// Where to send the browser: "Your App"'s login endpoint with `login_request_id` and `state`.
#[derive(Debug, Clone)]
pub struct LoginRedirect {
    /// The connection's login endpoint.
    pub login_endpoint: Url,
    /// `lri_…`.
    pub login_request_id: LoginRequestId,
    /// The Scalekit-minted `state`.
    pub state: LoginState,
}

impl LoginRedirect {
    /// The `Location`: the login endpoint plus `login_request_id` and `state`.
    pub fn location(&self) -> Url {
        let mut url = self.login_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("login_request_id", self.login_request_id.as_str())
            .append_pair("state", self.state.as_str());
        url
    }
}

/// Why an authorization request was refused.
#[derive(Debug)]
pub enum AuthorizeError {
    /// No `client_id`: hosted error page `invalid_request` (never a redirect).
    MissingClientId,
    /// The client is not registered: hosted error page `invalid_client` (never a redirect).
    UnknownClient(ClientId),
    /// The redirect URI is missing, malformed or not registered: hosted error page
    /// `invalid_request` (never a redirect: the URI is not trusted).
    InvalidRedirectUri(String),
    /// The metadata document of a URL `client_id` could not be fetched or is invalid, or the
    /// resource does not accept such clients: hosted error page `invalid_client_metadata_url`
    /// (never a redirect: no redirect URI is trusted).
    MetadataDocument(MetadataError),
    /// A metadata-document client named no usable resource: hosted error page
    /// `invalid_target` (never a redirect: the issuer to send with it is unknown).
    InvalidTarget(String),
    /// Anything else: a redirect to the client with `error` (`invalid_request`,
    /// `unsupported_response_type`, `invalid_scope`, `invalid_target`, and
    /// `temporarily_unavailable` past `max_pending_login_requests`), `state` and `iss`.
    Redirect(ClientRedirect),
}

impl Flows {
    /// Checks an authorization request and creates the login request (`lri_…`, fresh `state`).
    pub fn authorize(
        &mut self,
        request: AuthorizeRequest,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<LoginRedirect, AuthorizeError> {
        let client_id = request
            .client_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .ok_or(AuthorizeError::MissingClientId)?;
        let client_id = ClientId::new(client_id);
        let client = self
            .clients
            .get(&client_id)
            .cloned()
            .ok_or_else(|| AuthorizeError::UnknownClient(client_id.clone()))?;
        self.authorize_client(request, client, now, ids)
    }

    /// The same for a client identified by a Client ID Metadata Document the edge fetched and
    /// validated ([`super::cimd::parse_document`]). The document's `redirect_uris` are the
    /// registered ones. The MCP server is the `resource` parameter's, else the only resource
    /// that accepts metadata documents; it must accept them.
    pub fn authorize_metadata_client(
        &mut self,
        request: AuthorizeRequest,
        metadata: ClientMetadata,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<LoginRedirect, AuthorizeError> {
        let resource = match request.resource.as_deref() {
            Some(value) => self.resolve_resource(value).ok_or_else(|| {
                AuthorizeError::InvalidTarget(format!(
                    "resource {value} is not a registered MCP server"
                ))
            })?,
            None => {
                let mut accepting = self
                    .resources
                    .iter()
                    .filter(|resource| resource.client_id_metadata_documents);
                match (accepting.next(), accepting.next()) {
                    (Some(only), None) => only,
                    _ => {
                        return Err(AuthorizeError::InvalidTarget(
                            "resource is required when client_id is a metadata document URL"
                                .to_owned(),
                        ));
                    }
                }
            }
        };
        if !resource.client_id_metadata_documents {
            return Err(AuthorizeError::MetadataDocument(MetadataError(format!(
                "resource {} does not accept client ID metadata documents",
                resource.id
            ))));
        }
        let client = Client {
            id: ClientId::new(metadata.client_id),
            name: Some(metadata.client_name),
            redirect_uris: metadata.redirect_uris,
            resource: resource.id.clone(),
            secret: None,
            dynamic: false,
        };
        self.authorize_client(request, client, now, ids)
    }

    /// The checks after the client is known, in RFC 6749 §4.1.2.1 order.
    fn authorize_client(
        &mut self,
        request: AuthorizeRequest,
        client: Client,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<LoginRedirect, AuthorizeError> {
        let client_id = client.id.clone();
        let raw_redirect_uri = request.redirect_uri.ok_or_else(|| {
            AuthorizeError::InvalidRedirectUri("redirect_uri is required".to_owned())
        })?;
        let redirect_uri = RedirectUri::parse(&raw_redirect_uri)
            .filter(|uri| {
                client
                    .redirect_uris
                    .iter()
                    .any(|registered| uri.matches_registered(registered))
            })
            .ok_or_else(|| {
                AuthorizeError::InvalidRedirectUri(format!(
                    "redirect_uri {raw_redirect_uri} is not registered for client {client_id}"
                ))
            })?;

        // From here on errors go back to the client.
        let client_state = request
            .state
            .filter(|state| !state.is_empty())
            .map(ClientState::new);
        let iss = self.resource_issuer(&client.resource);
        let refuse = |error: RedirectError, description: String| {
            AuthorizeError::Redirect(ClientRedirect {
                redirect_uri: redirect_uri.clone(),
                state: client_state.clone(),
                iss: iss.clone(),
                outcome: RedirectOutcome::Error { error, description },
            })
        };

        match request.response_type.as_deref() {
            Some("code") => {}
            None => {
                return Err(refuse(
                    RedirectError::InvalidRequest,
                    "response_type is required".to_owned(),
                ));
            }
            Some(other) => {
                return Err(refuse(
                    RedirectError::UnsupportedResponseType,
                    format!("response_type {other} is not supported; use code"),
                ));
            }
        }
        let challenge = match request.code_challenge.as_deref() {
            None | Some("") => {
                return Err(refuse(
                    RedirectError::InvalidRequest,
                    "code_challenge is required (PKCE with S256)".to_owned(),
                ));
            }
            Some(challenge) if !is_valid_challenge(challenge) => {
                return Err(refuse(
                    RedirectError::InvalidRequest,
                    "code_challenge is malformed".to_owned(),
                ));
            }
            Some(challenge) => PkceChallenge::new(challenge),
        };
        if request.code_challenge_method.as_deref() != Some("S256") {
            return Err(refuse(
                RedirectError::InvalidRequest,
                "code_challenge_method must be S256".to_owned(),
            ));
        }
        let resource = match request.resource.as_deref() {
            Some(value) => match self.resolve_resource(value) {
                Some(resource) => resource.clone(),
                None => {
                    return Err(refuse(
                        RedirectError::InvalidTarget,
                        format!("resource {value} is not a registered MCP server"),
                    ));
                }
            },
            None => match self.resource(&client.resource) {
                Some(resource) => resource.clone(),
                None => {
                    return Err(refuse(
                        RedirectError::InvalidTarget,
                        "the client's resource is not configured".to_owned(),
                    ));
                }
            },
        };
        if resource.id != client.resource {
            return Err(refuse(
                RedirectError::InvalidTarget,
                format!(
                    "client {client_id} is not registered for resource {}",
                    resource.id
                ),
            ));
        }
        let requested = ScopeSet::parse(request.scope.as_deref().unwrap_or(""));
        // No scope asked for: the resource's scopes (Scalekit's default is undocumented).
        let scopes = if requested.is_empty() {
            resource.scopes.iter().map(String::as_str).collect()
        } else {
            requested
        };
        let unknown = scopes.outside_of(&resource.scopes);
        if !unknown.is_empty() {
            return Err(refuse(
                RedirectError::InvalidScope,
                format!(
                    "scope {} is not offered by this MCP server",
                    unknown.join(" ")
                ),
            ));
        }

        // Abandoned sign-ins must not grow memory without bound: past the cap, expired ones are
        // dropped first, and if that is not enough the client is asked to come back later.
        if self.pending_sign_ins() >= self.max_pending_login_requests {
            self.drop_expired_sign_ins(now);
        }
        if self.pending_sign_ins() >= self.max_pending_login_requests {
            return Err(refuse(
                RedirectError::TemporarilyUnavailable,
                "too many sign-ins are in progress; try again in a few minutes".to_owned(),
            ));
        }

        let Some(connection) = self.connections.get(&resource.connection) else {
            return Err(refuse(
                RedirectError::InvalidRequest,
                "the resource's connection is not configured".to_owned(),
            ));
        };

        let login_request_id = LoginRequestId::new(ids.id(prefix::LOGIN_REQUEST));
        let state = LoginState::new(ids.secret());
        let login_endpoint = connection.login_endpoint.clone();
        self.login_requests.insert(
            login_request_id.clone(),
            LoginRequest {
                state: state.clone(),
                connection: resource.connection.clone(),
                authorization: PendingAuthorization {
                    client: client_id,
                    client_name: client.name.clone(),
                    redirect_uri,
                    client_state,
                    nonce: request.nonce.filter(|nonce| !nonce.is_empty()),
                    scopes,
                    challenge,
                    resource: resource.id.clone(),
                },
                expires_at: now + resource.login_request_lifetime_secs,
                submitted: None,
            },
        );
        self.login_states
            .insert(state.clone(), login_request_id.clone());
        Ok(LoginRedirect {
            login_endpoint,
            login_request_id,
            state,
        })
    }
}

/// An S256 challenge is 43 base64url characters; the RFC 7636 grammar allows 43–128.
fn is_valid_challenge(challenge: &str) -> bool {
    (43..=128).contains(&challenge.len())
        && challenge
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~'))
}
