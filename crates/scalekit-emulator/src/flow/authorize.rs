//! `GET /oauth/authorize` (RFC 6749 §4.1.1, RFC 7636, RFC 8707): checks the request and creates a
//! login request for "Your App".

use url::Url;

use super::browser::BrowserBinding;
use super::cimd::{ClientMetadata, MetadataError};
use super::redirect::{ClientRedirect, RedirectOutcome, RedirectRefusal};
use super::{Client, Flows, LoginRequest, PendingAuthorization};
use crate::ids::IdGenerator;
use crate::types::{
    ClientId, ClientState, LoginRequestId, LoginState, PkceChallenge, RedirectUri, ScopeSet,
};
use scalekit_wire::{Check, prefix};

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

/// Where to send the browser: "Your App"'s login endpoint with `login_request_id` and `state`,
/// and the cookie that binds the sign-in to that browser.
#[derive(Debug, Clone)]
pub struct LoginRedirect {
    /// The connection's login endpoint.
    pub login_endpoint: Url,
    /// `lri_…`.
    pub login_request_id: LoginRequestId,
    /// The Scalekit-minted `state`.
    pub state: LoginState,
    /// The value of the sign-in's cookie (Decisions §9); `None` when the resource does not bind
    /// sign-ins to a browser.
    pub browser_binding: Option<BrowserBinding>,
    /// How long the sign-in may still need its cookie, in seconds: its login request's lifetime,
    /// then as long again for the consent page it may become.
    pub binding_lifetime_secs: u64,
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

/// Why an authorization request was refused. The `Display` of each variant but `Redirect` is the
/// hosted error page's description.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// No `client_id`: hosted error page `invalid_request` (never a redirect).
    #[error("client_id is required")]
    MissingClientId,
    /// The client is not registered: hosted error page `invalid_client_metadata_url` (never a
    /// redirect), as Scalekit answers a `client_id` it never issued.
    #[error("client {0} is not registered")]
    UnknownClient(ClientId),
    /// The redirect URI is missing, malformed or not registered: hosted error page
    /// `invalid_request` (never a redirect: the URI is not trusted).
    #[error("{0}")]
    InvalidRedirectUri(RedirectUriRefusal),
    /// The metadata document of a URL `client_id` could not be fetched or is invalid, or the
    /// resource does not accept such clients: hosted error page `invalid_client_metadata_url`
    /// (never a redirect: no redirect URI is trusted).
    #[error("{0}")]
    MetadataDocument(MetadataError),
    /// A metadata-document client named no usable resource: hosted error page
    /// `invalid_target` (never a redirect: the issuer to send with it is unknown).
    #[error("{0}")]
    InvalidTarget(TargetRefusal),
    /// Anything else: a redirect to the client with `error` (`invalid_request`,
    /// `unsupported_response_type`, `invalid_scope`, `invalid_target`, and
    /// `temporarily_unavailable` past `max_pending_login_requests`), `state` and `iss`.
    #[error("the request is refused on the client's redirect URI")]
    Redirect(Box<ClientRedirect>),
}

/// Why the redirect URI cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriRefusal {
    /// No `redirect_uri`.
    #[error("redirect_uri is required")]
    Missing,
    /// Malformed, or not one of the client's.
    #[error("redirect_uri {uri} is not registered for client {client}")]
    NotRegistered {
        /// The URI as sent.
        uri: String,
        /// The client.
        client: ClientId,
    },
}

/// Why a metadata-document client named no usable resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefusal {
    /// The `resource` names no MCP server.
    #[error("resource {0} is not a registered MCP server")]
    UnknownResource(String),
    /// No `resource`, and more than one MCP server accepts metadata documents.
    #[error("resource is required when client_id is a metadata document URL")]
    ResourceRequired,
}

