//! Naming what somebody's login integration got wrong, from what the emulator's request log saw
//! during one sign-in. Pure: records in, diagnostics out.

use serde::{Deserialize, Serialize};

/// The REST user-details path: `/api/v1/connections/{conn}/auth-requests/{lri}/user`.
const USER_POST_PREFIX: &str = "/api/v1/connections/";
/// The gRPC method the SDKs call for the same thing.
const GRPC_USER_POST: &str = "/scalekit.v1.auth.AuthService/UpdateLoginUserDetails";
/// The partner callback's path ends so: `/sso/v1/connections/{conn}/partner:callback`.
const CALLBACK_SUFFIX: &str = "/partner:callback";
const CALLBACK_PREFIX: &str = "/sso/v1/connections/";

/// One entry of `GET /_emulator/requests`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoggedRequest {
    /// `GET`, `POST`, ….
    pub method: String,
    /// The path as sent (a gRPC call shows its method path).
    pub path: String,
    /// The query, credentials cut to a prefix and `…` (a gRPC call shows the ids it carried).
    pub query: Option<String>,
    /// The HTTP status.
    pub status: u16,
    /// What an error answer said.
    pub error: Option<LoggedError>,
    /// Wall-clock unix milliseconds when the request came in.
    pub at: u64,
}

/// The error of a logged request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoggedError {
    /// `invalid_state`, `NOT_FOUND`, `INVALID_ARGUMENT`, ….
    pub code: String,
    /// The description or message.
    pub message: String,
    /// The fields an `INVALID_ARGUMENT` names.
    #[serde(default)]
    pub fields: Vec<String>,
}

impl LoggedRequest {
    /// `METHOD path?query → status code: message`, for evidence.
    fn describe(&self) -> String {
        let mut text = format!("{} {}", self.method, self.path);
        if let Some(query) = &self.query {
            text.push('?');
            text.push_str(query);
        }
        text.push_str(&format!(" → {}", self.status));
        if let Some(error) = &self.error {
            text.push_str(&format!(" {}: {}", error.code, error.message));
        }
        text
    }

    fn query_value(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// `(connection, login request)` when this is the user-details call, REST or gRPC.
    fn user_post(&self) -> Option<(String, String)> {
        let path = normalise(&self.path);
        if path == GRPC_USER_POST {
            return Some((
                self.query_value("connection_id").unwrap_or_default(),
                self.query_value("login_request_id").unwrap_or_default(),
            ));
        }
        let rest = path.strip_prefix(USER_POST_PREFIX)?;
        let segments: Vec<&str> = rest.split('/').collect();
        match segments.as_slice() {
            [connection, "auth-requests", login_request, "user"] if self.method == "POST" => {
                Some(((*connection).to_owned(), (*login_request).to_owned()))
            }
            _ => None,
        }
    }

    /// The connection in the path when this is the partner callback.
    fn callback(&self) -> Option<String> {
        let path = normalise(&self.path);
        let connection = path
            .strip_prefix(CALLBACK_PREFIX)?
            .strip_suffix(CALLBACK_SUFFIX)?;
        (!connection.contains('/')).then(|| connection.to_owned())
    }

    fn succeeded(&self) -> bool {
        self.error.is_none() && self.status < 400
    }
}

/// A leading `//` reaches the same route (Python's `env_url + "/path"`).
fn normalise(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

/// The first characters of a (possibly redacted) `state`: enough to tell two apart. The request
/// log, the flow inspector and the driver's hops all cut a `state` by the test bed's one rule
/// (`scalekit_wire::redact`), so the prefix of any of their records, or of the value itself, is the
/// same for one `state`.
pub fn state_prefix(state: &str) -> String {
    scalekit_wire::redact::shown_prefix(state)
}

/// What the emulator handed one sign-in's login page (read from the browser's URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedLogin {
    /// `login_request_id`.
    pub login_request_id: String,
    /// The first characters of `state`.
    pub state_prefix: String,
}

/// What the check knows about the sign-in being diagnosed.
#[derive(Debug, Clone)]
pub struct SignInContext<'a> {
    /// The connection the app is the login endpoint of (`conn_…`).
    pub connection_id: &'a str,
    /// What this sign-in's login page got, when the browser got there: the login request the
    /// sign-in settled on.
    pub current: Option<&'a IssuedLogin>,
    /// Login requests the emulator issued during this sign-in before the current one, oldest
    /// first (the browser loaded the authorization URL again, as after a reload): Scalekit gave
    /// them to the app too, so a call for one is not an unknown login request.
    pub superseded: &'a [IssuedLogin],
    /// What earlier sign-ins of this run got.
    pub earlier: &'a [IssuedLogin],
}

