//! Discovery documents: the environment's OIDC discovery and RFC 8414 documents, and the
//! per-resource RFC 8414 document MCP clients use (issuer `{env}/resources/{res}`).

use serde::{Deserialize, Serialize};

use crate::config::{Config, ResourceConfig};

/// An RFC 8414 / OIDC Discovery 1.0 document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationServerMetadata {
    /// The issuer identifier, byte for byte what tokens and redirects carry.
    pub issuer: String,
    /// `{env}/oauth/authorize`.
    pub authorization_endpoint: String,
    /// `{env}/oauth/token`.
    pub token_endpoint: String,
    /// The DCR endpoint, only per resource and only when DCR is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    /// `{env}/oauth/revoke` (RFC 7009; client authentication required).
    pub revocation_endpoint: String,
    /// `{env}/keys`.
    pub jwks_uri: String,
    /// `["code"]` for MCP clients (plus `token` flows are not offered anywhere).
    pub response_types_supported: Vec<String>,
    /// The grants the token endpoint accepts.
    pub grant_types_supported: Vec<String>,
    /// OIDC only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_types_supported: Vec<String>,
    /// OIDC only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// `["S256"]`.
    pub code_challenge_methods_supported: Vec<String>,
    /// `none`, `client_secret_post`, `client_secret_basic`.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// The scopes on offer.
    pub scopes_supported: Vec<String>,
    /// RFC 9207: `iss` is sent on every redirect to the client.
    pub authorization_response_iss_parameter_supported: bool,
    /// Client ID Metadata Documents: URL-shaped `client_id`s are fetched (per resource; the
    /// environment documents claim it when any resource allows it).
    pub client_id_metadata_document_supported: bool,
    /// `["urn:ietf:params:oauth:grant-profile:id-jag"]` where cross-app access is on
    /// (draft-ietf-oauth-identity-assertion-authz-grant §7.2, MCP EMA §6): identity assertions
    /// are taken with `jwt-bearer`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_grant_profiles_supported: Vec<String>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn base(environment_url: &str, issuer: String, scopes: Vec<String>) -> AuthorizationServerMetadata {
    AuthorizationServerMetadata {
        issuer,
        authorization_endpoint: format!("{environment_url}/oauth/authorize"),
        token_endpoint: format!("{environment_url}/oauth/token"),
        registration_endpoint: None,
        revocation_endpoint: format!("{environment_url}/oauth/revoke"),
        jwks_uri: format!("{environment_url}/keys"),
        response_types_supported: strings(&["code"]),
        grant_types_supported: strings(&["authorization_code", "refresh_token"]),
        subject_types_supported: Vec::new(),
        id_token_signing_alg_values_supported: Vec::new(),
        code_challenge_methods_supported: strings(&["S256"]),
        token_endpoint_auth_methods_supported: strings(&[
            "none",
            "client_secret_post",
            "client_secret_basic",
        ]),
        scopes_supported: scopes,
        authorization_response_iss_parameter_supported: true,
        client_id_metadata_document_supported: false,
        authorization_grant_profiles_supported: Vec::new(),
    }
}

/// Advertises cross-app access: `jwt-bearer` among the grant types (RFC 7523 §2.1) and the
/// ID-JAG grant profile (draft §7.2 SHOULD; Scalekit's own document is unknown, Decisions).
fn advertise_cross_app_access(document: &mut AuthorizationServerMetadata) {
    document
        .grant_types_supported
        .push(crate::flow::JWT_BEARER.to_owned());
    document.authorization_grant_profiles_supported = strings(&[crate::idp::ID_JAG_PROFILE]);
}

/// Whether `resource`'s cross-app access is in service: on for it, and the control API on. The
/// only identity providers the emulator trusts are the ones it plays under `/_idp`, served only
/// with the control API (Decision 16); without them nothing could be redeemed, so nothing is
/// advertised.
pub fn cross_app_access_served(config: &Config, resource: &ResourceConfig) -> bool {
    config.control && resource.cross_app_access
}

/// Every scope of every resource, in configuration order.
fn all_scopes(config: &Config) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in config
        .resources
        .iter()
        .flat_map(|resource| &resource.scopes)
    {
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    scopes
}

/// `{env}/.well-known/oauth-authorization-server`: the environment itself, no registration.
pub fn environment_metadata(environment_url: &str, config: &Config) -> AuthorizationServerMetadata {
    let mut document = base(
        environment_url,
        environment_url.to_owned(),
        all_scopes(config),
    );
    document.grant_types_supported =
        strings(&["authorization_code", "refresh_token", "client_credentials"]);
    document.client_id_metadata_document_supported = config
        .resources
        .iter()
        .any(|resource| resource.client_id_metadata_documents);
    if config
        .resources
        .iter()
        .any(|resource| cross_app_access_served(config, resource))
    {
        advertise_cross_app_access(&mut document);
    }
    document
}

/// `{env}/.well-known/openid-configuration`: the environment document plus the OIDC fields.
pub fn openid_configuration(environment_url: &str, config: &Config) -> AuthorizationServerMetadata {
    let mut document = environment_metadata(environment_url, config);
    document.subject_types_supported = strings(&["public"]);
    document.id_token_signing_alg_values_supported = strings(&["RS256"]);
    document
}

/// The per-resource document, served at both the inserted and the appended well-known URL.
pub fn resource_metadata(
    environment_url: &str,
    config: &Config,
    resource: &ResourceConfig,
) -> AuthorizationServerMetadata {
    let mut document = base(
        environment_url,
        format!("{environment_url}/resources/{}", resource.id),
        resource.scopes.clone(),
    );
    // Every MCP server can have agents (M2M clients) that use `client_credentials` at its
    // token endpoint (DOCS `authenticate/mcp/topologies/agent-mcp.mdx`; MCPUSE's copy lists it).
    document.grant_types_supported =
        strings(&["authorization_code", "refresh_token", "client_credentials"]);
    document.client_id_metadata_document_supported = resource.client_id_metadata_documents;
    if cross_app_access_served(config, resource) {
        advertise_cross_app_access(&mut document);
    }
    if resource.dynamic_client_registration {
        document.registration_endpoint = Some(format!(
            "{environment_url}/api/v1/resources/{}/clients:register",
            resource.id
        ));
    }
    document
}
