//! The BYOA leg: "Your App" posts the user (Decisions §5), the browser comes back on
//! `partner:callback` (Decisions §6), and the consent page decides (Decisions §8); both of the
//! browser's steps must come from the browser that started the sign-in (Decisions §9).

use scalekit_wire::{Check, Constraint, FieldViolation, UserClaims, prefix};

use super::browser::{BrowserRefusal, PresentedBrowser};
use super::redirect::{ClientRedirect, RedirectOutcome, RedirectRefusal};
use super::{
    CodeRecord, DurableChange, Flows, PendingConsent, RememberedConsent, SignIn, StoredConsent,
    StoredOrganization, StoredUser, SubmittedUser,
};
use crate::config::ConsentMode;
use crate::ids::IdGenerator;
use crate::types::{
    AuthRequestId, AuthorizationCode, ConnectionId, ConsentId, LoginRequestId, LoginState,
    OrganizationId, ScopeSet, SessionId, UserId,
};

/// Why the user-details call was refused (gateway error body at the HTTP edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitUserError {
    /// Unknown connection, a `res_…` id in the connection slot, or an unknown, expired, completed
    /// or other-connection login request: 404 / NOT_FOUND (5).
    #[error("{0}")]
    NotFound(SubmitUserNotFound),
    /// `sub`/`email` missing without `login_failed`, or a malformed field: 400 /
    /// INVALID_ARGUMENT (3) with `validation_error_info.field_violations`.
    #[error("{message}")]
    InvalidArgument {
        message: String,
        violations: Vec<FieldViolation>,
    },
    /// A different user was already posted for this login request: 409 / ALREADY_EXISTS (6).
    #[error("a different user was already submitted for login request {0}")]
    AlreadyExists(LoginRequestId),
}

/// What the user-details call did not find.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitUserNotFound {
    /// A `res_…` id where the connection id goes: the classic mix-up, named.
    #[error(
        "connection {0} not found: {0} is an MCP server (resource) id; \
         the user-details call takes the connection id (conn_…)"
    )]
    ResourceIdAsConnection(String),
    /// No such connection.
    #[error("connection {0} not found")]
    UnknownConnection(String),
    /// The login request is unknown, expired, completed or of another connection.
    #[error(
        "login request not found: it is unknown, expired, already completed or belongs to \
         another connection"
    )]
    LoginRequest,
}

impl SubmitUserError {
    /// The check that failed.
    pub fn failed_check(&self) -> Check {
        match self {
            SubmitUserError::NotFound(_) => Check::LoginRequestPending,
            SubmitUserError::InvalidArgument { .. } => Check::UserClaimsValid,
            SubmitUserError::AlreadyExists(_) => Check::OneUserPerLoginRequest,
        }
    }
}

/// What happens after a successful partner callback.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// Show the consent page (resource mode `prompt`).
    NeedsConsent(ConsentPrompt),
    /// Redirect to the client: a code (mode `auto`, or consent remembered), or `access_denied`
    /// after `login_failed`.
    Redirect(ClientRedirect),
}

/// What the consent page shows.
#[derive(Debug, Clone)]
pub struct ConsentPrompt {
    /// The id the consent form posts back (an unguessable secret).
    pub consent_id: ConsentId,
    /// The MCP server's name.
    pub resource_name: String,
    /// The client's name, or its id when it registered none.
    pub client_name: String,
    /// The scopes that will be granted: those asked for, narrowed to the user's permissions
    /// where the resource intersects them.
    pub scopes: ScopeSet,
    /// The host the browser will be sent to (MCP authorization: shown on consent).
    pub redirect_host: String,
    /// Who signed in (email or sub).
    pub user: String,
}

