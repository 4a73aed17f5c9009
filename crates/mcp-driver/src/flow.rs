//! The IO half of the driver: every HTTP exchange of a run, in the order a strict MCP client makes
//! them (MCP authorization 2025-11-25 / 2026-07-28).

use std::str::FromStr;
use std::sync::Mutex;

use base64::Engine;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, ExtraTokenFields, PkceCodeChallenge, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse,
    TokenUrl,
};
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
use openidconnect::{AccessTokenHash, Nonce};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CACHE_CONTROL, HeaderMap, LOCATION, WWW_AUTHENTICATE};
use scalekit_wire::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use crate::callback::{CallbackExpectation, check_callback, is_redirect_uri, resolve_location};
use crate::challenge::BearerChallenge;
use crate::client_auth::{
    TokenEndpointAuthMethod, registration_auth_method, token_auth_method, union_scopes,
};
use crate::discovery::{
    AuthorizationServerMetadata, ProtectedResourceMetadata, accepted_id_token_issuers,
    authorization_server_metadata_candidates, check_resource,
    protected_resource_metadata_candidates, select_scopes,
};
use crate::hop::{Hop, HopLog, Phase, redact_location, redact_url};
use crate::{
    AgentCredentials, ClientOptions, DriverConfig, DriverError, FlowReport, TokenSet, UserAgent,
};
use crate::{browser, mcp};

/// The last MCP protocol version in which a server may lack protected-resource metadata (the
/// client then falls back to the server's origin as authorization server).
const LAST_VERSION_WITHOUT_PRM: &str = "2025-03-26";

/// The most of one answer the driver reads (metadata, tokens and MCP replies are far smaller).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The most redirects the user agent follows before giving up.
const MAX_REDIRECTS: usize = 20;

/// How much of a page body an error quotes.
const BODY_EXCERPT_CHARS: usize = 600;

/// The MCP protocol version sent in the unauthenticated `initialize`.
const PROBE_PROTOCOL_VERSION: &str = "2025-11-25";

/// The `id_token` member of a token response (OIDC Core §3.1.3.3); absent without `openid`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

type OAuthTokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// An `oauth2` client for a public client (no secret) with the token endpoint set.
type OAuthClient<HasAuthUrl> = oauth2::Client<
    BasicErrorResponse,
    OAuthTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    HasAuthUrl,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A response read to the end.
pub(crate) struct Exchange {
    pub(crate) url: Url,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Exchange {
    pub(crate) fn excerpt(&self) -> String {
        excerpt(&self.body)
    }
}

/// A whitespace-collapsed prefix of a body, for error messages (the driver's and the conformance
/// runner's). An HTML page is reduced to the text a person would read (no head, styles, scripts
/// or tags), so the message shows what the page says rather than its markup.
pub fn excerpt(body: &[u8]) -> String {
    let raw = String::from_utf8_lossy(body);
    let text = if raw.trim_start().starts_with('<') {
        visible_text(&raw)
    } else {
        raw.into_owned()
    };
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > BODY_EXCERPT_CHARS {
        let prefix: String = collapsed.chars().take(BODY_EXCERPT_CHARS).collect();
        format!("{prefix}…")
    } else {
        collapsed
    }
}

/// The readable text of an HTML page: elements whose content is not shown (`head`, `style`,
/// `script`) are dropped, tags become spaces and the common entities are decoded.
fn visible_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            rest = "";
            break;
        };
        let tag = after[..close].trim_start_matches('/').to_ascii_lowercase();
        let name: String = tag
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        rest = &after[close + 1..];
        if !after.starts_with('/') && matches!(name.as_str(), "head" | "style" | "script") {
            let end = format!("</{name}");
            rest = match rest.to_ascii_lowercase().find(&end) {
                Some(position) => rest[position..]
                    .find('>')
                    .map_or("", |gt| &rest[position + gt + 1..]),
                None => "",
            };
        }
        text.push(' ');
    }
    text.push_str(rest);
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The JSON payload of a JWT, decoded without verification; `None` if it is not a JWT.
fn decode_jwt_payload(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A client identity at one authorization server.
#[derive(Debug, Clone)]
pub(crate) struct RegisteredClient {
    /// The issuer that issued (or accepts) the identity.
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<Secret>,
    pub(crate) auth_method: TokenEndpointAuthMethod,
}

/// The outcome of one authorization (discovery, registration, authorization request, code
/// exchange).
pub(crate) struct Authorization {
    pub(crate) metadata: AuthorizationServerMetadata,
    pub(crate) client: RegisteredClient,
    /// The PRM `resource`; `None` only for a 2025-03-26 server without PRM.
    pub(crate) resource: Option<String>,
    pub(crate) requested_scopes: Vec<String>,
    pub(crate) tokens: TokenSet,
    nonce: Option<Nonce>,
}

/// `builder` trusting `ca_cert_pem` besides the system's roots, when there is one.
pub(crate) fn trusting(
    builder: reqwest::ClientBuilder,
    ca_cert_pem: Option<&str>,
) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    Ok(match ca_cert_pem {
        Some(pem) => builder.tls_certs_merge([reqwest::Certificate::from_pem(pem.as_bytes())?]),
        None => builder,
    })
}

