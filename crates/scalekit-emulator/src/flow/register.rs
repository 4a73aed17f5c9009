//! Dynamic Client Registration (RFC 7591; Decisions §7): public clients with `m2m_…` ids.

use url::Url;

use super::{Client, DurableChange, Flows, StoredClient};
use crate::ids::IdGenerator;
use crate::types::{ClientId, RedirectUri, ResourceId, ScopeSet, is_loopback_http};

/// The most characters (Unicode scalar values) a `client_name` may have: Scalekit's
/// `ClientService.RegisterClient` descriptor says `client_name` ≤ 128 (reference §3).
const CLIENT_NAME_MAX_CHARS: usize = 128;

/// The client metadata the state machine needs (the HTTP layer echoes the rest).
#[derive(Debug, Clone, Default)]
pub struct ClientRegistration {
    /// `client_name`.
    pub client_name: Option<String>,
    /// `redirect_uris`.
    pub redirect_uris: Vec<String>,
    /// `scope`, space-separated; empty or absent means none asked for.
    pub scope: Option<String>,
}

/// A newly registered public client.
#[derive(Debug, Clone)]
pub struct RegisteredClient {
    /// `m2m_…`.
    pub client_id: ClientId,
    /// `client_id_issued_at`.
    pub issued_at: u64,
    /// `client_name`, as sent.
    pub client_name: Option<String>,
    /// The registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The registered scopes.
    pub scope: ScopeSet,
    /// The resource the client belongs to.
    pub resource: ResourceId,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// No resource with this id: 404 `invalid_request`.
    #[error("resource {0} is not configured")]
    UnknownResource(String),
    /// DCR is switched off for the resource: 403 `access_denied`.
    #[error("dynamic client registration is disabled for resource {0}")]
    Disabled(ResourceId),
    /// Missing, malformed, fragment-carrying or plain-http non-loopback redirect URIs: 400
    /// `invalid_redirect_uri`.
    #[error("{0}")]
    InvalidRedirectUri(String),
    /// Other metadata the resource cannot honour (unknown scopes, a `client_name` of more than
    /// 128 characters): 400 `invalid_client_metadata`.
    #[error("{0}")]
    InvalidClientMetadata(String),
}

impl Flows {
    /// Registers a public client for `resource` (RFC 7591 §3).
    pub fn register_client(
        &mut self,
        resource: &str,
        registration: ClientRegistration,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<RegisteredClient, RegisterError> {
        let resource = self
            .resources
            .iter()
            .find(|each| each.id.as_str() == resource)
            .ok_or_else(|| RegisterError::UnknownResource(resource.to_owned()))?;
        if !resource.dynamic_client_registration {
            return Err(RegisterError::Disabled(resource.id.clone()));
        }
        if registration.redirect_uris.is_empty() {
            return Err(RegisterError::InvalidRedirectUri(
                "redirect_uris is required".to_owned(),
            ));
        }
        for uri in &registration.redirect_uris {
            check_redirect_uri(uri)?;
        }
        if let Some(name) = &registration.client_name {
            let length = name.chars().count();
            if length > CLIENT_NAME_MAX_CHARS {
                return Err(RegisterError::InvalidClientMetadata(format!(
                    "client_name must be at most {CLIENT_NAME_MAX_CHARS} characters, not {length}"
                )));
            }
        }
        let scope = ScopeSet::parse(registration.scope.as_deref().unwrap_or(""));
        let unknown = scope.outside_of(&resource.scopes);
        if !unknown.is_empty() {
            return Err(RegisterError::InvalidClientMetadata(format!(
                "scope {} is not offered by this resource",
                unknown.join(" ")
            )));
        }
        let client_id = self.fresh_client_id(ids);
        let resource_id = resource.id.clone();
        self.clients.insert(
            client_id.clone(),
            Client {
                id: client_id.clone(),
                name: registration.client_name.clone(),
                redirect_uris: registration.redirect_uris.clone(),
                resource: resource_id.clone(),
                secret: None,
                dynamic: true,
            },
        );
        self.record(DurableChange::ClientRegistered(StoredClient {
            client_id: client_id.to_string(),
            client_name: registration.client_name.clone(),
            redirect_uris: registration.redirect_uris.clone(),
            resource: resource_id.to_string(),
        }));
        Ok(RegisteredClient {
            client_id,
            issued_at: now,
            client_name: registration.client_name,
            redirect_uris: registration.redirect_uris,
            scope,
            resource: resource_id,
        })
    }
}

/// Absolute, no fragment, and `http` only on loopback (MCP authorization: redirect URIs are
/// localhost or HTTPS; private-use schemes of native apps are allowed, RFC 8252 §7.1).
fn check_redirect_uri(uri: &str) -> Result<(), RegisterError> {
    let invalid =
        |why: &str| RegisterError::InvalidRedirectUri(format!("redirect URI {uri} {why}"));
    if RedirectUri::parse(uri).is_none() {
        return Err(if uri.contains('#') {
            invalid("must not contain a fragment")
        } else {
            invalid("is not an absolute URI")
        });
    }
    let url = Url::parse(uri).map_err(|_| invalid("is not an absolute URI"))?;
    if url.scheme() == "http" && !is_loopback_http(&url) {
        return Err(invalid("must use https unless it is a loopback address"));
    }
    Ok(())
}
