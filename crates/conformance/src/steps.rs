//! Step scenarios: a sequence of HTTP exchanges with the emulator, each with an exact expectation.
//!
//! A step scenario plays the MCP client and "Your App" itself, one request at a time, so that any
//! request can be bent (a parameter dropped or replaced, another flow's value used, the clock
//! moved) and the exact answer checked. Values flow between steps through named variables:
//! `{state}` is the `state` the last `authorize` step handed to the login endpoint, `{code}` the
//! code the last callback carried, and so on (see `scenarios/README.md`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// One step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the step does.
    #[serde(rename = "do")]
    pub action: Action,
    /// What the step shows, for the report.
    pub note: Option<String>,
    /// Parameters added to, replacing or (with `false`) removed from the request's defaults.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    /// The JSON body, replacing the default (`post-user`, `register`, `request`).
    pub body: Option<toml::Value>,
    /// The bearer token (`post-user`, `request`); `""` sends no `Authorization` header.
    pub bearer: Option<String>,
    /// Request headers (`request`, `authorize`, `callback`, `consent`), e.g.
    /// `headers = { origin = "http://evil.example" }`; values may use variables.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Which user agent sends the request (see [`Browser`]); each kind of step has its default.
    pub browser: Option<Browser>,
    /// How a `client-credentials` or `jwt-bearer` step authenticates the client: form fields
    /// (default) or HTTP Basic.
    pub client_auth: Option<ClientAuth>,
    /// The connection id in the path (`post-user`, `callback`).
    pub connection: Option<String>,
    /// The login request id in the path (`post-user`).
    pub login_request: Option<String>,
    /// The resource id in the path (`register`).
    pub resource: Option<String>,
    /// Seconds to move the emulator's clock (`advance-clock`).
    pub seconds: Option<u64>,
    /// The HTTP method (`request`).
    pub method: Option<String>,
    /// The path, relative to the environment URL, or an absolute URL such as `{mcp_url}` (`request`).
    pub path: Option<String>,
    /// Saves the named variables under a prefix, e.g. `save_as = "first"` keeps `{first.state}`.
    pub save_as: Option<String>,
    /// Sets variables from string values in the JSON answer, by JSON pointer:
    /// `capture = { consent_id = "/consents/0/id" }`.
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
    /// What must come back.
    #[serde(default)]
    pub expect: StepExpectation,
}

/// The user agent a step's request comes from. The step runner plays several parties: the
/// browser of the sign-in, the MCP client and Your App's server, and another browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Browser {
    /// The browser that starts the sign-in and keeps its cookies (Decisions §9): the default of
    /// `authorize`, `callback`, `consent` and `request`.
    Main,
    /// A second browser with a cookie jar of its own: a sign-in finished in another browser.
    Other,
    /// No cookies at all: a server-side fetch, as the MCP client and Your App's server make
    /// their calls (the default of every other step).
    #[serde(rename = "none")]
    Without,
}

/// How a client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// `client_id` and `client_secret` as form fields (`client_secret_post`).
    Post,
    /// `Authorization: Basic` with the form-encoded id and secret (`client_secret_basic`).
    Basic,
}

/// A parameter override: a value, or `false` to leave the parameter out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Param {
    /// Send this value (variables are substituted).
    Value(String),
    /// `false`: do not send the parameter.
    Omit(bool),
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// `POST {env}/api/v1/resources/{resource}/clients:register` (DCR); sets `{client_id}`.
    Register,
    /// `GET {env}/oauth/authorize` with fresh PKCE and client state; on a redirect to the login
    /// endpoint sets `{login_request_id}` and `{state}`.
    Authorize,
    /// `POST {env}/oauth/token` with `client_credentials`; sets `{management_token}`.
    ManagementToken,
    /// `POST {env}/oauth/token` with `client_credentials` as the fixtures' agent of the first
    /// resource (`{agent_client_id}`, `{agent_client_secret}`); sets `{access_token}`.
    ClientCredentials,
    /// `POST {env}/api/v1/connections/{connection}/auth-requests/{login_request}/user` with the
    /// persona's claims; fetches a management token first if none is set.
    PostUser,
    /// `GET {env}/sso/v1/connections/{connection}/partner:callback?state=…`; on a redirect to the
    /// client sets `{code}`; on a consent page sets `{consent_id}`.
    Callback,
    /// `POST {env}/oauth/consent` with `consent_id` and `decision` (params); sets `{code}`.
    Consent,
    /// `POST {env}/oauth/token` with `authorization_code`; sets `{access_token}`, `{refresh_token}`.
    Token,
    /// `POST {env}/oauth/token` with `refresh_token`; sets `{access_token}`, `{refresh_token}` and
    /// keeps the old one as `{previous_refresh_token}`.
    Refresh,
    /// `POST {env}/_emulator/idps/{idp_id}/id-jag` with the step's `body` (default `{}`): an
    /// ID-JAG of the fixtures' trusted identity provider, made to order; sets `{id_jag}`.
    IdJag,
    /// `POST {env}/oauth/token` with `urn:ietf:params:oauth:grant-type:jwt-bearer`,
    /// `assertion={id_jag}` and the fixtures' cross-app access client (`{xaa_client_id}`,
    /// `{xaa_client_secret}`); sets `{access_token}`.
    JwtBearer,
    /// Moves the emulator's clock forward by `seconds`.
    AdvanceClock,
    /// Any request: `method`, `path`, `params` (query for GET, form otherwise) or `body` (JSON).
    Request,
}