/// One run's HTTP clients and hop log.
pub(crate) struct Driver<'a> {
    config: &'a DriverConfig,
    options: ClientOptions,
    /// Discovery, registration, token and JWKS calls: no redirects, no cookies.
    api: reqwest::Client,
    /// The user agent: a cookie jar and no automatic redirects (it follows them itself).
    browser: reqwest::Client,
    hops: HopLog,
    /// Identities obtained by registration in this run, one per issuer, never shown to another
    /// issuer (MCP 2026-07-28 "credentials are bound to the issuer").
    registrations: Mutex<Vec<RegisteredClient>>,
}

impl<'a> Driver<'a> {
    pub(crate) fn new(config: &'a DriverConfig) -> Result<Self, DriverError> {
        Self::with_options(config, ClientOptions::default())
    }

    pub(crate) fn with_options(
        config: &'a DriverConfig,
        options: ClientOptions,
    ) -> Result<Self, DriverError> {
        let api = trusting(reqwest::Client::builder(), config.ca_cert_pem.as_deref())?
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()?;
        let browser = trusting(reqwest::Client::builder(), config.ca_cert_pem.as_deref())?
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .timeout(config.timeout)
            .build()?;
        Ok(Self {
            config,
            options,
            api,
            browser,
            hops: HopLog::default(),
            registrations: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn options(&self) -> &ClientOptions {
        &self.options
    }

    pub(crate) fn api(&self) -> &reqwest::Client {
        &self.api
    }

    pub(crate) fn hops(&self) -> Vec<Hop> {
        self.hops.snapshot()
    }

    /// Sends a request, reads the whole body and records the hop.
    pub(crate) async fn exchange(
        &self,
        client: &reqwest::Client,
        phase: Phase,
        request: reqwest::Request,
    ) -> Result<Exchange, DriverError> {
        exchange(&self.hops, client, phase, request).await
    }

    /// The HTTP client handed to the `oauth2` crate: the shared API client, recorded as a hop.
    /// The closure's futures own clones of the client and the hop log rather than borrowing the
    /// driver: a future borrowing through the closure cannot be proven `Send` for every lifetime
    /// (rust-lang/rust#96865), which would keep callers from spawning a flow.
    fn oauth_http(
        &self,
        phase: Phase,
    ) -> impl Fn(
        oauth2::HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<oauth2::HttpResponse, DriverError>> + Send + 'static>,
    > + use<> {
        let api = self.api.clone();
        let hops = self.hops.clone();
        move |request| Box::pin(oauth_http(hops.clone(), api.clone(), phase, request))
    }

    /// A discovery GET; it carries `MCP-Protocol-Version` like the SDKs' discovery requests.
    async fn get_json(&self, phase: Phase, url: &Url) -> Result<Exchange, DriverError> {
        let request = self
            .api
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .header(
                "MCP-Protocol-Version",
                self.options.protocol_version.as_str(),
            )
            .build()?;
        self.exchange(&self.api, phase, request).await
    }

    pub(crate) async fn run(&self) -> Result<FlowReport, DriverError> {
        let config = self.config;
        let challenge = self.challenge().await?;
        let authorization = self.authorize(&challenge, &[]).await?;
        let Authorization {
            metadata,
            client,
            resource,
            requested_scopes,
            tokens,
            nonce,
        } = authorization;
        let client_id = client.client_id;
        let granted_scopes = tokens
            .scope
            .clone()
            .unwrap_or_else(|| requested_scopes.clone());

        let id_token_claims = match (&tokens.id_token, &nonce) {
            (Some(id_token), Some(nonce)) if granted_scopes.iter().any(|s| s == "openid") => Some(
                self.verify_id_token(
                    &metadata,
                    &client_id,
                    id_token.expose(),
                    nonce,
                    tokens.access_token.expose(),
                )
                .await?,
            ),
            _ => None,
        };
        let access_token_claims =
            decode_jwt_payload(tokens.access_token.expose()).unwrap_or(Value::Null);
        let whoami = mcp::call_whoami(mcp::McpCall {
            mcp_url: &config.mcp_url,
            access_token: tokens.access_token.expose(),
            client_name: &config.client_name,
            timeout: config.timeout,
            hops: &self.hops,
            ca_cert_pem: config.ca_cert_pem.as_deref(),
        })
        .await?;

        Ok(FlowReport {
            hops: self.hops(),
            authorization_server: Url::parse(&metadata.issuer).map_err(|_| {
                DriverError::InvalidUrl {
                    context: "authorization server metadata issuer",
                    value: metadata.issuer.clone(),
                }
            })?,
            client_id,
            requested_scopes,
            granted_scopes,
            // `run` never uses the 2025-03-26 fallback, so a resource is always there.
            resource: resource.unwrap_or_default(),
            token_endpoint: metadata.token_endpoint,
            tokens,
            access_token_claims,
            id_token_claims,
            whoami,
        })
    }

    /// The flow up to the tokens: the unauthenticated request and its challenge, then
    /// [`Driver::authorize`]; the MCP server is not called with the token.
    pub(crate) async fn authorize_from_challenge(&self) -> Result<Authorization, DriverError> {
        let challenge = self.challenge().await?;
        self.authorize(&challenge, &[]).await
    }

    /// Steps 2 to 8 for one challenge: PRM (and its `resource` check), AS metadata, scope
    /// selection (the union with `previous_scopes` on a re-authorization), the client identity,
    /// the authorization request through the user agent, the callback checks and the code
    /// exchange with the client's token-endpoint authentication.
    pub(crate) async fn authorize(
        &self,
        challenge: &BearerChallenge,
        previous_scopes: &[String],
    ) -> Result<Authorization, DriverError> {
        let config = self.config;
        let (resource_metadata, metadata) = match self.protected_resource_metadata(challenge).await
        {
            Ok(resource_metadata) => {
                check_resource(&resource_metadata.resource, &config.mcp_url)?;
                let issuer = resource_metadata
                    .authorization_servers
                    .first()
                    .ok_or(DriverError::NoAuthorizationServer)?
                    .clone();
                let metadata = self.authorization_server_metadata(&issuer).await?;
                (Some(resource_metadata), metadata)
            }
            Err(DriverError::ProtectedResourceMetadata { .. })
                if self.options.protocol_version.as_str() <= LAST_VERSION_WITHOUT_PRM =>
            {
                (None, self.legacy_authorization_server_metadata().await?)
            }
            Err(error) => return Err(error),
        };
        let resource = resource_metadata
            .as_ref()
            .map(|resource_metadata| resource_metadata.resource.clone());
        let selected = match &self.options.scope_override {
            Some(scopes) => scopes.clone(),
            None => select_scopes(
                challenge.scope.as_deref(),
                resource_metadata
                    .as_ref()
                    .and_then(|resource_metadata| resource_metadata.scopes_supported.as_deref()),
                metadata.scopes_supported.as_deref(),
                &config.extra_scopes,
            ),
        };
        let requested_scopes = union_scopes(previous_scopes, &selected);
        if let Some(agent) = &self.options.client_credentials {
            return self
                .client_credentials(metadata, agent, resource, requested_scopes)
                .await;
        }
        let registered = self.client_identity(&metadata, &requested_scopes).await?;

        // Authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, RFC 8707 §2.1).
        let mut client: OAuthClient<EndpointSet> =
            oauth2::Client::new(ClientId::new(registered.client_id.clone()))
                .set_auth_uri(AuthUrl::from_url(metadata.authorization_endpoint.clone()))
                .set_token_uri(TokenUrl::from_url(metadata.token_endpoint.clone()))
                .set_redirect_uri(RedirectUrl::from_url(config.redirect_uri.clone()));
        // RFC 6749 §2.3.1: `oauth2` form-urlencodes id and secret before Basic-encoding them.
        client = match (&registered.client_secret, registered.auth_method) {
            (Some(secret), TokenEndpointAuthMethod::ClientSecretBasic) => client
                .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
                .set_auth_type(AuthType::BasicAuth),
            (Some(secret), TokenEndpointAuthMethod::ClientSecretPost) => client
                .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
                .set_auth_type(AuthType::RequestBody),
            _ => client.set_auth_type(AuthType::RequestBody),
        };
        let (pkce_challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
        let wants_openid = requested_scopes.iter().any(|scope| scope == "openid");
        let nonce = wants_openid.then(Nonce::new_random);
        let mut authorize = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(requested_scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(pkce_challenge);
        if let Some(resource) = &resource {
            authorize = authorize.add_extra_param("resource", resource.clone());
        }
        if let Some(nonce) = &nonce {
            authorize = authorize.add_extra_param("nonce", nonce.secret().clone());
        }
        let (authorize_url, state) = authorize.url();

        let callback = self.follow_redirects(authorize_url).await?;
        let code = check_callback(
            &callback,
            CallbackExpectation {
                state: state.secret(),
                issuer: &metadata.issuer,
                iss_supported: metadata.authorization_response_iss_parameter_supported,
            },
        )?;

        // Token request (RFC 6749 §4.1.3, RFC 7636 §4.5, RFC 8707 §2.2).
        let http_client = self.oauth_http(Phase::Token);
        let mut token_request = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(pkce_verifier);
        if let Some(resource) = &resource {
            token_request = token_request.add_extra_param("resource", resource.clone());
        }
        let token_response = token_request
            .request_async(&http_client)
            .await
            .map_err(|error| token_error(error, self.hops.last_status()))?;
        Ok(Authorization {
            tokens: token_set(&token_response),
            metadata,
            client: registered,
            resource,
            requested_scopes,
            nonce,
        })
    }

    /// An agent's token (RFC 6749 §4.4.2): `client_credentials` with the agent's secret (HTTP
    /// Basic unless the server lists only `client_secret_post`), the selected scopes and the PRM
    /// `resource` (RFC 8707 §2.2).
    async fn client_credentials(
        &self,
        metadata: AuthorizationServerMetadata,
        agent: &AgentCredentials,
        resource: Option<String>,
        requested_scopes: Vec<String>,
    ) -> Result<Authorization, DriverError> {
        let supported = metadata.token_endpoint_auth_methods_supported.as_deref();
        let auth_method = match token_auth_method(None, supported, true) {
            TokenEndpointAuthMethod::ClientSecretPost => TokenEndpointAuthMethod::ClientSecretPost,
            // An agent always has a secret: `none` would be a public client, which it is not.
            TokenEndpointAuthMethod::ClientSecretBasic | TokenEndpointAuthMethod::None => {
                TokenEndpointAuthMethod::ClientSecretBasic
            }
        };
        let client: OAuthClient<EndpointNotSet> =
            oauth2::Client::new(ClientId::new(agent.client_id.clone()))
                .set_client_secret(ClientSecret::new(agent.client_secret.expose().to_owned()))
                .set_token_uri(TokenUrl::from_url(metadata.token_endpoint.clone()))
                .set_auth_type(match auth_method {
                    TokenEndpointAuthMethod::ClientSecretPost => AuthType::RequestBody,
                    _ => AuthType::BasicAuth,
                });
        let http_client = self.oauth_http(Phase::Token);
        let mut request = client
            .exchange_client_credentials()
            .add_scopes(requested_scopes.iter().cloned().map(Scope::new));
        if let Some(resource) = &resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        let response = request
            .request_async(&http_client)
            .await
            .map_err(|error| token_error(error, self.hops.last_status()))?;
        Ok(Authorization {
            tokens: token_set(&response),
            client: RegisteredClient {
                issuer: metadata.issuer.clone(),
                client_id: agent.client_id.clone(),
                client_secret: Some(agent.client_secret.clone()),
                auth_method,
            },
            metadata,
            resource,
            requested_scopes,
            nonce: None,
        })
    }

    /// Registration priority (MCP 2025-11-25 "Client Registration Approaches"): pre-registered
    /// credentials for this issuer, then a Client ID Metadata Document URL when the AS supports
    /// CIMD and one is configured, then an identity this run already registered at this issuer,
    /// then dynamic client registration.
    async fn client_identity(
        &self,
        metadata: &AuthorizationServerMetadata,
        scopes: &[String],
    ) -> Result<RegisteredClient, DriverError> {
        let supported = metadata.token_endpoint_auth_methods_supported.as_deref();
        if let Some(pre) = &self.options.pre_registered
            && pre
                .issuer
                .as_deref()
                .is_none_or(|issuer| issuer == metadata.issuer)
        {
            return Ok(RegisteredClient {
                issuer: metadata.issuer.clone(),
                client_id: pre.client_id.clone(),
                client_secret: pre.client_secret.clone(),
                auth_method: token_auth_method(None, supported, pre.client_secret.is_some()),
            });
        }
        if metadata.client_id_metadata_document_supported
            && let Some(url) = &self.options.client_id_metadata_document_url
        {
            return Ok(RegisteredClient {
                issuer: metadata.issuer.clone(),
                client_id: url.to_string(),
                client_secret: None,
                auth_method: TokenEndpointAuthMethod::None,
            });
        }
        let known = self
            .registrations
            .lock()
            .expect("the registrations lock is not poisoned")
            .iter()
            .find(|registered| registered.issuer == metadata.issuer)
            .cloned();
        if let Some(known) = known {
            return Ok(known);
        }
        let registered = self.register(metadata, scopes).await?;
        self.registrations
            .lock()
            .expect("the registrations lock is not poisoned")
            .push(registered.clone());
        Ok(registered)
    }

    /// Step 1: `initialize` without a token must be answered with 401 and (usually) a Bearer
    /// challenge (MCP authorization "Authorization Flow Steps").
    async fn challenge(&self) -> Result<BearerChallenge, DriverError> {
        let body = json!({
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": PROBE_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": self.config.client_name, "version": env!("CARGO_PKG_VERSION")},
            },
        });
        let request = self
            .api
            .post(self.config.mcp_url.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .json(&body)
            .build()?;
        let response = self.exchange(&self.api, Phase::Challenge, request).await?;
        if response.status != StatusCode::UNAUTHORIZED {
            tracing::warn!(status = %response.status, "unauthenticated initialize was not refused");
            return Err(DriverError::NoChallenge);
        }
        let values = response
            .headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok());
        Ok(BearerChallenge::from_header_values(values).unwrap_or_default())
    }

    /// Step 2: the PRM from the challenge's URL (no fallback, like the SDKs), else the
    /// path-suffixed then root well-known URL, moving on after a 4xx.
    async fn protected_resource_metadata(
        &self,
        challenge: &BearerChallenge,
    ) -> Result<ProtectedResourceMetadata, DriverError> {
        let candidates = match &challenge.resource_metadata {
            Some(value) => vec![Url::parse(value).map_err(|_| DriverError::InvalidUrl {
                context: "WWW-Authenticate resource_metadata",
                value: value.clone(),
            })?],
            None => protected_resource_metadata_candidates(&self.config.mcp_url),
        };
        let mut last_failure = None;
        for url in candidates {
            let response = self
                .get_json(Phase::ProtectedResourceMetadata, &url)
                .await?;
            if response.status == StatusCode::OK {
                return serde_json::from_slice(&response.body).map_err(|error| {
                    DriverError::ProtectedResourceMetadata {
                        url: url.clone(),
                        reason: format!("unparseable document: {error}"),
                    }
                });
            }
            let reason = format!("status {}: {}", response.status, response.excerpt());
            if !response.status.is_client_error() {
                return Err(DriverError::ProtectedResourceMetadata { url, reason });
            }
            last_failure = Some((url, reason));
        }
        let (url, reason) = last_failure.expect("there is at least one candidate");
        Err(DriverError::ProtectedResourceMetadata { url, reason })
    }

    /// Step 3: AS metadata in the spec's order; then the byte-exact issuer check and PKCE S256.
    async fn authorization_server_metadata(
        &self,
        issuer: &str,
    ) -> Result<AuthorizationServerMetadata, DriverError> {
        let issuer_url = Url::parse(issuer).map_err(|_| DriverError::InvalidUrl {
            context: "protected resource metadata authorization_servers[0]",
            value: issuer.to_owned(),
        })?;
        let mut tried = Vec::new();
        let mut found = None;
        for url in authorization_server_metadata_candidates(&issuer_url) {
            let response = self
                .get_json(Phase::AuthorizationServerMetadata, &url)
                .await?;
            tried.push(url);
            if response.status == StatusCode::OK {
                match serde_json::from_slice::<AuthorizationServerMetadata>(&response.body) {
                    Ok(metadata) => {
                        found = Some(metadata);
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(url = %response.url, %error, "unparseable authorization server metadata");
                        break;
                    }
                }
            }
            if !response.status.is_client_error() {
                break;
            }
        }
        let metadata = found.ok_or_else(|| DriverError::AuthorizationServerMetadata {
            issuer: issuer.to_owned(),
            tried,
        })?;
        if metadata.issuer != issuer {
            return Err(DriverError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: metadata.issuer,
            });
        }
        let has_s256 = metadata
            .code_challenge_methods_supported
            .as_ref()
            .is_some_and(|methods| methods.iter().any(|method| method == "S256"));
        if !has_s256 {
            return Err(DriverError::PkceNotSupported);
        }
        Ok(metadata)
    }

    /// MCP 2025-03-26 "Server Metadata Discovery" for a server without PRM: the MCP server's
    /// origin is the authorization server; its RFC 8414 metadata at the root well-known URL, else
    /// the default endpoints `/authorize`, `/token` and `/register` with PKCE S256.
    async fn legacy_authorization_server_metadata(
        &self,
    ) -> Result<AuthorizationServerMetadata, DriverError> {
        let origin = self.config.mcp_url.origin().ascii_serialization();
        let base = Url::parse(&origin).map_err(|_| DriverError::InvalidUrl {
            context: "MCP server origin",
            value: origin.clone(),
        })?;
        let endpoint = |path: &str| base.join(path).expect("a root path joins onto an origin");
        let url = endpoint("/.well-known/oauth-authorization-server");
        let response = self
            .get_json(Phase::AuthorizationServerMetadata, &url)
            .await?;
        if response.status == StatusCode::OK {
            let metadata: AuthorizationServerMetadata = serde_json::from_slice(&response.body)
                .map_err(|_| DriverError::AuthorizationServerMetadata {
                    issuer: origin.clone(),
                    tried: vec![url.clone()],
                })?;
            if metadata.issuer != origin {
                return Err(DriverError::IssuerMismatch {
                    expected: origin,
                    found: metadata.issuer,
                });
            }
            return Ok(metadata);
        }
        if !response.status.is_client_error() {
            return Err(DriverError::AuthorizationServerMetadata {
                issuer: origin,
                tried: vec![url],
            });
        }
        Ok(AuthorizationServerMetadata {
            authorization_endpoint: endpoint("/authorize"),
            token_endpoint: endpoint("/token"),
            registration_endpoint: Some(endpoint("/register")),
            jwks_uri: None,
            scopes_supported: None,
            code_challenge_methods_supported: Some(vec!["S256".to_owned()]),
            authorization_response_iss_parameter_supported: false,
            token_endpoint_auth_methods_supported: None,
            client_id_metadata_document_supported: false,
            issuer: origin,
        })
    }

    /// Step 4: dynamic client registration as a native client (RFC 7591 §3.1), public when the
    /// AS allows it.
    async fn register(
        &self,
        metadata: &AuthorizationServerMetadata,
        scopes: &[String],
    ) -> Result<RegisteredClient, DriverError> {
        let endpoint = metadata
            .registration_endpoint
            .clone()
            .ok_or(DriverError::NoRegistrationEndpoint)?;
        let supported = metadata.token_endpoint_auth_methods_supported.as_deref();
        let requested_method = registration_auth_method(supported);
        let mut body = json!({
            "client_name": self.config.client_name,
            "redirect_uris": [self.config.redirect_uri.as_str()],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": requested_method.as_str(),
            "application_type": "native",
        });
        if !scopes.is_empty() {
            body["scope"] = Value::String(scopes.join(" "));
        }
        let request = self
            .api
            .post(endpoint)
            .header(ACCEPT, "application/json")
            .json(&body)
            .build()?;
        let response = self
            .exchange(&self.api, Phase::Registration, request)
            .await?;
        let status = response.status.as_u16();
        if !matches!(response.status, StatusCode::CREATED | StatusCode::OK) {
            return Err(DriverError::Registration {
                status,
                body: String::from_utf8_lossy(&response.body).into_owned(),
            });
        }
        let registered: Value =
            serde_json::from_slice(&response.body).map_err(|error| DriverError::Registration {
                status,
                body: format!("unparseable registration response: {error}"),
            })?;
        let client_id = registered
            .get("client_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| DriverError::Registration {
                status,
                body: format!("no client_id in {}", excerpt(&response.body)),
            })?;
        let client_secret = registered
            .get("client_secret")
            .and_then(Value::as_str)
            .map(|secret| Secret::new(secret.to_owned()));
        // RFC 7591 §3.2.1: the response states the method the AS registered.
        let registered_method = registered
            .get("token_endpoint_auth_method")
            .and_then(Value::as_str)
            .and_then(TokenEndpointAuthMethod::parse)
            .unwrap_or(requested_method);
        Ok(RegisteredClient {
            issuer: metadata.issuer.clone(),
            client_id,
            auth_method: token_auth_method(
                Some(registered_method),
                supported,
                client_secret.is_some(),
            ),
            client_secret,
        })
    }

    /// Step 6: the user agent. GETs the authorize URL and every `Location` with the cookie jar
    /// until a `Location` points at the redirect URI, which is returned without being fetched;
    /// with [`UserAgent::Browser`], Chromium goes there instead (see [`crate::browser`]). A page
    /// that is no redirect ends the chain: the hosted error page if its URL names an error
    /// ([`DriverError::HostedErrorPage`]), else [`DriverError::AuthorizationRedirect`].
    async fn follow_redirects(&self, authorize_url: Url) -> Result<Url, DriverError> {
        if let UserAgent::Browser(agent) = &self.config.user_agent {
            return browser::authorize_in_browser(
                agent,
                authorize_url,
                &self.config.redirect_uri,
                &self.hops,
            )
            .await;
        }
        let mut current = authorize_url.clone();
        for _ in 0..MAX_REDIRECTS {
            let request = self.browser.get(current.clone()).build()?;
            let response = self
                .exchange(&self.browser, Phase::Authorization, request)
                .await?;
            if !response.status.is_redirection() {
                if let Some(error) = DriverError::hosted_error_page(
                    &response.url,
                    response.status.as_u16(),
                    &authorize_url,
                ) {
                    return Err(error);
                }
                return Err(DriverError::AuthorizationRedirect {
                    reason: format!(
                        "{} at {} instead of a redirect: {}",
                        response.status,
                        redact_url(&response.url),
                        response.excerpt()
                    ),
                });
            }
            let location = response
                .headers
                .get(LOCATION)
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| DriverError::AuthorizationRedirect {
                    reason: format!(
                        "{} at {} without a Location",
                        response.status,
                        redact_url(&response.url)
                    ),
                })?;
            let next = resolve_location(&response.url, location)?;
            if is_redirect_uri(&next, &self.config.redirect_uri) {
                return Ok(next);
            }
            current = next;
        }
        Err(DriverError::AuthorizationRedirect {
            reason: format!(
                "more than {MAX_REDIRECTS} redirects, the last to {}",
                redact_url(&current)
            ),
        })
    }

    /// Step 9: the ID token's signature (JWKS from `jwks_uri`), audience, nonce and expiry via
    /// `openidconnect`; the issuer is checked here against the metadata issuer and, for a
    /// per-resource issuer, the environment URL.
    async fn verify_id_token(
        &self,
        metadata: &AuthorizationServerMetadata,
        client_id: &str,
        raw_id_token: &str,
        nonce: &Nonce,
        access_token: &str,
    ) -> Result<Value, DriverError> {
        let jwks_uri = metadata
            .jwks_uri
            .as_ref()
            .ok_or_else(|| DriverError::IdToken("the metadata has no jwks_uri".to_owned()))?;
        let response = self.get_json(Phase::Jwks, jwks_uri).await?;
        if response.status != StatusCode::OK {
            return Err(DriverError::IdToken(format!(
                "jwks_uri answered {}",
                response.status
            )));
        }
        let keys: CoreJsonWebKeySet = serde_json::from_slice(&response.body)
            .map_err(|error| DriverError::IdToken(format!("unparseable JWKS: {error}")))?;
        let issuer = openidconnect::IssuerUrl::new(metadata.issuer.clone())
            .map_err(|error| DriverError::IdToken(format!("issuer is not a URL: {error}")))?;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(client_id.to_owned()),
            issuer,
            keys,
        )
        .require_issuer_match(false);
        let id_token = CoreIdToken::from_str(raw_id_token)
            .map_err(|error| DriverError::IdToken(format!("unparseable id token: {error}")))?;
        let claims = id_token
            .claims(&verifier, nonce)
            .map_err(|error| DriverError::IdToken(error.to_string()))?;
        // OIDC Core §3.1.3.8: when `at_hash` is present it must match the access token.
        if let Some(expected_hash) = claims.access_token_hash() {
            let algorithm = id_token
                .signing_alg()
                .map_err(|error| DriverError::IdToken(error.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|error| DriverError::IdToken(error.to_string()))?;
            let actual_hash = AccessTokenHash::from_token(
                &AccessToken::new(access_token.to_owned()),
                algorithm,
                key,
            )
            .map_err(|error| DriverError::IdToken(error.to_string()))?;
            if actual_hash != *expected_hash {
                return Err(DriverError::IdToken(
                    "at_hash does not match the access token".to_owned(),
                ));
            }
        }
        let token_issuer = claims.issuer().as_str();
        let accepted = accepted_id_token_issuers(&metadata.issuer);
        if !accepted.iter().any(|candidate| candidate == token_issuer) {
            return Err(DriverError::IdToken(format!(
                "issuer {token_issuer:?} is none of {accepted:?}"
            )));
        }
        decode_jwt_payload(raw_id_token)
            .ok_or_else(|| DriverError::IdToken("payload is not JSON".to_owned()))
    }

    /// `refresh_token` grant with `resource` (RFC 6749 §6, RFC 8707 §2.2).
    pub(crate) async fn refresh(&self, report: &FlowReport) -> Result<TokenSet, DriverError> {
        let refresh_token = report
            .tokens
            .refresh_token
            .as_ref()
            .ok_or(DriverError::NoRefreshToken)?;
        let client: OAuthClient<EndpointNotSet> =
            oauth2::Client::new(ClientId::new(report.client_id.clone()))
                .set_token_uri(TokenUrl::from_url(report.token_endpoint.clone()))
                .set_auth_type(AuthType::RequestBody);
        let http_client = self.oauth_http(Phase::Refresh);
        let refresh_token = RefreshToken::new(refresh_token.expose().to_owned());
        let response = client
            .exchange_refresh_token(&refresh_token)
            .add_extra_param("resource", report.resource.clone())
            .request_async(&http_client)
            .await
            .map_err(|error| token_error(error, self.hops.last_status()))?;
        Ok(token_set(&response))
    }
}

/// The tokens of a token response.
fn token_set(response: &OAuthTokenResponse) -> TokenSet {
    TokenSet {
        access_token: Secret::new(response.access_token().secret().clone()),
        token_type: response.token_type().as_ref().to_owned(),
        refresh_token: response
            .refresh_token()
            .map(|token| Secret::new(token.secret().clone())),
        id_token: response.extra_fields().id_token.clone().map(Secret::new),
        expires_in: response.expires_in(),
        scope: response
            .scopes()
            .map(|scopes| scopes.iter().map(|scope| scope.to_string()).collect()),
    }
}

/// Maps an `oauth2` token error to [`DriverError::TokenEndpoint`] (RFC 6749 §5.2 body).
fn token_error(
    error: RequestTokenError<DriverError, BasicErrorResponse>,
    status: Option<u16>,
) -> DriverError {
    let status = status.unwrap_or(0);
    match error {
        RequestTokenError::ServerResponse(body) => DriverError::TokenEndpoint {
            status,
            error: body.error().as_ref().to_owned(),
            error_description: body.error_description().cloned(),
        },
        RequestTokenError::Request(error) => error,
        RequestTokenError::Parse(error, body) => DriverError::TokenEndpoint {
            status,
            error: "invalid_response".to_owned(),
            error_description: Some(format!("{error}: {}", excerpt(&body))),
        },
        RequestTokenError::Other(message) => DriverError::TokenEndpoint {
            status,
            error: "invalid_response".to_owned(),
            error_description: Some(message),
        },
    }
}

/// Sends one request and reads the response to the end, recording it as a hop.
async fn exchange(
    hops: &HopLog,
    client: &reqwest::Client,
    phase: Phase,
    request: reqwest::Request,
) -> Result<Exchange, DriverError> {
    let method = request.method().to_string();
    let url = request.url().clone();
    let mut response = client.execute(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    // Read in chunks up to a bound: the driver also talks to servers under test, and one that
    // streams without end must not fill the memory.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(DriverError::ResponseTooLarge {
                url: redact_url(&url),
                limit: MAX_RESPONSE_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|value: &reqwest::header::HeaderValue| value.to_str().ok())
            .map(str::to_owned)
    };
    hops.push(Hop {
        phase,
        method,
        url: redact_url(&url),
        status: status.as_u16(),
        location: header_text(LOCATION).map(|location| redact_location(&url, &location)),
        cache_control: header_text(CACHE_CONTROL),
        detail: None,
    });
    Ok(Exchange {
        url,
        status,
        headers,
        body,
    })
}