impl SignInContext<'_> {
    /// Every login request the emulator issued during this sign-in: the superseded ones, then
    /// the current one.
    fn issued_here(&self) -> impl Iterator<Item = &IssuedLogin> + '_ {
        self.superseded.iter().chain(self.current)
    }
}

/// A mistake, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mistake {
    /// The callback's `state` is not the one the login page got.
    StateAltered,
    /// The callback came without `state`.
    StateDropped,
    /// The browser reached `partner:callback` before any user-details call was made.
    RedirectBeforePost,
    /// The app went on to `partner:callback` although Scalekit had refused every user-details
    /// call it made (BYOA step 3: redirect only after Scalekit confirmed the user).
    RedirectAfterRefusedPost,
    /// `partner:callback` came without the sign-in's cookie: not from the browser that started
    /// the sign-in (the app fetched it server-side, or its user agent dropped the cookie).
    CallbackWithoutBrowserSession,
    /// The user object lacked `sub` or `email`.
    RequiredClaimsMissing,
    /// `phone_number` was not E.164.
    PhoneNotE164,
    /// Another field of the user object was refused.
    InvalidClaims,
    /// The MCP server's `res_…` id was used where the connection's `conn_…` id belongs.
    ResourceIdAsConnection,
    /// Another connection id than the app's own.
    WrongConnection,
    /// The management bearer was missing or not a valid management token.
    BadBearer,
    /// A login request (or its state) from an earlier sign-in was used again.
    LoginRequestReused,
    /// A login request id that is not the one the login page got.
    UnknownLoginRequest,
    /// The user was posted for one login request of this sign-in, and the browser sent back
    /// with the state of another.
    MismatchedLoginRequest,
    /// A different user was posted for a login request that already had one.
    ConflictingUser,
    /// The user was posted, but the browser never came to `partner:callback`.
    NoCallback,
    /// Neither the user-details call nor the callback arrived.
    NoHandOff,
}

