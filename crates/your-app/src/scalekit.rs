//! The Scalekit client Your App needs for BYOA: a cached management token (client credentials,
//! scalekit.md §1) and the user-details call (scalekit.md §2, REST form). It speaks only HTTP, so it
//! works unchanged against real Scalekit.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use scalekit_wire::{AuthRequestResponse, GatewayError, OAuthErrorBody, Secret, UserClaims};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

/// A cached management token is replaced this long before Scalekit says it expires, so a token
/// never runs out between the check and the call.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// How long one call to Scalekit may take. The docs name gateway timeouts on the user-details
/// call; a bounded wait turns them into an error page instead of a hung browser.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// At most this much of an unparseable error body is kept for the error page.
const MAX_TEXT_BODY: usize = 2_000;

/// The login request id Scalekit handed to the login endpoint (`lri_…`). Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequestId(String);

impl LoginRequestId {
    /// Accepts any non-empty value: the id's format is Scalekit's business.
    pub fn parse(value: &str) -> Option<Self> {
        (!value.is_empty()).then(|| Self(value.to_owned()))
    }

    /// The id as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The `state` Scalekit minted for the login page. Handed back unchanged on `partner:callback`.
/// It is not the MCP client's own `state`. Never empty; not printed in `Debug` because it binds a
/// browser to a login request.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginState(String);

impl LoginState {
    /// Accepts any non-empty value, byte for byte.
    pub fn parse(value: &str) -> Option<Self> {
        (!value.is_empty()).then(|| Self(value.to_owned()))
    }

    /// The state as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LoginState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("LoginState([redacted])")
    }
}

/// Which call to Scalekit went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `POST {env}/oauth/token` with client credentials.
    ManagementToken,
    /// `POST {env}/api/v1/connections/{conn}/auth-requests/{lri}/user`.
    UserDetails,
}

impl fmt::Display for Step {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::ManagementToken => "management token request",
            Self::UserDetails => "user details call",
        })
    }
}

/// An error body from Scalekit, in whichever shape it came.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorBody {
    /// The gateway shape of `/api/v1`: `{code, message, details}`.
    Gateway(GatewayError),
    /// The OAuth shape of `/oauth/token`: `{error, error_description}`.
    OAuth(OAuthErrorBody),
    /// Anything else, truncated.
    Text(String),
}

impl ErrorBody {
    fn parse(bytes: &[u8]) -> Self {
        if let Ok(gateway) = serde_json::from_slice::<GatewayError>(bytes) {
            return Self::Gateway(gateway);
        }
        if let Ok(oauth) = serde_json::from_slice::<OAuthErrorBody>(bytes) {
            return Self::OAuth(oauth);
        }
        let text = String::from_utf8_lossy(bytes);
        Self::Text(text.chars().take(MAX_TEXT_BODY).collect())
    }
}

/// A failed call to Scalekit. Whatever the variant, the login must not continue to
/// `partner:callback` (scalekit.md §7).
#[derive(Debug, thiserror::Error)]
pub enum ScalekitError {
    /// Scalekit could not be reached, or the connection broke.
    #[error("could not reach scalekit for the {step}")]
    Transport {
        /// The call.
        step: Step,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// Scalekit answered with an error status.
    #[error("scalekit refused the {step} with http status {status}")]
    Rejected {
        /// The call.
        step: Step,
        /// The HTTP status.
        status: StatusCode,
        /// The error body.
        body: ErrorBody,
    },
    /// Scalekit answered with success, but not with the documented body.
    #[error("scalekit answered the {step} with http status {status} and an undocumented body")]
    UnexpectedBody {
        /// The call.
        step: Step,
        /// The HTTP status.
        status: StatusCode,
        /// Why the body did not parse.
        #[source]
        source: serde_json::Error,
    },
}

/// Where and as whom to call Scalekit.
#[derive(Debug, Clone)]
pub struct ScalekitSettings {
    /// The environment URL; a trailing slash is tolerated.
    pub environment_url: Url,
    /// The environment API client (`skc_…`).
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// The BYOA connection (`conn_…`).
    pub connection_id: String,
    /// A CA certificate (PEM) trusted besides the system's roots (the emulator's development CA).
    pub ca_cert_pem: Option<String>,
}

/// The answer of the token endpoint (only what is used).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    /// Seconds. Absent means "no lifetime given": such a token is not cached.
    #[serde(default)]
    expires_in: Option<u64>,
}

struct CachedToken {
    access_token: Secret,
    refresh_after: Instant,
}

/// The outcome of one user-details POST.
enum UserPost {
    Accepted(AuthRequestResponse),
    /// A 401: the token may have been revoked or expired early; worth one retry with a new one.
    Unauthenticated(ErrorBody),
}

/// Scalekit's management API as Your App uses it. One per app: it owns the token cache.
pub struct ScalekitClient {
    http: reqwest::Client,
    settings: ScalekitSettings,
    /// Held across a refresh, so that concurrent logins wait for one token request instead of
    /// each sending their own.
    token: Mutex<Option<CachedToken>>,
}