impl AuthorizeError {
    /// The check that failed, as the flow inspector has always named it: a refusal whose words
    /// name the client is "client known" (a redirect URI not registered *for the client*
    /// included), one naming the resource "resource matches".
    pub fn failed_check(&self) -> Check {
        match self {
            AuthorizeError::MissingClientId
            | AuthorizeError::UnknownClient(_)
            | AuthorizeError::MetadataDocument(_)
            | AuthorizeError::InvalidRedirectUri(RedirectUriRefusal::NotRegistered { .. })
            | AuthorizeError::InvalidTarget(TargetRefusal::ResourceRequired) => Check::ClientKnown,
            AuthorizeError::InvalidRedirectUri(RedirectUriRefusal::Missing) => {
                Check::RedirectUriRegistered
            }
            AuthorizeError::InvalidTarget(TargetRefusal::UnknownResource(_)) => {
                Check::ResourceMatches
            }
            AuthorizeError::Redirect(redirect) => match &redirect.outcome {
                RedirectOutcome::Error { reason, .. } => reason.failed_check(),
                RedirectOutcome::Code(_) => Check::AuthorizationRequestValid,
            },
        }
    }
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
                AuthorizeError::InvalidTarget(TargetRefusal::UnknownResource(value.to_owned()))
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
                            TargetRefusal::ResourceRequired,
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
        let raw_redirect_uri = request
            .redirect_uri
            .ok_or(AuthorizeError::InvalidRedirectUri(
                RedirectUriRefusal::Missing,
            ))?;
        let redirect_uri = RedirectUri::parse(&raw_redirect_uri)
            .filter(|uri| {
                client
                    .redirect_uris
                    .iter()
                    .any(|registered| uri.matches_registered(registered))
            })
            .ok_or_else(|| {
                AuthorizeError::InvalidRedirectUri(RedirectUriRefusal::NotRegistered {
                    uri: raw_redirect_uri.clone(),
                    client: client_id.clone(),
                })
            })?;

        // From here on errors go back to the client.
        let client_state = request
            .state
            .filter(|state| !state.is_empty())
            .map(ClientState::new);
        let iss = self.resource_issuer(&client.resource);
        let refuse = |reason: RedirectRefusal| {
            AuthorizeError::Redirect(Box::new(ClientRedirect {
                redirect_uri: redirect_uri.clone(),
                state: client_state.clone(),
                iss: iss.clone(),
                outcome: RedirectOutcome::refused(reason),
            }))
        };

        match request.response_type.as_deref() {
            Some("code") => {}
            None => {
                return Err(refuse(RedirectRefusal::ResponseTypeMissing));
            }
            Some(other) => {
                return Err(refuse(RedirectRefusal::ResponseTypeUnsupported(
                    other.to_owned(),
                )));
            }
        }
        let challenge = match request.code_challenge.as_deref() {
            None | Some("") => {
                return Err(refuse(RedirectRefusal::ChallengeMissing));
            }
            Some(challenge) if !is_valid_challenge(challenge) => {
                return Err(refuse(RedirectRefusal::ChallengeMalformed));
            }
            Some(challenge) => PkceChallenge::new(challenge),
        };
        if request.code_challenge_method.as_deref() != Some("S256") {
            return Err(refuse(RedirectRefusal::ChallengeMethodNotS256));
        }
        let resource = match request.resource.as_deref() {
            Some(value) => match self.resolve_resource(value) {
                Some(resource) => resource.clone(),
                None => {
                    return Err(refuse(RedirectRefusal::UnknownResource(value.to_owned())));
                }
            },
            None => match self.resource(&client.resource) {
                Some(resource) => resource.clone(),
                None => {
                    return Err(refuse(RedirectRefusal::ClientResourceNotConfigured));
                }
            },
        };
        if resource.id != client.resource {
            return Err(refuse(RedirectRefusal::ClientNotForResource {
                client: client_id,
                resource: resource.id,
            }));
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
            return Err(refuse(RedirectRefusal::UnknownScopes(
                unknown.into_iter().map(str::to_owned).collect(),
            )));
        }

        // Abandoned sign-ins must not grow memory without bound: past the cap, expired ones are
        // dropped first, and if that is not enough the client is asked to come back later.
        if self.pending_sign_ins() >= self.max_pending_login_requests {
            self.drop_expired_sign_ins(now);
        }
        if self.pending_sign_ins() >= self.max_pending_login_requests {
            return Err(refuse(RedirectRefusal::TooManySignIns));
        }

        let Some(connection) = self.connections.get(&resource.connection) else {
            return Err(refuse(RedirectRefusal::ConnectionNotConfigured));
        };

        let login_request_id = LoginRequestId::new(ids.id(prefix::LOGIN_REQUEST));
        let state = LoginState::new(ids.secret());
        let browser_binding = resource
            .browser_binding
            .then(|| BrowserBinding::new(ids.browser_binding()));
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
                browser: browser_binding.as_ref().map(BrowserBinding::digest),
            },
        );
        self.login_states
            .insert(state.clone(), login_request_id.clone());
        Ok(LoginRedirect {
            login_endpoint,
            login_request_id,
            state,
            browser_binding,
            binding_lifetime_secs: resource.login_request_lifetime_secs.saturating_mul(2),
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