/// One `oauth2` crate request over the API client (see [`Driver::oauth_http`]).
async fn oauth_http(
    hops: HopLog,
    api: reqwest::Client,
    phase: Phase,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, DriverError> {
    let request = reqwest::Request::try_from(request)?;
    let response = exchange(&hops, &api, phase, request).await?;
    if phase == Phase::Token || phase == Phase::Refresh {
        let no_store = response
            .headers
            .get(CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.to_ascii_lowercase().contains("no-store"));
        if !no_store {
            tracing::warn!(%phase, "token response without Cache-Control: no-store (RFC 6749 §5.1)");
        }
    }
    let mut builder = http::Response::builder().status(response.status);
    if let Some(headers) = builder.headers_mut() {
        *headers = response.headers;
    }
    builder
        .body(response.body)
        .map_err(|error| DriverError::TokenEndpoint {
            status: 0,
            error: "invalid_response".to_owned(),
            error_description: Some(error.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_payload_is_decoded_without_verification() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"usr_1","aud":["res_1"]}"#);
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig");
        assert_eq!(
            decode_jwt_payload(&token),
            Some(json!({"sub": "usr_1", "aud": ["res_1"]}))
        );
        assert_eq!(decode_jwt_payload("opaque-token"), None);
        assert_eq!(decode_jwt_payload("a.b.c.d"), None);
    }

    #[test]
    fn excerpt_collapses_whitespace_and_truncates() {
        assert_eq!(excerpt(b"error:\n  invalid_state "), "error: invalid_state");
        assert_eq!(
            excerpt(
                b"<!doctype html><html><head><title>T</title><style>body{x:1}</style></head>\n\
                  <body><h1>Sign-in failed</h1><p>code &lt;3&gt; &amp; <code>INVALID_ARGUMENT</code></p>\
                  <script>ignored()</script></body></html>"
            ),
            "Sign-in failed code <3> & INVALID_ARGUMENT"
        );
        let long = "x".repeat(BODY_EXCERPT_CHARS + 10);
        assert_eq!(
            excerpt(long.as_bytes()).chars().count(),
            BODY_EXCERPT_CHARS + 1
        );
    }
}