impl fmt::Debug for ScalekitClient {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ScalekitClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ScalekitClient {
    /// A client with its own connection pool. Redirects are not followed: an API that redirects is
    /// misconfigured, and following would resend the bearer.
    pub fn new(settings: ScalekitSettings) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT);
        if let Some(pem) = &settings.ca_cert_pem {
            builder = builder.tls_certs_merge([reqwest::Certificate::from_pem(pem.as_bytes())?]);
        }
        let http = builder.build()?;
        Ok(Self {
            http,
            settings,
            token: Mutex::new(None),
        })
    }

    /// `{env}/oauth/token`.
    pub fn token_url(&self) -> Url {
        self.environment_url_with(&["oauth", "token"])
    }

    /// `{env}/api/v1/connections/{conn}/auth-requests/{lri}/user`, each id one encoded segment.
    pub fn user_details_url(&self, login_request_id: &LoginRequestId) -> Url {
        self.user_details_url_for(&self.settings.connection_id, login_request_id)
    }

    /// The user-details URL under another connection id (a deliberate mistake, see
    /// [`crate::Behaviour::WrongConnection`]).
    pub fn user_details_url_for(
        &self,
        connection_id: &str,
        login_request_id: &LoginRequestId,
    ) -> Url {
        self.environment_url_with(&[
            "api",
            "v1",
            "connections",
            connection_id,
            "auth-requests",
            login_request_id.as_str(),
            "user",
        ])
    }

    /// `{env}/sso/v1/connections/{conn}/partner:callback?state=…`, the state exactly as received
    /// (form-encoded, so it decodes to the same bytes).
    pub fn partner_callback_url(&self, state: &LoginState) -> Url {
        let mut url = self.environment_url_with(&[
            "sso",
            "v1",
            "connections",
            &self.settings.connection_id,
            "partner:callback",
        ]);
        url.query_pairs_mut().append_pair("state", state.as_str());
        url
    }

    fn environment_url_with(&self, segments: &[&str]) -> Url {
        let mut url = self.settings.environment_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Posts the user's claims for a login request (step 2 of the flow) and returns Scalekit's
    /// `auth_request_id`. A 401 drops the cached token and retries once with a fresh one.
    pub async fn submit_user(
        &self,
        login_request_id: &LoginRequestId,
        claims: &UserClaims,
    ) -> Result<AuthRequestResponse, ScalekitError> {
        let url = self.user_details_url(login_request_id);
        let token = self.management_token().await?;
        let body = match self.post_user(&url, &token, claims).await? {
            UserPost::Accepted(response) => return Ok(response),
            UserPost::Unauthenticated(body) => body,
        };
        tracing::info!(
            login_request_id = login_request_id.as_str(),
            "scalekit refused the management token; fetching a new one and retrying once"
        );
        self.forget_token(&token).await;
        let token = self.management_token().await?;
        match self.post_user(&url, &token, claims).await? {
            UserPost::Accepted(response) => Ok(response),
            UserPost::Unauthenticated(retry_body) => {
                tracing::debug!(first_body = ?body, "first 401 before the retry");
                Err(ScalekitError::Rejected {
                    step: Step::UserDetails,
                    status: StatusCode::UNAUTHORIZED,
                    body: retry_body,
                })
            }
        }
    }

    /// Posts once to `url` with exactly `token`, without the cache or the retry: how a broken
    /// integration posts (see [`crate::Behaviour`]).
    pub async fn submit_user_once(
        &self,
        url: &Url,
        token: Option<&Secret>,
        claims: &UserClaims,
    ) -> Result<AuthRequestResponse, ScalekitError> {
        let token = match token {
            Some(token) => token.clone(),
            None => self.management_token().await?,
        };
        match self.post_user(url, &token, claims).await? {
            UserPost::Accepted(response) => Ok(response),
            UserPost::Unauthenticated(body) => Err(ScalekitError::Rejected {
                step: Step::UserDetails,
                status: StatusCode::UNAUTHORIZED,
                body,
            }),
        }
    }

    async fn post_user(
        &self,
        url: &Url,
        token: &Secret,
        claims: &UserClaims,
    ) -> Result<UserPost, ScalekitError> {
        let step = Step::UserDetails;
        let response = self
            .http
            .post(url.clone())
            .bearer_auth(token.expose())
            .json(claims)
            .send()
            .await
            .map_err(|source| ScalekitError::Transport { step, source })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ScalekitError::Transport { step, source })?;
        if status == StatusCode::UNAUTHORIZED {
            return Ok(UserPost::Unauthenticated(ErrorBody::parse(&bytes)));
        }
        if !status.is_success() {
            return Err(ScalekitError::Rejected {
                step,
                status,
                body: ErrorBody::parse(&bytes),
            });
        }
        serde_json::from_slice(&bytes)
            .map(UserPost::Accepted)
            .map_err(|source| ScalekitError::UnexpectedBody {
                step,
                status,
                source,
            })
    }

    /// The cached management token, or a new one when there is none or it is about to expire.
    async fn management_token(&self) -> Result<Secret, ScalekitError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_after
        {
            return Ok(token.access_token.clone());
        }
        let fetched_at = Instant::now();
        let response = self.fetch_token().await?;
        let access_token = response.access_token.clone();
        *cached = response
            .expires_in
            .map(Duration::from_secs)
            .and_then(|lifetime| lifetime.checked_sub(REFRESH_MARGIN))
            .map(|usable| CachedToken {
                access_token: response.access_token,
                refresh_after: fetched_at + usable,
            });
        Ok(access_token)
    }

    /// Drops the cached token if it is still the one that was refused (another login may already
    /// have replaced it).
    async fn forget_token(&self, refused: &Secret) {
        let mut cached = self.token.lock().await;
        if cached
            .as_ref()
            .is_some_and(|token| token.access_token == *refused)
        {
            *cached = None;
        }
    }

    /// `POST {env}/oauth/token` with `client_secret_post`-style form fields (scalekit.md §1).
    async fn fetch_token(&self) -> Result<TokenResponse, ScalekitError> {
        let step = Step::ManagementToken;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", self.settings.client_secret.expose()),
        ];
        let response = self
            .http
            .post(self.token_url())
            .form(&form)
            .send()
            .await
            .map_err(|source| ScalekitError::Transport { step, source })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ScalekitError::Transport { step, source })?;
        if !status.is_success() {
            return Err(ScalekitError::Rejected {
                step,
                status,
                body: ErrorBody::parse(&bytes),
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| ScalekitError::UnexpectedBody {
            step,
            status,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn client(environment_url: &str) -> ScalekitClient {
        ScalekitClient::new(ScalekitSettings {
            environment_url: Url::parse(environment_url).unwrap(),
            client_id: "skc_1".into(),
            client_secret: Secret::new("test_sk_1"),
            connection_id: "conn_1".into(),
            ca_cert_pem: None,
        })
        .unwrap()
    }

    #[test]
    fn urls_are_joined_with_or_without_a_trailing_slash() {
        for environment_url in ["http://127.0.0.1:9/", "http://127.0.0.1:9"] {
            let client = client(environment_url);
            assert_eq!(
                client.token_url().as_str(),
                "http://127.0.0.1:9/oauth/token"
            );
            assert_eq!(
                client
                    .user_details_url(&LoginRequestId::parse("lri_42").unwrap())
                    .as_str(),
                "http://127.0.0.1:9/api/v1/connections/conn_1/auth-requests/lri_42/user"
            );
            assert_eq!(
                client
                    .partner_callback_url(&LoginState::parse("abc").unwrap())
                    .as_str(),
                "http://127.0.0.1:9/sso/v1/connections/conn_1/partner:callback?state=abc"
            );
        }
    }

    #[test]
    fn an_environment_under_a_path_keeps_its_path() {
        let client = client("https://example.test/tenant/");
        assert_eq!(
            client.token_url().as_str(),
            "https://example.test/tenant/oauth/token"
        );
    }

    #[test]
    fn a_login_request_id_cannot_escape_its_path_segment() {
        let client = client("http://127.0.0.1:9");
        let url = client.user_details_url(&LoginRequestId::parse("../x?y#z").unwrap());
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/api/v1/connections/conn_1/auth-requests/..%2Fx%3Fy%23z/user"
        );
    }

    #[test]
    fn state_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", LoginState::parse("secret-state").unwrap()),
            "LoginState([redacted])"
        );
    }

    #[test]
    fn empty_ids_are_refused_at_the_edge() {
        assert_eq!(LoginRequestId::parse(""), None);
        assert_eq!(LoginState::parse(""), None);
    }

    #[test]
    fn error_bodies_are_recognised_by_shape() {
        let gateway = br#"{"code":3,"message":"bad","details":[]}"#;
        assert!(
            matches!(ErrorBody::parse(gateway), ErrorBody::Gateway(body) if body.message == "bad")
        );
        let oauth = br#"{"error":"invalid_client"}"#;
        assert!(
            matches!(ErrorBody::parse(oauth), ErrorBody::OAuth(body) if body.error == "invalid_client")
        );
        assert_eq!(
            ErrorBody::parse(b"teapot"),
            ErrorBody::Text("teapot".into())
        );
    }

    /// Built once: a reqwest client loads the platform's root certificates, which is slow for
    /// hundreds of cases.
    static SHARED_CLIENT: std::sync::LazyLock<ScalekitClient> =
        std::sync::LazyLock::new(|| client("http://127.0.0.1:9"));

    proptest! {
        #[test]
        fn the_callback_state_decodes_to_the_same_bytes(state in "\\PC{1,64}") {
            let url = SHARED_CLIENT.partner_callback_url(&LoginState::parse(&state).unwrap());
            let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            prop_assert_eq!(pairs, vec![("state".to_owned(), state)]);
        }
    }
}