impl Mistake {
    /// The name reports use.
    pub fn id(self) -> &'static str {
        match self {
            Self::StateAltered => "state-altered",
            Self::StateDropped => "state-dropped",
            Self::RedirectBeforePost => "redirect-before-post",
            Self::RedirectAfterRefusedPost => "redirect-after-refused-post",
            Self::CallbackWithoutBrowserSession => "callback-without-browser-session",
            Self::RequiredClaimsMissing => "required-claims-missing",
            Self::PhoneNotE164 => "phone-not-e164",
            Self::InvalidClaims => "invalid-claims",
            Self::ResourceIdAsConnection => "resource-id-as-connection",
            Self::WrongConnection => "wrong-connection",
            Self::BadBearer => "bad-bearer",
            Self::LoginRequestReused => "login-request-reused",
            Self::UnknownLoginRequest => "unknown-login-request",
            Self::MismatchedLoginRequest => "mismatched-login-request",
            Self::ConflictingUser => "conflicting-user",
            Self::NoCallback => "no-callback",
            Self::NoHandOff => "no-hand-off",
        }
    }

    /// What went wrong, in a sentence.
    pub fn summary(self) -> &'static str {
        match self {
            Self::StateAltered => "your app changed the state on the way back to partner:callback",
            Self::StateDropped => "your app redirected to partner:callback without the state",
            Self::RedirectBeforePost => {
                "your app redirected to partner:callback before posting the user"
            }
            Self::RedirectAfterRefusedPost => {
                "your app went on to partner:callback although Scalekit refused the user it posted"
            }
            Self::CallbackWithoutBrowserSession => {
                "partner:callback was not reached by the browser that started the sign-in (without its sign-in cookie): your app called it server-side"
            }
            Self::RequiredClaimsMissing => "the user your app posted lacks a required claim",
            Self::PhoneNotE164 => "the phone number your app posted is not E.164",
            Self::InvalidClaims => "a claim your app posted was refused",
            Self::ResourceIdAsConnection => {
                "your app used the MCP server's res_… id where the connection's conn_… id belongs"
            }
            Self::WrongConnection => "your app used another connection id than its own",
            Self::BadBearer => {
                "your app's user-details call had no valid management token as its bearer"
            }
            Self::LoginRequestReused => {
                "your app used a login request from an earlier sign-in again"
            }
            Self::UnknownLoginRequest => {
                "your app posted to a login request id Scalekit did not give it for this sign-in"
            }
            Self::MismatchedLoginRequest => {
                "your app posted the user for one login request and sent the browser back with the state of another"
            }
            Self::ConflictingUser => {
                "your app posted a different user for a login request that already had one"
            }
            Self::NoCallback => {
                "your app posted the user but never sent the browser to partner:callback"
            }
            Self::NoHandOff => {
                "your app neither posted the user nor sent the browser to partner:callback"
            }
        }
    }

    /// How to fix it.
    pub fn fix(self) -> &'static str {
        match self {
            Self::StateAltered | Self::StateDropped => {
                "redirect to {env}/sso/v1/connections/{conn_id}/partner:callback?state=<the state your login page received>, byte for byte (decode it once from the query, encode it once in the redirect)"
            }
            Self::RedirectBeforePost => {
                "wait for the user-details POST to succeed (200) before redirecting to partner:callback"
            }
            Self::RedirectAfterRefusedPost => {
                "redirect to partner:callback only after a 200 from the user-details call; when Scalekit refuses it, fix what the answer names (the other diagnostics of this sign-in) and show an error on your login page instead of redirecting"
            }
            Self::CallbackWithoutBrowserSession => {
                "answer the login page's request with a redirect (302/303) that sends the user's browser to {env}/sso/v1/connections/{conn_id}/partner:callback?state=<state>; do not fetch that URL from your server, whose HTTP client does not carry the cookie Scalekit set in the browser"
            }
            Self::RequiredClaimsMissing => {
                "post a user object with at least `sub` and `email` (or `login_failed: true` when the login failed)"
            }
            Self::PhoneNotE164 => {
                "send phone_number in E.164 form: a + and up to 15 digits, e.g. +14155550101"
            }
            Self::InvalidClaims => "fix the named fields of the user object",
            Self::ResourceIdAsConnection | Self::WrongConnection => {
                "post to /api/v1/connections/{conn_id}/auth-requests/{login_request_id}/user with the connection id (conn_…) from the dashboard's connection settings"
            }
            Self::BadBearer => {
                "get a management token with POST {env}/oauth/token (grant_type=client_credentials, your environment's client id and secret) and send it as `Authorization: Bearer <token>`"
            }
            Self::LoginRequestReused | Self::UnknownLoginRequest => {
                "use the login_request_id and state of the current request to your login page; never cache them across sign-ins"
            }
            Self::MismatchedLoginRequest => {
                "take login_request_id and state from the same request to your login page (after a reload, the newest one) and use that pair for both the user-details call and the redirect"
            }
            Self::ConflictingUser => {
                "post one user per login request; a new sign-in gets a new login request"
            }
            Self::NoCallback => {
                "after the user-details POST succeeds, redirect the browser to {env}/sso/v1/connections/{conn_id}/partner:callback?state=<state>, where {env} is the environment URL you were given"
            }
            Self::NoHandOff => {
                "check the profile's credentials and selectors, and that your app calls the environment URL you were given"
            }
        }
    }
}

/// One mistake, with the request that shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Which mistake.
    pub mistake: Mistake,
    /// The request that shows it, or what was missing.
    pub evidence: String,
}

impl Diagnostic {
    fn new(mistake: Mistake, evidence: impl Into<String>) -> Self {
        Self {
            mistake,
            evidence: evidence.into(),
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{}: {} (seen: {}). Fix: {}",
            self.mistake.id(),
            self.mistake.summary(),
            self.evidence,
            self.mistake.fix()
        )
    }
}

/// The user-details calls seen before a point of the sign-in.
#[derive(Debug, Default)]
struct PostsSoFar<'a> {
    /// One was accepted (200): Scalekit has the user.
    accepted: bool,
    /// The latest one Scalekit refused.
    refused: Option<&'a LoggedRequest>,
    /// The login requests of the accepted ones.
    accepted_for: Vec<String>,
}