impl Action {
    /// The kebab-case name used in files and check ids.
    pub fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Authorize => "authorize",
            Self::ManagementToken => "management-token",
            Self::ClientCredentials => "client-credentials",
            Self::PostUser => "post-user",
            Self::Callback => "callback",
            Self::Consent => "consent",
            Self::Token => "token",
            Self::Refresh => "refresh",
            Self::IdJag => "id-jag",
            Self::JwtBearer => "jwt-bearer",
            Self::AdvanceClock => "advance-clock",
            Self::Request => "request",
        }
    }
}

/// What a step's answer must be. Every field that is set is checked; strings may use variables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepExpectation {
    /// The HTTP status.
    pub status: Option<u16>,
    /// Where a redirect goes.
    pub redirect: Option<RedirectTarget>,
    /// Exact values of query parameters of the redirect `Location`.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Query parameters of the redirect `Location` that must start with the given text.
    #[serde(default)]
    pub query_prefix: BTreeMap<String, String>,
    /// Query parameters the redirect must not carry.
    #[serde(default)]
    pub absent: Vec<String>,
    /// The OAuth `error` (from the JSON body, or from the redirect's query).
    pub error: Option<String>,
    /// The exact OAuth `error_description`.
    pub error_description: Option<String>,
    /// Scalekit's gateway error: the gRPC `code` number.
    pub code: Option<i64>,
    /// Scalekit's gateway error: `details[0].error_code`.
    pub error_code: Option<String>,
    /// Scalekit's gateway error: the exact `message`.
    pub message: Option<String>,
    /// Scalekit's gateway error: the fields of `validation_error_info.field_violations`, in order.
    pub field_violations: Option<Vec<String>>,
    /// The whole JSON body, exactly.
    pub json: Option<toml::Value>,
    /// Values inside the JSON body by JSON pointer (RFC 6901), e.g. `"/keys/0/alg" = "RS256"`.
    #[serde(default)]
    pub values: BTreeMap<String, toml::Value>,
    /// Strings inside the JSON body, by JSON pointer, that must start with the given text.
    #[serde(default)]
    pub prefixes: BTreeMap<String, String>,
    /// JSON pointers that must not exist in the body.
    #[serde(default)]
    pub json_absent: Vec<String>,
    /// Texts the body must contain (HTML pages).
    #[serde(default)]
    pub body_contains: Vec<String>,
    /// Response headers that must contain the given text (names are case-insensitive).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Where a redirect goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedirectTarget {
    /// The connection's login endpoint ("Your App").
    LoginEndpoint,
    /// The client's `redirect_uri`.
    Client,
    /// The environment's hosted error page: `{env}/error` on the emulator (its path is the
    /// emulator's decision); on a real Scalekit environment, whose page's path is unknown, any
    /// page on the environment's host whose query carries `error`.
    ErrorPage,
    /// No redirect at all (not a 3xx, or no `Location`).
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_with_overrides_parses() {
        let step: Step = toml::from_str(
            r#"
do = "authorize"
params = { code_challenge_method = "plain", resource = false }
[expect]
status = 302
redirect = "client"
query = { error = "invalid_request", state = "{client_state}" }
absent = ["code"]
"#,
        )
        .unwrap();
        assert_eq!(step.action, Action::Authorize);
        assert_eq!(
            step.params["code_challenge_method"],
            Param::Value("plain".to_owned())
        );
        assert_eq!(step.params["resource"], Param::Omit(false));
        assert_eq!(step.expect.redirect, Some(RedirectTarget::Client));
        assert_eq!(step.expect.absent, ["code"]);
        assert_eq!(step.browser, None);
    }

    #[test]
    fn a_step_may_expect_the_hosted_error_page() {
        let step: Step = toml::from_str(
            "do = \"callback\"\n[expect]\nstatus = 302\nredirect = \"error-page\"\n\
             query = { error = \"invalid_state\" }\n",
        )
        .unwrap();
        assert_eq!(step.expect.redirect, Some(RedirectTarget::ErrorPage));
        assert_eq!(step.expect.query["error"], "invalid_state");
    }

    #[test]
    fn a_step_names_its_browser() {
        for (name, browser) in [
            ("main", Browser::Main),
            ("other", Browser::Other),
            ("none", Browser::Without),
        ] {
            let step: Step =
                toml::from_str(&format!("do = \"callback\"\nbrowser = \"{name}\"\n")).unwrap();
            assert_eq!(step.browser, Some(browser));
        }
        assert!(toml::from_str::<Step>("do = \"callback\"\nbrowser = \"chrome\"\n").is_err());
    }

    #[test]
    fn cross_app_access_steps_parse() {
        let step: Step =
            toml::from_str("do = \"id-jag\"\nbody = { signed_by = \"none\" }\n").unwrap();
        assert_eq!(step.action, Action::IdJag);
        assert_eq!(step.action.name(), "id-jag");
        let step: Step = toml::from_str("do = \"jwt-bearer\"\nclient_auth = \"basic\"\n").unwrap();
        assert_eq!(step.action, Action::JwtBearer);
        assert_eq!(step.client_auth, Some(ClientAuth::Basic));
    }

    #[test]
    fn a_client_credentials_step_names_how_the_client_authenticates() {
        let step: Step =
            toml::from_str("do = \"client-credentials\"\nclient_auth = \"basic\"\n").unwrap();
        assert_eq!(step.action, Action::ClientCredentials);
        assert_eq!(step.client_auth, Some(ClientAuth::Basic));
        assert!(
            toml::from_str::<Step>("do = \"client-credentials\"\nclient_auth = \"jwt\"\n").is_err()
        );
    }
}