/// Why the partner callback failed: always the hosted error page (`invalid_state` through a
/// redirect to it, Decision 25), never a redirect to the client, because the client's redirect URI
/// is not trusted yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// Unknown, expired, other-connection or reused `state`, or no user submitted yet:
    /// `invalid_state`.
    #[error("{0}")]
    InvalidState(CallbackRefusal),
    /// Not the browser that started the sign-in: `browser_session_missing` or
    /// `browser_session_mismatch` ([`BrowserRefusal::code`]). The sign-in stays pending, so the
    /// browser that started it can still finish it.
    #[error("{0}")]
    Browser(BrowserRefusal),
}

/// Why the `state` brought back does not finish a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallbackRefusal {
    /// No sign-in in progress has this `state` (unknown, or already used).
    #[error("the sign-in request is unknown or was already used")]
    UnknownState,
    /// The sign-in's login request expired.
    #[error("the sign-in request expired")]
    Expired,
    /// The `state` came back on another connection's callback.
    #[error("the state does not belong to this connection")]
    OtherConnection,
    /// "Your App" redirected before posting the user.
    #[error("no user was submitted for this sign-in request")]
    NoUserSubmitted,
}

impl CallbackRefusal {
    /// Every refusal, so the hosted error page can tell the descriptions the environment sends.
    pub const ALL: [CallbackRefusal; 4] = [
        CallbackRefusal::UnknownState,
        CallbackRefusal::Expired,
        CallbackRefusal::OtherConnection,
        CallbackRefusal::NoUserSubmitted,
    ];
}

impl CallbackError {
    /// The check that failed.
    pub fn failed_check(&self) -> Check {
        match self {
            CallbackError::InvalidState(CallbackRefusal::NoUserSubmitted) => {
                Check::UserPostedBeforeCallback
            }
            CallbackError::InvalidState(_) => Check::StateMatches,
            CallbackError::Browser(_) => Check::BrowserMatches,
        }
    }
}

/// Why a consent decision failed: the hosted error page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    /// The consent id is unknown, expired or already decided: `invalid_request`.
    #[error("this consent request is unknown, expired or already decided")]
    UnknownConsent,
    /// Not the browser that started the sign-in ([`BrowserRefusal::code`]). The consent page
    /// stays pending.
    #[error("{0}")]
    Browser(BrowserRefusal),
}

impl ConsentError {
    /// The check that failed.
    pub fn failed_check(&self) -> Check {
        match self {
            ConsentError::UnknownConsent => Check::ConsentRequestValid,
            ConsentError::Browser(_) => Check::BrowserMatches,
        }
    }
}

