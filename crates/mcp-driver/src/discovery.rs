//! Discovery without IO: well-known URL candidates (RFC 9728 §3.1, RFC 8414 §3.1, MCP 2025-11-25
//! "Authorization Server Metadata Discovery"), the PRM `resource` check and the metadata shapes.

use serde::Deserialize;
use url::Url;

use crate::DriverError;

/// Protected-resource metadata (RFC 9728 §2), the fields the driver reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ProtectedResourceMetadata {
    /// The resource identifier; sent verbatim as `resource` (RFC 8707).
    pub resource: String,
    /// Issuer identifiers; the driver uses the first.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Scopes the resource knows.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
}

/// Authorization-server metadata (RFC 8414 §2 plus RFC 9207 §3), the fields the driver reads.
/// Serde rather than `openidconnect::ProviderMetadata` because an RFC 8414 document need not have
/// the OIDC-required fields (`jwks_uri`, `subject_types_supported`, …).
#[derive(Debug, Clone, Deserialize)]
pub struct AuthorizationServerMetadata {
    /// Must be byte-identical to the issuer the document was looked up for.
    pub issuer: String,
    /// Where the user agent starts.
    pub authorization_endpoint: Url,
    /// Code exchange and refresh.
    pub token_endpoint: Url,
    /// RFC 7591 registration.
    #[serde(default)]
    pub registration_endpoint: Option<Url>,
    /// Keys for ID-token verification.
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    /// Scopes the AS knows (gates `extra_scopes`).
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    /// Must contain `S256`.
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9207: the AS sends `iss` on authorization responses.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// RFC 8414 §2: how clients may authenticate at the token endpoint (absent means
    /// `client_secret_basic`).
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// MCP 2025-11-25: the AS accepts an https URL as `client_id` (Client ID Metadata Document).
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
}

/// The origin of a URL with `path` as its path and no query or fragment.
fn with_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    url.set_path(path);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// PRM URLs to try when the challenge names none (MCP 2025-11-25): the path-suffixed well-known
/// URL (RFC 9728 §3.1, query kept), then the root one. A root MCP URL yields only the root one.
pub fn protected_resource_metadata_candidates(mcp_url: &Url) -> Vec<Url> {
    let root = with_path(mcp_url, "/.well-known/oauth-protected-resource");
    let path = mcp_url.path().trim_end_matches('/');
    if path.is_empty() {
        return vec![root];
    }
    let mut suffixed = with_path(
        mcp_url,
        &format!("/.well-known/oauth-protected-resource{path}"),
    );
    suffixed.set_query(mcp_url.query());
    vec![suffixed, root]
}

/// AS metadata URLs in the order the MCP spec requires (2025-11-25 and later).
pub fn authorization_server_metadata_candidates(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    if path.is_empty() {
        return vec![
            with_path(issuer, "/.well-known/oauth-authorization-server"),
            with_path(issuer, "/.well-known/openid-configuration"),
        ];
    }
    vec![
        with_path(
            issuer,
            &format!("/.well-known/oauth-authorization-server{path}"),
        ),
        with_path(issuer, &format!("/.well-known/openid-configuration{path}")),
        with_path(issuer, &format!("{path}/.well-known/openid-configuration")),
    ]
}

/// RFC 9728 §3.3: the PRM `resource` must identify the MCP server. Like the MCP SDKs, a
/// same-origin path prefix (on a segment boundary) is accepted as well as an exact match.
pub fn check_resource(published: &str, mcp_url: &Url) -> Result<(), DriverError> {
    let mismatch = || DriverError::ResourceMismatch {
        published: published.to_owned(),
        expected: mcp_url.clone(),
    };
    if published == mcp_url.as_str() {
        return Ok(());
    }
    let resource = Url::parse(published).map_err(|_| mismatch())?;
    if resource.origin() != mcp_url.origin() || resource.fragment().is_some() {
        return Err(mismatch());
    }
    let with_slash = |path: &str| {
        if path.ends_with('/') {
            path.to_owned()
        } else {
            format!("{path}/")
        }
    };
    if with_slash(mcp_url.path()).starts_with(&with_slash(resource.path())) {
        Ok(())
    } else {
        Err(mismatch())
    }
}

/// Scope selection (MCP 2025-11-25 "Scope Selection Strategy"): the challenge's `scope`, else
/// PRM `scopes_supported`, else nothing; then each extra scope the AS lists in its
/// `scopes_supported`, without duplicates.
pub fn select_scopes(
    challenge_scope: Option<&str>,
    resource_scopes: Option<&[String]>,
    server_scopes: Option<&[String]>,
    extra_scopes: &[String],
) -> Vec<String> {
    let mut scopes: Vec<String> = match (challenge_scope, resource_scopes) {
        (Some(scope), _) if !scope.trim().is_empty() => {
            scope.split_whitespace().map(str::to_owned).collect()
        }
        (_, Some(listed)) => listed.to_vec(),
        _ => Vec::new(),
    };
    let advertised = server_scopes.unwrap_or_default();
    for extra in extra_scopes {
        if advertised.contains(extra) && !scopes.contains(extra) {
            scopes.push(extra.clone());
        }
    }
    scopes
}

