//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP authorization
//! 2025-11-25 §"Client ID Metadata Documents"): which `client_id`s are document URLs and what a
//! fetched document must say. Pure checks only: the fetch is IO and lives in `http::cimd`.

use serde_json::Value;
use url::Url;

use crate::types::RedirectUri;

/// The largest document accepted, in bytes (the draft suggests a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;

/// A validated document: the client it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMetadata {
    /// The document's URL, byte for byte the `client_id`.
    pub client_id: String,
    /// `client_name`, shown on the consent page.
    pub client_name: String,
    /// `redirect_uris`: what `redirect_uri` must match.
    pub redirect_uris: Vec<String>,
}

/// Why a `client_id` URL or its document was refused: hosted error page
/// `invalid_client_metadata_url`, with this description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MetadataError(pub String);

/// Whether a `client_id` is URL-shaped, and so names a metadata document rather than a
/// registered client.
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// The document URL of a `client_id`: `https` with a path (the draft requires one), no fragment,
/// no user info; or, when `allow_insecure_loopback`, plain `http` on a loopback host.
pub fn document_url(client_id: &str, allow_insecure_loopback: bool) -> Result<Url, MetadataError> {
    let refuse = |why: &str| MetadataError(format!("client_id {client_id} {why}"));
    let url = Url::parse(client_id).map_err(|_| refuse("is not a valid URL"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure_loopback && loopback => {}
        _ => return Err(refuse("must be an https URL")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse("has no host"));
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err(refuse("must have a path"));
    }
    if url.fragment().is_some() {
        return Err(refuse("must not have a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("must not carry user info"));
    }
    Ok(url)
}

/// Checks a fetched document: a JSON object whose `client_id` is byte-equal to the URL, with a
/// `client_name`, non-empty `redirect_uris` of absolute URIs without fragments, no client secret,
/// `token_endpoint_auth_method` `none` when present, and grant and response types that allow the
/// authorization-code flow when present.
pub fn parse_document(client_id: &str, body: &[u8]) -> Result<ClientMetadata, MetadataError> {
    let refuse = |why: String| MetadataError(format!("the client metadata document {why}"));
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(refuse(format!("is larger than {MAX_DOCUMENT_BYTES} bytes")));
    }
    let document: Value =
        serde_json::from_slice(body).map_err(|_| refuse("is not JSON".to_owned()))?;
    let Value::Object(document) = document else {
        return Err(refuse("is not a JSON object".to_owned()));
    };
    match document.get("client_id") {
        Some(Value::String(value)) if value == client_id => {}
        Some(Value::String(value)) => {
            return Err(refuse(format!(
                "has client_id {value}, which is not its URL {client_id}"
            )));
        }
        _ => return Err(refuse("has no client_id string".to_owned())),
    }
    let client_name = match document.get("client_name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
        _ => return Err(refuse("has no client_name".to_owned())),
    };
    let redirect_uris = match document.get("redirect_uris") {
        Some(Value::Array(uris)) if !uris.is_empty() => uris
            .iter()
            .map(|uri| match uri {
                Value::String(uri) if RedirectUri::parse(uri).is_some() => Ok(uri.clone()),
                other => Err(refuse(format!(
                    "has redirect URI {other}, which is not an absolute URI without a fragment"
                ))),
            })
            .collect::<Result<Vec<String>, MetadataError>>()?,
        _ => return Err(refuse("has no redirect_uris".to_owned())),
    };
    if document.contains_key("client_secret") || document.contains_key("client_secret_expires_at") {
        return Err(refuse(
            "carries a client secret; a metadata document describes a public client".to_owned(),
        ));
    }
    match document.get("token_endpoint_auth_method") {
        None => {}
        Some(Value::String(method)) if method == "none" => {}
        Some(other) => {
            return Err(refuse(format!(
                "has token_endpoint_auth_method {other}; only none is supported"
            )));
        }
    }
    require_member(&document, "grant_types", "authorization_code").map_err(refuse)?;
    require_member(&document, "response_types", "code").map_err(refuse)?;
    Ok(ClientMetadata {
        client_id: client_id.to_owned(),
        client_name,
        redirect_uris,
    })
}

/// When `field` is present it must be an array of strings containing `needed`.
fn require_member(
    document: &serde_json::Map<String, Value>,
    field: &str,
    needed: &str,
) -> Result<(), String> {
    let Some(value) = document.get(field) else {
        return Ok(());
    };
    let Value::Array(items) = value else {
        return Err(format!("has {field} that is not an array"));
    };
    if items.iter().any(|item| !item.is_string()) {
        return Err(format!("has {field} with a member that is not a string"));
    }
    if !items.iter().any(|item| item.as_str() == Some(needed)) {
        return Err(format!("has {field} without {needed}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://client.example/oauth/metadata.json";

    fn document(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
        let mut document = serde_json::json!({
            "client_id": URL,
            "client_name": "Example",
            "redirect_uris": ["http://127.0.0.1:3000/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none"
        });
        if let Value::Object(map) = &mut document {
            edit(map);
        }
        serde_json::to_vec(&document).unwrap()
    }

    fn refusal(body: &[u8]) -> String {
        parse_document(URL, body).unwrap_err().0
    }

    #[test]
    fn a_complete_document_is_a_client() {
        let metadata = parse_document(URL, &document(|_| {})).unwrap();
        assert_eq!(metadata.client_id, URL);
        assert_eq!(metadata.client_name, "Example");
        assert_eq!(
            metadata.redirect_uris,
            vec!["http://127.0.0.1:3000/callback"]
        );
    }

    #[test]
    fn each_missing_or_wrong_field_is_named() {
        assert_eq!(
            refusal(&document(|map| {
                map.insert("client_id".into(), "https://client.example/other".into());
            })),
            "the client metadata document has client_id https://client.example/other, which is not its URL https://client.example/oauth/metadata.json"
        );
        assert_eq!(
            refusal(&document(|map| {
                map.remove("client_name");
            })),
            "the client metadata document has no client_name"
        );
        assert_eq!(
            refusal(&document(|map| {
                map.insert("redirect_uris".into(), Value::Array(Vec::new()));
            })),
            "the client metadata document has no redirect_uris"
        );
        assert_eq!(
            refusal(&document(|map| {
                map.insert(
                    "token_endpoint_auth_method".into(),
                    "private_key_jwt".into(),
                );
            })),
            "the client metadata document has token_endpoint_auth_method \"private_key_jwt\"; only none is supported"
        );
        assert_eq!(
            refusal(&document(|map| {
                map.insert("client_secret".into(), "s".into());
            })),
            "the client metadata document carries a client secret; a metadata document describes a public client"
        );
        assert_eq!(
            refusal(&document(|map| {
                map.insert(
                    "grant_types".into(),
                    serde_json::json!(["client_credentials"]),
                );
            })),
            "the client metadata document has grant_types without authorization_code"
        );
        assert_eq!(
            refusal(b"<html>"),
            "the client metadata document is not JSON"
        );
        assert_eq!(
            refusal(b"[]"),
            "the client metadata document is not a JSON object"
        );
    }

    #[test]
    fn document_urls_are_https_with_a_path_unless_loopback_is_allowed() {
        assert!(document_url(URL, false).is_ok());
        assert_eq!(
            document_url("https://client.example/", false)
                .unwrap_err()
                .0,
            "client_id https://client.example/ must have a path"
        );
        assert_eq!(
            document_url("http://127.0.0.1:9/client", false)
                .unwrap_err()
                .0,
            "client_id http://127.0.0.1:9/client must be an https URL"
        );
        assert!(document_url("http://127.0.0.1:9/client", true).is_ok());
        assert!(document_url("http://client.example/client", true).is_err());
        assert!(document_url("https://client.example/c#x", false).is_err());
        assert!(document_url("https://user:pw@client.example/c", false).is_err());
        assert!(is_document_url(URL));
        assert!(!is_document_url("m2m_1"));
    }
}

/// The state machine with a metadata-document client: resource choice, the whole flow, and a
/// refresh after a restart (the document is not kept, its URL is the client).
#[cfg(test)]
mod flow_tests {
    use scalekit_wire::UserClaims;
    use url::Url;

    use super::ClientMetadata;
    use crate::config::Config;
    use crate::flow::{
        AuthorizationCodeRequest, AuthorizeError, AuthorizeRequest, CallbackOutcome, Flows,
        PresentedBrowser, RedirectOutcome, RefreshRequest, TokenError,
    };
    use crate::ids::SequentialIds;
    use crate::types::{ClientId, PkceVerifier, pkce_s256};

    const FIXTURE: &str = include_str!("../../../../fixtures/environment.toml");
    const URL: &str = "https://client.example/oauth/metadata.json";
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const NOW: u64 = 1_000_000;

    fn config(second_resource: bool) -> Config {
        let mut config = Config::from_toml_str(FIXTURE).unwrap();
        if second_resource {
            let mut second = config.resources[0].clone();
            second.agents.clear();
            second.id = "res_2".to_owned();
            second.server_url = Some(Url::parse("http://127.0.0.1:8502/mcp").unwrap());
            config.resources.push(second);
        }
        config
    }

    fn flows(config: &Config) -> Flows {
        Flows::new(config, &Url::parse("http://env.test").unwrap())
    }

    fn metadata() -> ClientMetadata {
        ClientMetadata {
            client_id: URL.to_owned(),
            client_name: "Example".to_owned(),
            redirect_uris: vec!["http://127.0.0.1:3000/callback".to_owned()],
        }
    }

    fn request(resource: Option<&str>) -> AuthorizeRequest {
        AuthorizeRequest {
            client_id: Some(URL.to_owned()),
            redirect_uri: Some("http://127.0.0.1:3000/callback".to_owned()),
            response_type: Some("code".to_owned()),
            scope: Some("openid email offline_access mcp:read".to_owned()),
            code_challenge: Some(
                pkce_s256(&PkceVerifier::parse(VERIFIER).unwrap())
                    .as_str()
                    .to_owned(),
            ),
            code_challenge_method: Some("S256".to_owned()),
            resource: resource.map(str::to_owned),
            ..AuthorizeRequest::default()
        }
    }

    #[test]
    fn without_a_resource_the_only_accepting_resource_is_used_and_with_several_one_is_required() {
        let ids = SequentialIds::new();
        let mut one = flows(&config(false));
        assert!(
            one.authorize_metadata_client(request(None), metadata(), NOW, &ids)
                .is_ok()
        );

        let mut two = flows(&config(true));
        let refused = two.authorize_metadata_client(request(None), metadata(), NOW, &ids);
        assert!(
            matches!(
                &refused,
                Err(AuthorizeError::InvalidTarget(
                    crate::flow::TargetRefusal::ResourceRequired
                ))
            ),
            "{refused:?}"
        );
        assert!(
            two.authorize_metadata_client(
                request(Some("http://127.0.0.1:8502/mcp")),
                metadata(),
                NOW,
                &ids
            )
            .is_ok()
        );
    }

    #[test]
    fn a_resource_that_does_not_accept_documents_refuses_the_client() {
        let mut config = config(true);
        config.resources[1].client_id_metadata_documents = false;
        let mut flows = flows(&config);
        let refused = flows.authorize_metadata_client(
            request(Some("res_2")),
            metadata(),
            NOW,
            &SequentialIds::new(),
        );
        assert!(
            matches!(&refused, Err(AuthorizeError::MetadataDocument(error))
                if error.0 == "resource res_2 does not accept client ID metadata documents"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_document_client_refreshes_after_a_restart_and_cannot_revoke() {
        let config = config(false);
        let ids = SequentialIds::new();
        let mut flows = flows(&config);
        flows.record_durable_changes();
        let login = flows
            .authorize_metadata_client(request(None), metadata(), NOW, &ids)
            .unwrap();
        let connection = "conn_81920374650192838";
        let user = UserClaims {
            sub: Some("ada".to_owned()),
            email: Some("ada@example.com".to_owned()),
            ..UserClaims::default()
        };
        flows
            .submit_user(connection, login.login_request_id.as_str(), user, NOW, &ids)
            .unwrap();
        let outcome = flows
            .partner_callback(
                connection,
                login.state.as_str(),
                &PresentedBrowser::of(login.browser_binding.as_ref()),
                NOW,
                &ids,
            )
            .unwrap();
        let CallbackOutcome::Redirect(redirect) = outcome else {
            panic!("consent is auto in the fixture")
        };
        let RedirectOutcome::Code(code) = redirect.outcome else {
            panic!("a code")
        };
        let client = flows.authenticate_client(URL, None).unwrap();
        let grant = flows
            .exchange_code(
                AuthorizationCodeRequest {
                    client_id: client,
                    code,
                    code_verifier: Some(scalekit_wire::Secret::new(VERIFIER)),
                    redirect_uri: Some("http://127.0.0.1:3000/callback".to_owned()),
                    resource: None,
                },
                NOW,
                &ids,
            )
            .unwrap();
        assert_eq!(grant.client_id, ClientId::new(URL));
        let refresh_token = grant.refresh_token.unwrap();

        let mut restarted = self::flows(&config);
        restarted.import_durable(flows.export_durable());
        let client = restarted.authenticate_client(URL, None).unwrap();
        let refreshed = restarted.refresh(
            RefreshRequest {
                client_id: client,
                refresh_token: restarted
                    .present(refresh_token.clone())
                    .expect("grants live in memory"),
                resource: None,
                scope: None,
            },
            NOW + 1,
            &ids,
        );
        assert!(refreshed.is_ok(), "{refreshed:?}");
        assert_eq!(
            restarted.revoke(
                URL,
                None,
                restarted
                    .present(refresh_token)
                    .expect("grants live in memory")
            ),
            Err(TokenError::InvalidClient(
                crate::flow::ClientRefusal::PublicClientRevokes
            ))
        );
    }
}