impl Flows {
    /// The user-details call: records the user "Your App" signed in for a login request.
    pub fn submit_user(
        &mut self,
        connection_id: &str,
        login_request_id: &str,
        claims: UserClaims,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<AuthRequestId, SubmitUserError> {
        if connection_id.starts_with(prefix::RESOURCE) {
            return Err(SubmitUserError::NotFound(
                SubmitUserNotFound::ResourceIdAsConnection(connection_id.to_owned()),
            ));
        }
        let connection = ConnectionId::new(connection_id);
        if !self.connections.contains_key(&connection) {
            return Err(SubmitUserError::NotFound(
                SubmitUserNotFound::UnknownConnection(connection_id.to_owned()),
            ));
        }
        let login_request_id = LoginRequestId::new(login_request_id);
        let expired = self
            .login_requests
            .get(&login_request_id)
            .is_some_and(|request| request.expires_at <= now);
        if expired {
            self.drop_login_request(&login_request_id);
        }
        let request = self
            .login_requests
            .get_mut(&login_request_id)
            .filter(|request| request.connection == connection)
            .ok_or(SubmitUserError::NotFound(SubmitUserNotFound::LoginRequest))?;

        let violations = validate_claims(&claims);
        if !violations.is_empty() {
            let fields: Vec<&str> = violations.iter().map(|each| each.field.as_str()).collect();
            return Err(SubmitUserError::InvalidArgument {
                message: format!("invalid user: {}", fields.join(", ")),
                violations,
            });
        }
        if let Some(submitted) = &request.submitted {
            // Idempotent for the same user, a conflict for another (Decisions §5).
            if submitted.claims.sub == claims.sub
                && submitted.claims.login_failed == claims.login_failed
            {
                return Ok(submitted.auth_request_id.clone());
            }
            return Err(SubmitUserError::AlreadyExists(login_request_id));
        }
        let auth_request_id = AuthRequestId::new(ids.id(prefix::AUTH_REQUEST));
        request.submitted = Some(SubmittedUser {
            auth_request_id: auth_request_id.clone(),
            claims,
        });
        Ok(auth_request_id)
    }

    /// The sign-in a `state` names, while its login request is held and bound to a browser: the
    /// edge names the sign-in's cookie by it, to clear the cookie when the sign-in ends.
    pub fn sign_in_of_state(&self, state: &str) -> Option<LoginRequestId> {
        let id = self.login_states.get(&LoginState::new(state))?;
        self.login_requests
            .get(id)
            .filter(|request| request.browser.is_some())
            .map(|_| id.clone())
    }

    /// The sign-in a pending consent page belongs to, when it is bound to a browser (see
    /// [`Flows::sign_in_of_state`]).
    pub fn sign_in_of_consent(&self, consent_id: &ConsentId) -> Option<LoginRequestId> {
        self.consents
            .get(consent_id)
            .filter(|consent| consent.browser.is_some())
            .map(|consent| consent.login_request.clone())
    }

    /// The browser's return from "Your App": consumes the login request (single use). `browser`
    /// is the sign-in cookies the request carried; a request without this sign-in's is refused
    /// and leaves the login request as it was.
    pub fn partner_callback(
        &mut self,
        connection_id: &str,
        state: &str,
        browser: &PresentedBrowser,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<CallbackOutcome, CallbackError> {
        let invalid = CallbackError::InvalidState;
        let login_request_id = self
            .login_states
            .get(&LoginState::new(state))
            .cloned()
            .ok_or(invalid(CallbackRefusal::UnknownState))?;
        let request = self
            .login_requests
            .get(&login_request_id)
            .cloned()
            .ok_or(invalid(CallbackRefusal::UnknownState))?;
        if request.expires_at <= now {
            self.drop_login_request(&login_request_id);
            return Err(invalid(CallbackRefusal::Expired));
        }
        if request.connection.as_str() != connection_id {
            return Err(invalid(CallbackRefusal::OtherConnection));
        }
        browser
            .check(request.browser.as_ref())
            .map_err(CallbackError::Browser)?;
        let Some(submitted) = request.submitted else {
            return Err(invalid(CallbackRefusal::NoUserSubmitted));
        };
        self.drop_login_request(&login_request_id);

        let authorization = request.authorization;
        let iss = self.resource_issuer(&authorization.resource);
        if submitted.claims.login_failed {
            return Ok(CallbackOutcome::Redirect(ClientRedirect {
                redirect_uri: authorization.redirect_uri,
                state: authorization.client_state,
                iss,
                outcome: RedirectOutcome::refused(RedirectRefusal::LoginFailed),
            }));
        }

        let claims = submitted.claims;
        let external_sub = claims.sub.clone().unwrap_or_default();
        let user = self.user_for(&request.connection, &external_sub, ids);
        let organization = claims
            .organization_external_id
            .as_ref()
            .map(|external| self.organization_for(&request.connection, external, ids));
        let mut sign_in = SignIn {
            authorization,
            connection: request.connection,
            user,
            external_sub,
            claims,
            organization,
            session: SessionId::new(ids.id(prefix::SESSION)),
            auth_time: now,
        };
        let resource = self.resource(&sign_in.authorization.resource).cloned();
        // The user is known now: from here on the sign-in carries what will be granted, which the
        // consent page lists, the consent remembers and the tokens carry.
        if resource
            .as_ref()
            .is_some_and(|resource| resource.intersect_scopes_user_permission)
        {
            sign_in.authorization.scopes =
                self.within_permissions(&sign_in.authorization.scopes, &sign_in.claims.roles);
        }
        let prompt = resource
            .as_ref()
            .is_some_and(|resource| resource.consent == ConsentMode::Prompt);
        let remembered = self
            .remembered_consents
            .get(&(
                sign_in.user.clone(),
                sign_in.authorization.client.clone(),
                sign_in.authorization.resource.clone(),
            ))
            .is_some_and(|granted| {
                sign_in
                    .authorization
                    .scopes
                    .is_subset_of(granted.scopes.as_slice())
            });
        if prompt && !remembered {
            let consent_id = ConsentId::new(ids.secret());
            let client_name = sign_in
                .authorization
                .client_name
                .clone()
                .unwrap_or_else(|| sign_in.authorization.client.to_string());
            let prompt = ConsentPrompt {
                consent_id: consent_id.clone(),
                resource_name: resource
                    .as_ref()
                    .map(|resource| resource.name.clone())
                    .unwrap_or_default(),
                client_name,
                scopes: sign_in.authorization.scopes.clone(),
                redirect_host: sign_in.authorization.redirect_uri.host(),
                user: sign_in
                    .claims
                    .email
                    .clone()
                    .unwrap_or_else(|| sign_in.external_sub.clone()),
            };
            let lifetime = resource.map_or(600, |resource| resource.login_request_lifetime_secs);
            self.consents.insert(
                consent_id,
                PendingConsent {
                    sign_in,
                    expires_at: now + lifetime,
                    browser: request.browser,
                    login_request: login_request_id,
                },
            );
            return Ok(CallbackOutcome::NeedsConsent(prompt));
        }
        Ok(CallbackOutcome::Redirect(
            self.issue_code(sign_in, iss, now, ids),
        ))
    }

    /// The consent form's answer: approve issues a code, deny sends `access_denied`. `browser` is
    /// the sign-in cookies the form post carried; a post without the sign-in's is refused and
    /// leaves the consent page pending.
    pub fn decide_consent(
        &mut self,
        consent_id: &ConsentId,
        approve: bool,
        browser: &PresentedBrowser,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<ClientRedirect, ConsentError> {
        let pending = self
            .consents
            .get(consent_id)
            .ok_or(ConsentError::UnknownConsent)?;
        if pending.expires_at <= now {
            self.consents.remove(consent_id);
            return Err(ConsentError::UnknownConsent);
        }
        browser
            .check(pending.browser.as_ref())
            .map_err(ConsentError::Browser)?;
        let consent = self
            .consents
            .remove(consent_id)
            .ok_or(ConsentError::UnknownConsent)?;
        let sign_in = consent.sign_in;
        let iss = self.resource_issuer(&sign_in.authorization.resource);
        if !approve {
            return Ok(ClientRedirect {
                redirect_uri: sign_in.authorization.redirect_uri,
                state: sign_in.authorization.client_state,
                iss,
                outcome: RedirectOutcome::refused(RedirectRefusal::Denied),
            });
        }
        let key = (
            sign_in.user.clone(),
            sign_in.authorization.client.clone(),
            sign_in.authorization.resource.clone(),
        );
        // A new approval for the same user, client and resource replaces the scopes and keeps
        // the consent's id and creation time.
        let (id, created_at) = match self.remembered_consents.get(&key) {
            Some(earlier) => (earlier.id.clone(), earlier.created_at),
            None => (ids.id(prefix::CONSENT), now),
        };
        self.remembered_consents.insert(
            key,
            RememberedConsent {
                id: id.clone(),
                scopes: sign_in.authorization.scopes.clone(),
                created_at,
            },
        );
        self.record(DurableChange::ConsentRemembered(StoredConsent {
            consent_id: id,
            user: sign_in.user.to_string(),
            client: sign_in.authorization.client.to_string(),
            resource: sign_in.authorization.resource.to_string(),
            scopes: sign_in.authorization.scopes.as_slice().to_vec(),
            created_at,
        }));
        Ok(self.issue_code(sign_in, iss, now, ids))
    }

    fn issue_code(
        &mut self,
        sign_in: SignIn,
        iss: String,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> ClientRedirect {
        let lifetime = self
            .resource(&sign_in.authorization.resource)
            .map_or(600, |resource| resource.authorization_code_lifetime_secs);
        let code = AuthorizationCode::new(ids.secret());
        let redirect_uri = sign_in.authorization.redirect_uri.clone();
        let state = sign_in.authorization.client_state.clone();
        self.codes.insert(
            code.clone(),
            CodeRecord {
                expires_at: now + lifetime,
                sign_in: Box::new(sign_in),
            },
        );
        ClientRedirect {
            redirect_uri,
            state,
            iss,
            outcome: RedirectOutcome::Code(code),
        }
    }

    /// The `usr_…` of a (connection, posted `sub`), minted on first sight.
    fn user_for(
        &mut self,
        connection: &ConnectionId,
        external_sub: &str,
        ids: &dyn IdGenerator,
    ) -> UserId {
        let key = (connection.clone(), external_sub.to_owned());
        if let Some(user) = self.users.get(&key) {
            return user.clone();
        }
        let user = UserId::new(ids.id(prefix::USER));
        self.users.insert(key, user.clone());
        self.record(DurableChange::UserCreated(StoredUser {
            connection: connection.to_string(),
            external_sub: external_sub.to_owned(),
            user: user.to_string(),
        }));
        user
    }

    /// The `org_…` of a (connection, `organization_external_id`), minted on first sight.
    fn organization_for(
        &mut self,
        connection: &ConnectionId,
        external_id: &str,
        ids: &dyn IdGenerator,
    ) -> OrganizationId {
        let key = (connection.clone(), external_id.to_owned());
        if let Some(organization) = self.organizations.get(&key) {
            return organization.clone();
        }
        let organization = OrganizationId::new(ids.id(prefix::ORGANIZATION));
        self.organizations.insert(key, organization.clone());
        self.record(DurableChange::OrganizationCreated(StoredOrganization {
            connection: connection.to_string(),
            external_id: external_id.to_owned(),
            organization: organization.to_string(),
        }));
        organization
    }

    fn drop_login_request(&mut self, id: &LoginRequestId) {
        if let Some(request) = self.login_requests.remove(id) {
            self.login_states.remove(&request.state);
        }
    }
}

/// `sub` and `email` unless `login_failed`; `phone_number` in E.164; the organization name at
/// most 200 characters.
fn validate_claims(claims: &UserClaims) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    let missing =
        |value: &Option<String>| value.as_deref().is_none_or(|value| value.trim().is_empty());
    if !claims.login_failed {
        if missing(&claims.sub) {
            violations.push(FieldViolation::new(
                "sub",
                Constraint::Required,
                "sub is required unless login_failed is true",
            ));
        }
        if missing(&claims.email) {
            violations.push(FieldViolation::new(
                "email",
                Constraint::Required,
                "email is required unless login_failed is true",
            ));
        }
    }
    if let Some(phone) = &claims.phone_number
        && !is_e164(phone)
    {
        violations.push(FieldViolation::new(
            "phone_number",
            Constraint::StringPattern,
            "phone_number must be in E.164 format, e.g. +14155550123",
        ));
    }
    if claims
        .organization_external_name
        .as_ref()
        .is_some_and(|name| name.chars().count() > 200)
    {
        violations.push(FieldViolation::new(
            "organization_external_name",
            Constraint::StringMaxLen,
            "organization_external_name must be at most 200 characters",
        ));
    }
    violations
}

/// `^\+[1-9][0-9]{1,14}$`.
fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|byte| byte.is_ascii_digit())
        && !digits.starts_with('0')
}