/// The issuers an ID token may carry: the metadata issuer, and for a Scalekit per-resource
/// issuer `{env}/resources/{res}` also the environment URL `{env}` (tokens are issued with the
/// environment as issuer unless they are issuer-bound; reference scalekit.md §4).
pub fn accepted_id_token_issuers(metadata_issuer: &str) -> Vec<String> {
    let mut issuers = vec![metadata_issuer.to_owned()];
    let trimmed = metadata_issuer.trim_end_matches('/');
    if let Some((environment, resource)) = trimmed.rsplit_once("/resources/")
        && !resource.is_empty()
        && !resource.contains('/')
    {
        issuers.push(environment.to_owned());
    }
    issuers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(value: &str) -> Url {
        Url::parse(value).unwrap()
    }

    fn strings(urls: &[Url]) -> Vec<&str> {
        urls.iter().map(Url::as_str).collect()
    }

    #[test]
    fn prm_candidates_for_a_path_are_suffixed_then_root() {
        let candidates = protected_resource_metadata_candidates(&url("http://127.0.0.1:8/mcp"));
        assert_eq!(
            strings(&candidates),
            vec![
                "http://127.0.0.1:8/.well-known/oauth-protected-resource/mcp",
                "http://127.0.0.1:8/.well-known/oauth-protected-resource",
            ]
        );
    }

    #[test]
    fn prm_candidates_keep_the_query_on_the_suffixed_form() {
        let candidates =
            protected_resource_metadata_candidates(&url("https://h/public/mcp?tenant=a"));
        assert_eq!(
            strings(&candidates),
            vec![
                "https://h/.well-known/oauth-protected-resource/public/mcp?tenant=a",
                "https://h/.well-known/oauth-protected-resource",
            ]
        );
    }

    #[test]
    fn prm_candidates_for_the_root_are_only_the_root() {
        let candidates = protected_resource_metadata_candidates(&url("https://h/"));
        assert_eq!(
            strings(&candidates),
            vec!["https://h/.well-known/oauth-protected-resource"]
        );
    }

    #[test]
    fn as_candidates_for_an_issuer_with_path() {
        let candidates =
            authorization_server_metadata_candidates(&url("http://127.0.0.1:9/resources/res_1"));
        assert_eq!(
            strings(&candidates),
            vec![
                "http://127.0.0.1:9/.well-known/oauth-authorization-server/resources/res_1",
                "http://127.0.0.1:9/.well-known/openid-configuration/resources/res_1",
                "http://127.0.0.1:9/resources/res_1/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn as_candidates_for_an_issuer_without_path() {
        for issuer in ["https://auth.example.com", "https://auth.example.com/"] {
            let candidates = authorization_server_metadata_candidates(&url(issuer));
            assert_eq!(
                strings(&candidates),
                vec![
                    "https://auth.example.com/.well-known/oauth-authorization-server",
                    "https://auth.example.com/.well-known/openid-configuration",
                ]
            );
        }
    }

    #[test]
    fn resource_equal_to_the_mcp_url_is_accepted() {
        assert!(check_resource("http://h:1/mcp", &url("http://h:1/mcp")).is_ok());
    }

    #[test]
    fn resource_that_is_a_same_origin_path_prefix_is_accepted() {
        assert!(check_resource("http://h:1/", &url("http://h:1/mcp")).is_ok());
        assert!(check_resource("http://h:1/api", &url("http://h:1/api/mcp")).is_ok());
        assert!(check_resource("http://h:1/mcp/", &url("http://h:1/mcp")).is_ok());
    }

    #[test]
    fn resource_on_another_origin_or_path_is_a_mismatch() {
        for published in [
            "http://h:2/mcp",
            "https://h:1/mcp",
            "http://other:1/mcp",
            "http://h:1/mc",
            "http://h:1/mcp/v2",
            "not a url",
        ] {
            let error = check_resource(published, &url("http://h:1/mcp")).unwrap_err();
            match error {
                DriverError::ResourceMismatch {
                    published: found,
                    expected,
                } => {
                    assert_eq!(found, published);
                    assert_eq!(expected.as_str(), "http://h:1/mcp");
                }
                other => panic!("unexpected error {other:?}"),
            }
        }
    }

    #[test]
    fn challenge_scope_wins_then_prm_then_nothing() {
        let prm = vec!["mcp:read".to_owned(), "mcp:write".to_owned()];
        assert_eq!(
            select_scopes(Some("a b"), Some(&prm), None, &[]),
            vec!["a", "b"]
        );
        assert_eq!(select_scopes(None, Some(&prm), None, &[]), prm);
        assert_eq!(
            select_scopes(Some(" "), None, None, &[]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn extra_scopes_are_added_only_when_the_server_lists_them() {
        let server = vec!["openid".to_owned(), "mcp:read".to_owned()];
        let extra = vec!["offline_access".to_owned(), "openid".to_owned()];
        assert_eq!(
            select_scopes(Some("mcp:read"), None, Some(&server), &extra),
            vec!["mcp:read", "openid"]
        );
        assert_eq!(
            select_scopes(Some("openid"), None, Some(&server), &extra),
            vec!["openid"]
        );
    }

    #[test]
    fn id_token_issuers_include_the_environment_for_a_resource_issuer() {
        assert_eq!(
            accepted_id_token_issuers("http://127.0.0.1:9/resources/res_1"),
            vec!["http://127.0.0.1:9/resources/res_1", "http://127.0.0.1:9"]
        );
        assert_eq!(
            accepted_id_token_issuers("https://env.example"),
            vec!["https://env.example"]
        );
    }
}