/// The mistakes `records` (the requests the emulator saw during one sign-in, oldest first)
/// show, each once, in the order they happened.
///
/// Each request says what it can: a refused user-details call names its own mistake
/// (`phone-not-e164`, `resource-id-as-connection`, …) when it happens; a `partner:callback` that
/// follows only refused calls adds `redirect-after-refused-post` (with the refused answer as
/// evidence) when it happens, so that pair reads in that order. `redirect-before-post` is said only
/// when no user-details call at all came before the callback: nothing here states what the log
/// contradicts. A refused call the app retried until Scalekit accepted it, before any callback,
/// is no mistake (the reference Your App itself retries once after a 401), and neither is a
/// refused bearer followed by a call Scalekit authenticated (the Node SDK's first gRPC call may go
/// without its token, then it fetches one and calls again).
pub fn diagnose(records: &[LoggedRequest], context: &SignInContext<'_>) -> Vec<Diagnostic> {
    /// A diagnostic, and whether a later accepted call withdraws it (a refusal not yet acted on).
    struct Found {
        diagnostic: Diagnostic,
        withdrawn_by_acceptance: bool,
    }
    /// Keeps the first diagnostic of each mistake.
    fn push(found: &mut Vec<Found>, diagnostic: Diagnostic, withdrawable: bool) {
        if !found
            .iter()
            .any(|each| each.diagnostic.mistake == diagnostic.mistake)
        {
            found.push(Found {
                diagnostic,
                withdrawn_by_acceptance: withdrawable,
            });
        }
    }
    let mut found: Vec<Found> = Vec::new();
    let mut posts = PostsSoFar::default();
    let mut posted = false;
    let mut called_back = false;
    for record in records {
        if let Some((connection, login_request)) = record.user_post() {
            posted = true;
            let accepted = record.succeeded();
            if accepted {
                posts.accepted = true;
                posts.accepted_for.push(login_request.clone());
                found.retain(|each| !each.withdrawn_by_acceptance);
            } else {
                posts.refused = Some(record);
            }
            if !is_bearer_refusal(record) {
                found.retain(|each| {
                    !(each.withdrawn_by_acceptance && each.diagnostic.mistake == Mistake::BadBearer)
                });
            }
            if let Some(mistake) = user_post_mistake(record, &connection, &login_request, context) {
                push(
                    &mut found,
                    Diagnostic::new(mistake, record.describe()),
                    !accepted,
                );
            }
        } else if let Some(connection) = record.callback() {
            called_back = true;
            // The app went on: the refusals before this stand.
            for each in &mut found {
                each.withdrawn_by_acceptance = false;
            }
            if let (false, Some(refused)) = (posts.accepted, posts.refused) {
                push(
                    &mut found,
                    Diagnostic::new(
                        Mistake::RedirectAfterRefusedPost,
                        format!("{}, then {}", refused.describe(), record.describe()),
                    ),
                    false,
                );
            }
            if let Some(mistake) = callback_mistake(record, &connection, context, &posts) {
                push(
                    &mut found,
                    Diagnostic::new(mistake, record.describe()),
                    false,
                );
            }
        }
    }
    if !posted && !called_back {
        push(
            &mut found,
            Diagnostic::new(
                Mistake::NoHandOff,
                "the emulator saw no user-details call and no partner:callback during this sign-in",
            ),
            false,
        );
    } else if posts.accepted && !called_back {
        push(
            &mut found,
            Diagnostic::new(
                Mistake::NoCallback,
                "the user-details call succeeded; no partner:callback followed",
            ),
            false,
        );
    }
    found.into_iter().map(|each| each.diagnostic).collect()
}

fn user_post_mistake(
    record: &LoggedRequest,
    connection: &str,
    login_request: &str,
    context: &SignInContext<'_>,
) -> Option<Mistake> {
    let current = context
        .current
        .map(|issued| issued.login_request_id.as_str());
    let of_this_sign_in = context
        .issued_here()
        .any(|issued| issued.login_request_id == login_request);
    let is_earlier = !of_this_sign_in
        && context
            .earlier
            .iter()
            .any(|issued| issued.login_request_id == login_request);
    if is_earlier {
        return Some(Mistake::LoginRequestReused);
    }
    let error = record.error.as_ref();
    let code = error.map(|error| error.code.as_str());
    if is_bearer_refusal(record) {
        return Some(Mistake::BadBearer);
    }
    if connection.starts_with("res_") {
        return Some(Mistake::ResourceIdAsConnection);
    }
    if connection != context.connection_id {
        return Some(Mistake::WrongConnection);
    }
    match (code, error) {
        (Some("INVALID_ARGUMENT"), Some(error)) => {
            let has = |field: &str| error.fields.iter().any(|each| each == field);
            Some(if has("sub") || has("email") {
                Mistake::RequiredClaimsMissing
            } else if has("phone_number") {
                Mistake::PhoneNotE164
            } else {
                Mistake::InvalidClaims
            })
        }
        (Some("ALREADY_EXISTS"), _) => Some(Mistake::ConflictingUser),
        (Some("NOT_FOUND"), _) => Some(Mistake::UnknownLoginRequest),
        _ if current.is_some() && !of_this_sign_in => Some(Mistake::UnknownLoginRequest),
        _ => None,
    }
}

/// Scalekit refused the call's bearer (REST 401, gRPC `UNAUTHENTICATED`).
fn is_bearer_refusal(record: &LoggedRequest) -> bool {
    record.status == 401
        || record
            .error
            .as_ref()
            .is_some_and(|error| error.code == "UNAUTHENTICATED")
}

fn callback_mistake(
    record: &LoggedRequest,
    connection: &str,
    context: &SignInContext<'_>,
    posts: &PostsSoFar<'_>,
) -> Option<Mistake> {
    if connection != context.connection_id {
        return Some(if connection.starts_with("res_") {
            Mistake::ResourceIdAsConnection
        } else {
            Mistake::WrongConnection
        });
    }
    let error = record.error.as_ref()?;
    // The emulator binds a sign-in to the browser that started it (Decisions §9): a callback
    // without that browser's sign-in cookie is named whatever else is right about it.
    if matches!(
        error.code.as_str(),
        "browser_session_missing" | "browser_session_mismatch"
    ) {
        return Some(Mistake::CallbackWithoutBrowserSession);
    }
    if error.code != "invalid_state" {
        return None;
    }
    let Some(state) = record
        .query_value("state")
        .filter(|state| !state.is_empty())
    else {
        return Some(Mistake::StateDropped);
    };
    if error.message.contains("no user was submitted") {
        // Which it is depends on what came before: nothing (redirect-before-post), only refused
        // calls (`diagnose` named redirect-after-refused-post), an accepted call for another
        // login request of this sign-in than the one whose state came back
        // (mismatched-login-request), or one for a login request of no sign-in here (its own
        // mistake, e.g. unknown-login-request, was named).
        let posted_before = posts.accepted || posts.refused.is_some();
        if !posted_before {
            return Some(Mistake::RedirectBeforePost);
        }
        let prefix = state_prefix(&state);
        let called_back_for = context
            .issued_here()
            .find(|issued| issued.state_prefix == prefix)
            .map(|issued| issued.login_request_id.as_str());
        let mismatched = called_back_for.is_some_and(|called_back_for| {
            let posted_for = |login_request: &String| login_request == called_back_for;
            !posts.accepted_for.iter().any(posted_for)
                && posts.accepted_for.iter().any(|login_request| {
                    context
                        .issued_here()
                        .any(|issued| &issued.login_request_id == login_request)
                })
        });
        return mismatched.then_some(Mistake::MismatchedLoginRequest);
    }
    if error.message.contains("does not belong to this connection") {
        return Some(Mistake::WrongConnection);
    }
    let prefix = state_prefix(&state);
    let current = context.current.map(|issued| issued.state_prefix.as_str());
    let earlier = context
        .earlier
        .iter()
        .any(|issued| issued.state_prefix == prefix);
    if current != Some(prefix.as_str()) && earlier {
        return Some(Mistake::LoginRequestReused);
    }
    if error.message.contains("expired") {
        return None;
    }
    Some(Mistake::StateAltered)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONN: &str = "conn_1";

    fn user_post(login_request: &str, status: u16, error: Option<LoggedError>) -> LoggedRequest {
        LoggedRequest {
            method: "POST".to_owned(),
            path: format!("/api/v1/connections/{CONN}/auth-requests/{login_request}/user"),
            query: None,
            status,
            error,
            at: 0,
        }
    }

    /// A callback the emulator logged: with `message`, its redirect to the hosted
    /// `invalid_state` page (302, the error carried by the redirect itself).
    fn callback(query: Option<&str>, status: u16, message: Option<&str>) -> LoggedRequest {
        LoggedRequest {
            method: "GET".to_owned(),
            path: format!("/sso/v1/connections/{CONN}/partner:callback"),
            query: query.map(str::to_owned),
            status,
            error: message.map(|message| error("invalid_state", message, &[])),
            at: 0,
        }
    }

    fn error(code: &str, message: &str, fields: &[&str]) -> LoggedError {
        LoggedError {
            code: code.to_owned(),
            message: message.to_owned(),
            fields: fields.iter().map(|field| (*field).to_owned()).collect(),
        }
    }

    fn issued(login_request: &str, state: &str) -> IssuedLogin {
        IssuedLogin {
            login_request_id: login_request.to_owned(),
            state_prefix: state_prefix(state),
        }
    }

    fn mistakes(records: &[LoggedRequest], earlier: &[IssuedLogin]) -> Vec<Mistake> {
        let current = issued("lri_now", "nowstate12345");
        let context = SignInContext {
            connection_id: CONN,
            current: Some(&current),
            superseded: &[],
            earlier,
        };
        diagnose(records, &context)
            .into_iter()
            .map(|diagnostic| diagnostic.mistake)
            .collect()
    }

    #[test]
    fn a_correct_hand_off_has_no_diagnostic() {
        let records = [
            user_post("lri_now", 200, None),
            callback(Some("state=nowsta…"), 302, None),
        ];
        assert_eq!(mistakes(&records, &[]), []);
    }

    #[test]
    fn an_altered_state_is_named() {
        let records = [
            user_post("lri_now", 200, None),
            callback(
                Some("state=nowsta…"),
                302,
                Some("the sign-in request is unknown or was already used"),
            ),
        ];
        assert_eq!(mistakes(&records, &[]), [Mistake::StateAltered]);
    }

    #[test]
    fn a_dropped_state_is_named() {
        let records = [
            user_post("lri_now", 200, None),
            callback(None, 302, Some("state is required")),
        ];
        assert_eq!(mistakes(&records, &[]), [Mistake::StateDropped]);
    }

    #[test]
    fn a_redirect_before_any_post_is_named() {
        let records = [no_user_callback()];
        assert_eq!(mistakes(&records, &[]), [Mistake::RedirectBeforePost]);
    }

    fn grpc_post(login_request: &str, error: Option<LoggedError>) -> LoggedRequest {
        LoggedRequest {
            method: "POST".to_owned(),
            path: GRPC_USER_POST.to_owned(),
            query: Some(format!(
                "connection_id={CONN}&login_request_id={login_request}"
            )),
            // gRPC answers HTTP 200 and carries its status in the trailers.
            status: 200,
            error,
            at: 0,
        }
    }

    fn bad_phone() -> LoggedError {
        error(
            "INVALID_ARGUMENT",
            "invalid user: phone_number",
            &["phone_number"],
        )
    }

    fn no_user_callback() -> LoggedRequest {
        callback(
            Some("state=nowsta…"),
            302,
            Some("no user was submitted for this sign-in request"),
        )
    }

    #[test]
    fn a_redirect_after_a_refused_post_is_named_as_such_and_not_as_a_redirect_before_it() {
        let refused = user_post("lri_now", 400, Some(bad_phone()));
        let records = [refused.clone(), no_user_callback()];
        let current = issued("lri_now", "nowstate12345");
        let context = SignInContext {
            connection_id: CONN,
            current: Some(&current),
            superseded: &[],
            earlier: &[],
        };
        let diagnostics = diagnose(&records, &context);
        assert_eq!(
            diagnostics
                .iter()
                .map(|diagnostic| diagnostic.mistake)
                .collect::<Vec<_>>(),
            [Mistake::PhoneNotE164, Mistake::RedirectAfterRefusedPost]
        );
        let shown = diagnostics[1].to_string();
        assert_eq!(
            shown,
            format!(
                "redirect-after-refused-post: your app went on to partner:callback although Scalekit refused the user it posted (seen: {}, then {}). Fix: {}",
                refused.describe(),
                no_user_callback().describe(),
                Mistake::RedirectAfterRefusedPost.fix()
            )
        );
        assert!(
            shown.contains("→ 400 INVALID_ARGUMENT: invalid user: phone_number, then GET "),
            "{shown}"
        );
        assert!(
            Mistake::RedirectAfterRefusedPost
                .fix()
                .starts_with("redirect to partner:callback only after a 200")
        );
        assert!(
            diagnostics
                .iter()
                .all(|diagnostic| !diagnostic.to_string().contains("before posting")),
            "{diagnostics:?}"
        );
    }

    #[test]
    fn a_resource_id_in_the_connection_slot_then_a_redirect_is_two_mistakes() {
        let mut refused = user_post(
            "lri_now",
            404,
            Some(error("NOT_FOUND", "connection res_1 not found", &[])),
        );
        refused.path = "/api/v1/connections/res_1/auth-requests/lri_now/user".to_owned();
        assert_eq!(
            mistakes(&[refused, no_user_callback()], &[]),
            [
                Mistake::ResourceIdAsConnection,
                Mistake::RedirectAfterRefusedPost
            ]
        );
    }

    #[test]
    fn a_redirect_after_a_refused_grpc_call_is_named_too() {
        let phone = [grpc_post("lri_now", Some(bad_phone())), no_user_callback()];
        assert_eq!(
            mistakes(&phone, &[]),
            [Mistake::PhoneNotE164, Mistake::RedirectAfterRefusedPost]
        );
        let bearer = [
            grpc_post(
                "lri_now",
                Some(error("UNAUTHENTICATED", "Token empty", &[])),
            ),
            no_user_callback(),
        ];
        assert_eq!(
            mistakes(&bearer, &[]),
            [Mistake::BadBearer, Mistake::RedirectAfterRefusedPost]
        );
    }

    #[test]
    fn a_refused_post_retried_until_accepted_then_a_redirect_is_no_mistake() {
        let rest = [
            user_post("lri_now", 400, Some(bad_phone())),
            user_post("lri_now", 200, None),
            callback(Some("state=nowsta…"), 302, None),
        ];
        assert_eq!(mistakes(&rest, &[]), []);
        let grpc = [
            grpc_post(
                "lri_now",
                Some(error("UNAUTHENTICATED", "Token expired", &[])),
            ),
            grpc_post("lri_now", None),
            callback(Some("state=nowsta…"), 302, None),
        ];
        assert_eq!(mistakes(&grpc, &[]), []);
        // A bearer refused, then the same call authenticated but refused for its phone number:
        // only the phone number and the redirect are mistakes.
        let sdk = [
            grpc_post(
                "lri_now",
                Some(error("UNAUTHENTICATED", "Token empty", &[])),
            ),
            grpc_post("lri_now", Some(bad_phone())),
            no_user_callback(),
        ];
        assert_eq!(
            mistakes(&sdk, &[]),
            [Mistake::PhoneNotE164, Mistake::RedirectAfterRefusedPost]
        );
        // Once the app went on to the callback, a refusal before it stands.
        let late = [
            user_post("lri_now", 400, Some(bad_phone())),
            no_user_callback(),
            user_post("lri_now", 200, None),
        ];
        assert_eq!(
            mistakes(&late, &[]),
            [Mistake::PhoneNotE164, Mistake::RedirectAfterRefusedPost]
        );
    }

    #[test]
    fn a_post_after_the_redirect_does_not_hide_the_redirect_before_it() {
        let records = [no_user_callback(), user_post("lri_now", 200, None)];
        assert_eq!(mistakes(&records, &[]), [Mistake::RedirectBeforePost]);
    }

    #[test]
    fn a_refused_post_without_a_redirect_names_only_the_refusal() {
        let records = [user_post("lri_now", 400, Some(bad_phone()))];
        assert_eq!(mistakes(&records, &[]), [Mistake::PhoneNotE164]);
    }

    #[test]
    fn a_callback_without_the_browsers_cookie_is_named() {
        for code in ["browser_session_missing", "browser_session_mismatch"] {
            let mut record = callback(Some("state=nowsta…"), 400, None);
            record.error = Some(error(
                code,
                "the request carries no sign-in cookie: a sign-in must be finished by the browser that started it",
                &[],
            ));
            let records = [user_post("lri_now", 200, None), record];
            let current = issued("lri_now", "nowstate12345");
            let context = SignInContext {
                connection_id: CONN,
                current: Some(&current),
                superseded: &[],
                earlier: &[],
            };
            let diagnostics = diagnose(&records, &context);
            assert_eq!(
                diagnostics
                    .iter()
                    .map(|diagnostic| diagnostic.mistake)
                    .collect::<Vec<_>>(),
                [Mistake::CallbackWithoutBrowserSession],
                "{code}"
            );
            let shown = diagnostics[0].to_string();
            assert!(
                shown.starts_with("callback-without-browser-session: "),
                "{shown}"
            );
            assert!(shown.contains(&format!("→ 400 {code}: ")), "{shown}");
            assert!(
                shown.contains("do not fetch that URL from your server"),
                "{shown}"
            );
        }
    }

    #[test]
    fn missing_claims_and_a_bad_phone_are_told_apart() {
        let missing = [user_post(
            "lri_now",
            400,
            Some(error("INVALID_ARGUMENT", "invalid user: email", &["email"])),
        )];
        assert_eq!(mistakes(&missing, &[]), [Mistake::RequiredClaimsMissing]);
        let phone = [user_post(
            "lri_now",
            400,
            Some(error(
                "INVALID_ARGUMENT",
                "invalid user: phone_number",
                &["phone_number"],
            )),
        )];
        assert_eq!(mistakes(&phone, &[]), [Mistake::PhoneNotE164]);
    }

    #[test]
    fn a_resource_id_in_the_connection_slot_is_named() {
        let mut record = user_post(
            "lri_now",
            404,
            Some(error("NOT_FOUND", "connection res_1 not found", &[])),
        );
        record.path = "/api/v1/connections/res_1/auth-requests/lri_now/user".to_owned();
        assert_eq!(mistakes(&[record], &[]), [Mistake::ResourceIdAsConnection]);
    }

    #[test]
    fn a_bad_bearer_is_named_over_rest_and_grpc() {
        let rest = user_post(
            "lri_now",
            401,
            Some(error("UNAUTHENTICATED", "invalid token", &[])),
        );
        assert_eq!(mistakes(&[rest], &[]), [Mistake::BadBearer]);
        let grpc = LoggedRequest {
            method: "POST".to_owned(),
            path: GRPC_USER_POST.to_owned(),
            query: Some(format!("connection_id={CONN}&login_request_id=lri_now")),
            status: 200,
            error: Some(error("UNAUTHENTICATED", "Token empty", &[])),
            at: 0,
        };
        assert_eq!(mistakes(&[grpc], &[]), [Mistake::BadBearer]);
    }

    #[test]
    fn a_login_request_of_an_earlier_sign_in_is_reuse_and_an_unknown_one_is_not() {
        let earlier = [issued("lri_then", "thenstate1234")];
        let reused = [user_post(
            "lri_then",
            404,
            Some(error("NOT_FOUND", "login request not found", &[])),
        )];
        assert_eq!(mistakes(&reused, &earlier), [Mistake::LoginRequestReused]);
        let unknown = [user_post(
            "lri_other",
            404,
            Some(error("NOT_FOUND", "login request not found", &[])),
        )];
        assert_eq!(mistakes(&unknown, &earlier), [Mistake::UnknownLoginRequest]);
        let stale_state = [callback(
            Some("state=thenst…"),
            302,
            Some("the sign-in request is unknown or was already used"),
        )];
        assert_eq!(
            mistakes(&stale_state, &earlier),
            [Mistake::LoginRequestReused]
        );
    }

    /// The mistakes of a sign-in whose browser loaded the authorization URL twice: `lri_then`
    /// first, then `lri_now`, which it settled on.
    fn mistakes_after_a_reload(records: &[LoggedRequest]) -> Vec<Mistake> {
        let current = issued("lri_now", "nowstate12345");
        let superseded = [issued("lri_then", "thenstate1234")];
        let context = SignInContext {
            connection_id: CONN,
            current: Some(&current),
            superseded: &superseded,
            earlier: &[],
        };
        diagnose(records, &context)
            .into_iter()
            .map(|diagnostic| diagnostic.mistake)
            .collect()
    }

    #[test]
    fn a_login_request_the_same_sign_in_was_issued_before_a_reload_is_not_unknown() {
        // The app handed off both loads, each with its own login request and state.
        let both = [
            user_post("lri_then", 200, None),
            callback(Some("state=thenst…"), 302, None),
            user_post("lri_now", 200, None),
            callback(Some("state=nowsta…"), 302, None),
        ];
        assert_eq!(mistakes_after_a_reload(&both), []);
        // A login request of no load is still unknown.
        let other = [
            user_post("lri_other", 200, None),
            callback(Some("state=nowsta…"), 302, None),
        ];
        assert_eq!(
            mistakes_after_a_reload(&other),
            [Mistake::UnknownLoginRequest]
        );
    }

    #[test]
    fn the_user_of_one_load_and_the_state_of_the_other_are_a_mismatch() {
        let records = [user_post("lri_then", 200, None), no_user_callback()];
        assert_eq!(
            mistakes_after_a_reload(&records),
            [Mistake::MismatchedLoginRequest]
        );
    }

    #[test]
    fn nothing_from_the_app_is_no_hand_off_and_a_post_without_callback_is_named() {
        assert_eq!(mistakes(&[], &[]), [Mistake::NoHandOff]);
        assert_eq!(
            mistakes(&[user_post("lri_now", 200, None)], &[]),
            [Mistake::NoCallback]
        );
    }

    #[test]
    fn a_python_style_double_slash_path_is_recognised() {
        let mut record = user_post(
            "lri_now",
            400,
            Some(error("INVALID_ARGUMENT", "invalid user: sub", &["sub"])),
        );
        record.path = format!("/{}", record.path);
        assert_eq!(mistakes(&[record], &[]), [Mistake::RequiredClaimsMissing]);
    }

    #[test]
    fn a_state_has_one_prefix_in_every_record_and_as_itself() {
        let state = "q7Hx2mPzR4tVb8nK1sLc0dYfWgAeUiOoJ3yXhT5vN6E";
        let logged = scalekit_wire::redact::redact_query(&format!("state={state}"));
        let hop = scalekit_wire::redact::redact_url(&format!("http://h/login?state={state}"));
        assert_eq!(logged, "state=q7Hx2m…");
        assert!(hop.ends_with(&logged), "{hop}");
        assert_eq!(state_prefix(state), "q7Hx2m");
        assert_eq!(state_prefix("q7Hx2m…"), "q7Hx2m");
        assert_eq!(state_prefix("abc…"), "abc");
        assert_eq!(state_prefix("abcdef"), state_prefix("abc…"));
    }
}
