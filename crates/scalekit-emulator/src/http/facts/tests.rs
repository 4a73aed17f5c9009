//! The facts every error the emulator can produce carries, against the rules the flow inspector
//! used to infer them from the wire (the status, the error code and words of the description):
//! the typed facts must name the same check as those rules for every reason, so that the
//! inspector shows the same hops from types as it did from prose.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scalekit_wire::{Check, Endpoint, ErrorSummary, HopFacts, OAuthErrorCode};

use super::attach;
use crate::flow::cimd::MetadataError;
use crate::flow::{
    AuthorizeError, CallbackError, CallbackRefusal, ClientRedirect, ClientRefusal, ConsentError,
    GrantRefusal, RedirectOutcome, RedirectRefusal, RedirectUriRefusal, RegisterError,
    SubmitUserError, SubmitUserNotFound, TargetRefusal, TokenError, TokenRequestRefusal,
};
use crate::http::error::{HostedErrorPage, OAuthError};
use crate::http::oauth::redirect_to;
use crate::management::{ApiError, GrpcCode};
use crate::types::{ClientId, LoginRequestId, RedirectUri, ResourceId};

/// The flow inspector's rules before handlers attached facts (`failed_check` in
/// `crates/flow-inspector/src/checks.rs` at c64c572), kept as the oracle: the check an error
/// answer of `endpoint` names, from its status, its error code and words of its description.
fn inferred(endpoint: Endpoint, status: u16, error: &str, description: &str) -> Check {
    let described = |word: &str| description.contains(word);
    match endpoint {
        Endpoint::Authorize if error == "invalid_client" || described("client") => {
            Check::ClientKnown
        }
        Endpoint::Authorize if described("redirect_uri") => Check::RedirectUriRegistered,
        Endpoint::Authorize if described("code_challenge") || described("PKCE") => {
            Check::PkceChallengePresent
        }
        Endpoint::Authorize if described("resource") => Check::ResourceMatches,
        Endpoint::Authorize if error == "invalid_scope" || described("scope") => {
            Check::ScopesAllowed
        }
        Endpoint::Authorize => Check::AuthorizationRequestValid,

        Endpoint::TokenAuthorizationCode if error == "invalid_client" => Check::ClientAuthenticated,
        Endpoint::TokenAuthorizationCode if described("code_verifier") => {
            Check::PkceVerifierMatches
        }
        Endpoint::TokenAuthorizationCode if described("redirect_uri") => Check::RedirectUriMatches,
        Endpoint::TokenAuthorizationCode if described("resource") => Check::ResourceMatches,
        Endpoint::TokenAuthorizationCode if described("another client") => Check::ClientMatches,
        Endpoint::TokenAuthorizationCode if error == "invalid_grant" => {
            Check::CodeSingleUseAndUnexpired
        }
        Endpoint::TokenAuthorizationCode => Check::TokenRequestValid,

        Endpoint::TokenRefresh if error == "invalid_client" => Check::ClientAuthenticated,
        Endpoint::TokenRefresh if described("another client") => Check::ClientMatches,
        Endpoint::TokenRefresh if described("resource") => Check::ResourceMatches,
        Endpoint::TokenRefresh if error == "invalid_scope" => Check::ScopesWithinGrant,
        Endpoint::TokenRefresh if error == "invalid_grant" => Check::RefreshTokenUnusedAndUnexpired,
        Endpoint::TokenRefresh => Check::TokenRequestValid,

        Endpoint::TokenClientCredentials => Check::ClientCredentialsValid,
        Endpoint::TokenOther if error == "unsupported_grant_type" => Check::GrantTypeSupported,
        Endpoint::TokenOther => Check::TokenRequestValid,
        // Cross-app access came after the handlers attached facts: no rule to keep; its errors
        // name their checks in `flow::cross_app` and `idp`, tested there and over HTTP.
        Endpoint::TokenJwtBearer | Endpoint::IdpTokenExchange => Check::TokenRequestValid,

        Endpoint::SubmitUser if status == 401 => Check::ManagementTokenValid,
        Endpoint::SubmitUser if status == 404 => Check::LoginRequestPending,
        Endpoint::SubmitUser if status == 409 => Check::OneUserPerLoginRequest,
        Endpoint::SubmitUser => Check::UserClaimsValid,

        Endpoint::PartnerCallback if described("no user was submitted") => {
            Check::UserPostedBeforeCallback
        }
        Endpoint::PartnerCallback => Check::StateMatches,

        Endpoint::Consent if error == "access_denied" => Check::PersonAllowedAccess,
        Endpoint::Consent => Check::ConsentRequestValid,
        Endpoint::Register => Check::ClientMetadataValid,
        Endpoint::Revoke => Check::ClientAuthenticated,

        Endpoint::Mcp if status == 403 || error == "insufficient_scope" => Check::ScopesSufficient,
        Endpoint::Mcp if error.is_empty() => Check::BearerTokenPresent,
        Endpoint::Mcp => Check::TokenValid,

        Endpoint::Other => Check::RequestValid,
    }
}

/// Attaches the facts of `endpoint` to an answer and checks them against [`inferred`]: the error
/// of a JSON answer or the hosted page comes from its `ErrorSummary` (what the request log reads),
/// the error of a redirect from its `Location`, as the inspector read them.
fn assert_facts_as_inferred(endpoint: Endpoint, response: Response) {
    let response = attach(endpoint, response);
    let facts = response
        .extensions()
        .get::<HopFacts>()
        .copied()
        .expect("every answer carries facts");
    let status = response.status();
    let (error, description) = match response.extensions().get::<ErrorSummary>() {
        Some(summary) => (summary.code.clone(), summary.message.clone()),
        None => location_error(&response),
    };
    assert_eq!(facts.endpoint, endpoint, "{error}: {description}");
    let error_answer = status.is_client_error() || status.is_server_error() || !error.is_empty();
    let expected = error_answer.then(|| inferred(endpoint, status.as_u16(), &error, &description));
    assert_eq!(
        facts.failed, expected,
        "{endpoint:?} {status} {error}: {description}"
    );
}

/// `error` and `error_description` of a redirect's `Location`, empty when it carries none.
fn location_error(response: &Response) -> (String, String) {
    let Some(location) = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .and_then(|location| url::Url::parse(location).ok())
    else {
        return (String::new(), String::new());
    };
    let value = |name: &str| {
        location
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    (value("error"), value("error_description"))
}

fn redirect(outcome: RedirectOutcome) -> ClientRedirect {
    ClientRedirect {
        redirect_uri: RedirectUri::parse("http://127.0.0.1:9/callback").expect("a URI"),
        state: None,
        iss: "http://env.test/resources/res_1".to_owned(),
        outcome,
    }
}

/// Every refusal sent back on the client's redirect URI, with the endpoint that sends it.
fn redirect_refusals() -> Vec<(Endpoint, RedirectRefusal)> {
    vec![
        (Endpoint::Authorize, RedirectRefusal::ResponseTypeMissing),
        (
            Endpoint::Authorize,
            RedirectRefusal::ResponseTypeUnsupported("token".to_owned()),
        ),
        (Endpoint::Authorize, RedirectRefusal::ChallengeMissing),
        (Endpoint::Authorize, RedirectRefusal::ChallengeMalformed),
        (Endpoint::Authorize, RedirectRefusal::ChallengeMethodNotS256),
        (
            Endpoint::Authorize,
            RedirectRefusal::UnknownResource("http://127.0.0.1:1/mcp".to_owned()),
        ),
        (
            Endpoint::Authorize,
            RedirectRefusal::ClientResourceNotConfigured,
        ),
        (
            Endpoint::Authorize,
            RedirectRefusal::ClientNotForResource {
                client: ClientId::new("m2m_1"),
                resource: ResourceId::new("res_2"),
            },
        ),
        (
            Endpoint::Authorize,
            RedirectRefusal::UnknownScopes(vec!["mcp:admin".to_owned()]),
        ),
        (Endpoint::Authorize, RedirectRefusal::TooManySignIns),
        (
            Endpoint::Authorize,
            RedirectRefusal::ConnectionNotConfigured,
        ),
        (Endpoint::PartnerCallback, RedirectRefusal::LoginFailed),
        (Endpoint::Consent, RedirectRefusal::Denied),
    ]
}

#[test]
fn every_redirect_refusal_names_the_check_the_inspector_inferred() {
    for (endpoint, reason) in redirect_refusals() {
        assert_facts_as_inferred(
            endpoint,
            redirect_to(&redirect(RedirectOutcome::refused(reason))),
        );
    }
}

#[test]
fn a_code_redirect_passes_every_check() {
    for endpoint in [Endpoint::PartnerCallback, Endpoint::Consent] {
        let code = crate::types::AuthorizationCode::new("c0de");
        assert_facts_as_inferred(
            endpoint,
            redirect_to(&redirect(RedirectOutcome::Code(code))),
        );
    }
}

#[test]
fn every_authorization_page_error_names_the_check_the_inspector_inferred() {
    let errors = [
        AuthorizeError::MissingClientId,
        AuthorizeError::UnknownClient(ClientId::new("nobody")),
        AuthorizeError::InvalidRedirectUri(RedirectUriRefusal::Missing),
        AuthorizeError::InvalidRedirectUri(RedirectUriRefusal::NotRegistered {
            uri: "http://evil.example/cb".to_owned(),
            client: ClientId::new("m2m_1"),
        }),
        AuthorizeError::MetadataDocument(MetadataError(
            "the client metadata document is not JSON".to_owned(),
        )),
        AuthorizeError::InvalidTarget(TargetRefusal::UnknownResource(
            "http://127.0.0.1:1/mcp".to_owned(),
        )),
        AuthorizeError::InvalidTarget(TargetRefusal::ResourceRequired),
    ];
    for error in errors {
        let page = HostedErrorPage::new(OAuthErrorCode::InvalidRequest, error.to_string())
            .failed(error.failed_check());
        assert_facts_as_inferred(Endpoint::Authorize, page.into_response());
    }
    // What the edge answers before the state machine is asked.
    let edge = [
        HostedErrorPage::new(
            OAuthErrorCode::InvalidRequest,
            "the resource in the path is malformed",
        )
        .failed(Check::ResourceMatches),
        HostedErrorPage::new(
            OAuthErrorCode::InvalidClientMetadataUrl,
            "client ID metadata documents are not accepted in this environment",
        )
        .failed(Check::ClientKnown),
        HostedErrorPage::new(
            OAuthErrorCode::InvalidRequest,
            "the redirect URI cannot be used",
        ),
        HostedErrorPage::new(OAuthErrorCode::ServerError, "cannot build the redirect"),
    ];
    for page in edge {
        assert_facts_as_inferred(Endpoint::Authorize, page.into_response());
    }
}

/// Every refusal of the token endpoint's transitions, at the endpoints that can produce it.
fn token_errors() -> Vec<(Endpoint, TokenError)> {
    let code = Endpoint::TokenAuthorizationCode;
    let refresh = Endpoint::TokenRefresh;
    let mut errors = vec![
        (
            code,
            TokenError::InvalidClient(ClientRefusal::AuthenticationFailed),
        ),
        (
            refresh,
            TokenError::InvalidClient(ClientRefusal::AuthenticationFailed),
        ),
        (
            code,
            TokenError::InvalidRequest(TokenRequestRefusal::RedirectUriMissing),
        ),
        (code, TokenError::InvalidTarget("res_2".to_owned())),
        (refresh, TokenError::InvalidTarget("res_2".to_owned())),
        (refresh, TokenError::InvalidScope(vec!["email".to_owned()])),
        (
            Endpoint::Revoke,
            TokenError::InvalidClient(ClientRefusal::AuthenticationFailed),
        ),
        (
            Endpoint::Revoke,
            TokenError::InvalidClient(ClientRefusal::PublicClientRevokes),
        ),
    ];
    for reason in [
        GrantRefusal::CodeReused,
        GrantRefusal::CodeUnknown,
        GrantRefusal::CodeExpired,
        GrantRefusal::CodeOfAnotherClient,
        GrantRefusal::RedirectUriMismatch,
        GrantRefusal::VerifierMissing,
        GrantRefusal::VerifierMalformed,
        GrantRefusal::VerifierMismatch,
    ] {
        errors.push((code, TokenError::InvalidGrant(reason)));
    }
    for reason in [
        GrantRefusal::RefreshTokenUnknown,
        GrantRefusal::RefreshTokenReused,
        GrantRefusal::RefreshTokenExpired,
        GrantRefusal::RefreshTokenOfAnotherClient,
    ] {
        errors.push((refresh, TokenError::InvalidGrant(reason)));
    }
    errors
}

#[test]
fn every_token_error_names_the_check_the_inspector_inferred() {
    for (endpoint, error) in token_errors() {
        assert_facts_as_inferred(endpoint, OAuthError::from(error).into_response());
    }
}

#[test]
fn the_token_endpoints_own_refusals_name_the_check_the_inspector_inferred() {
    let malformed_basic = || {
        OAuthError::new(
            OAuthErrorCode::InvalidClient,
            "malformed HTTP Basic credentials",
        )
    };
    let server_error = || {
        OAuthError::new(
            OAuthErrorCode::InvalidRequest,
            "the token could not be issued",
        )
        .with_status(StatusCode::INTERNAL_SERVER_ERROR)
    };
    let cases = [
        (
            Endpoint::TokenOther,
            OAuthError::new(
                OAuthErrorCode::InvalidRequest,
                "the token request must be a form (application/x-www-form-urlencoded)",
            ),
        ),
        (Endpoint::TokenOther, malformed_basic()),
        (
            Endpoint::TokenOther,
            OAuthError::new(OAuthErrorCode::InvalidRequest, "grant_type is required"),
        ),
        (
            Endpoint::TokenOther,
            OAuthError::new(
                OAuthErrorCode::UnsupportedGrantType,
                "grant_type password is not supported",
            )
            .failed(Check::GrantTypeSupported),
        ),
        (Endpoint::TokenClientCredentials, malformed_basic()),
        (
            Endpoint::TokenClientCredentials,
            OAuthError::new(
                OAuthErrorCode::InvalidClient,
                "client authentication failed",
            ),
        ),
        (Endpoint::TokenClientCredentials, server_error()),
        (
            Endpoint::TokenAuthorizationCode,
            malformed_basic().failed(Check::ClientAuthenticated),
        ),
        (
            Endpoint::TokenAuthorizationCode,
            OAuthError::new(OAuthErrorCode::InvalidClient, "client_id is required")
                .failed(Check::ClientAuthenticated),
        ),
        (
            Endpoint::TokenAuthorizationCode,
            OAuthError::new(OAuthErrorCode::InvalidRequest, "code is required"),
        ),
        (
            Endpoint::TokenAuthorizationCode,
            OAuthError::new(
                OAuthErrorCode::InvalidTarget,
                "the grant's resource is no longer configured",
            )
            .failed(Check::ResourceMatches),
        ),
        (Endpoint::TokenAuthorizationCode, server_error()),
        (
            Endpoint::TokenRefresh,
            malformed_basic().failed(Check::ClientAuthenticated),
        ),
        (
            Endpoint::TokenRefresh,
            OAuthError::new(OAuthErrorCode::InvalidClient, "client_id is required")
                .failed(Check::ClientAuthenticated),
        ),
        (
            Endpoint::TokenRefresh,
            OAuthError::new(OAuthErrorCode::InvalidRequest, "refresh_token is required"),
        ),
        (
            Endpoint::TokenRefresh,
            OAuthError::new(
                OAuthErrorCode::InvalidTarget,
                "the grant's resource is no longer configured",
            )
            .failed(Check::ResourceMatches),
        ),
        (Endpoint::TokenRefresh, server_error()),
        (
            Endpoint::Revoke,
            OAuthError::new(
                OAuthErrorCode::InvalidRequest,
                "the revocation request must be a form (application/x-www-form-urlencoded)",
            ),
        ),
        (Endpoint::Revoke, malformed_basic()),
        (
            Endpoint::Revoke,
            OAuthError::new(
                OAuthErrorCode::InvalidClient,
                "client authentication is required to revoke tokens",
            ),
        ),
        (
            Endpoint::Revoke,
            OAuthError::new(OAuthErrorCode::InvalidRequest, "token is required"),
        ),
    ];
    for (endpoint, error) in cases {
        assert_facts_as_inferred(endpoint, error.into_response());
    }
}

#[test]
fn every_user_post_error_names_the_check_the_inspector_inferred() {
    let flow_errors = [
        SubmitUserError::NotFound(SubmitUserNotFound::ResourceIdAsConnection(
            "res_1".to_owned(),
        )),
        SubmitUserError::NotFound(SubmitUserNotFound::UnknownConnection("conn_9".to_owned())),
        SubmitUserError::NotFound(SubmitUserNotFound::LoginRequest),
        SubmitUserError::InvalidArgument {
            message: "invalid user: email".to_owned(),
            violations: Vec::new(),
        },
        SubmitUserError::AlreadyExists(LoginRequestId::new("lri_1")),
    ];
    for error in flow_errors {
        let code = match error {
            SubmitUserError::NotFound(_) => GrpcCode::NotFound,
            SubmitUserError::InvalidArgument { .. } => GrpcCode::InvalidArgument,
            SubmitUserError::AlreadyExists(_) => GrpcCode::AlreadyExists,
        };
        let api_error = ApiError::new(code, error.to_string()).failed(error.failed_check());
        assert_facts_as_inferred(Endpoint::SubmitUser, api_error.into_response());
    }
    let edge = [
        ApiError::new(GrpcCode::Unauthenticated, "Token empty").failed(Check::ManagementTokenValid),
        ApiError::new(GrpcCode::Unauthenticated, "invalid token")
            .failed(Check::ManagementTokenValid),
        ApiError::new(GrpcCode::NotFound, "Invalid URL").failed(Check::LoginRequestPending),
        ApiError::new(GrpcCode::InvalidArgument, "invalid user: expected value"),
    ];
    for api_error in edge {
        assert_facts_as_inferred(Endpoint::SubmitUser, api_error.into_response());
    }
}

#[test]
fn every_callback_and_consent_error_names_the_check_the_inspector_inferred() {
    for reason in [
        CallbackRefusal::UnknownState,
        CallbackRefusal::Expired,
        CallbackRefusal::OtherConnection,
        CallbackRefusal::NoUserSubmitted,
    ] {
        let error = CallbackError::InvalidState(reason);
        let redirect = HostedErrorPage::new(OAuthErrorCode::InvalidState, error.to_string())
            .failed(error.failed_check())
            .redirect_from("http://env.test");
        assert_facts_as_inferred(Endpoint::PartnerCallback, redirect.into_response());
    }
    let redirect = HostedErrorPage::new(OAuthErrorCode::InvalidState, "state is required")
        .failed(Check::StateMatches)
        .redirect_from("http://env.test");
    assert_facts_as_inferred(Endpoint::PartnerCallback, redirect.into_response());
    let page = HostedErrorPage::new(
        OAuthErrorCode::InvalidRequest,
        "the connection in the path is malformed",
    );
    assert_facts_as_inferred(Endpoint::PartnerCallback, page.into_response());
    for description in [
        ConsentError::UnknownConsent.to_string().as_str(),
        "the consent form is malformed",
        "decision must be approve or deny",
        "consent_id is required",
    ] {
        let page = HostedErrorPage::new(OAuthErrorCode::InvalidRequest, description);
        assert_facts_as_inferred(Endpoint::Consent, page.into_response());
    }
}

#[test]
fn every_registration_error_names_the_check_the_inspector_inferred() {
    let errors = [
        RegisterError::UnknownResource("res_9".to_owned()),
        RegisterError::Disabled(ResourceId::new("res_1")),
        RegisterError::InvalidRedirectUri("redirect_uris is required".to_owned()),
        RegisterError::InvalidClientMetadata("scope email is not offered".to_owned()),
    ];
    for error in errors {
        assert_facts_as_inferred(Endpoint::Register, OAuthError::from(error).into_response());
    }
}

#[test]
fn other_endpoints_fail_request_valid_and_successes_fail_nothing() {
    let not_found = ApiError::new(GrpcCode::NotFound, "Not Found").into_response();
    assert_facts_as_inferred(Endpoint::Other, not_found);
    let facts = attach(Endpoint::Authorize, StatusCode::FOUND.into_response())
        .extensions()
        .get::<HopFacts>()
        .copied();
    assert_eq!(
        facts,
        Some(HopFacts {
            endpoint: Endpoint::Authorize,
            failed: None
        })
    );
}

#[test]
fn a_wrong_method_fails_only_request_valid_whatever_the_endpoint() {
    let refused = (
        StatusCode::METHOD_NOT_ALLOWED,
        ApiError::new(GrpcCode::Unimplemented, "Method Not Allowed"),
    )
        .into_response();
    let facts = attach(Endpoint::SubmitUser, refused)
        .extensions()
        .get::<HopFacts>()
        .copied();
    assert_eq!(
        facts,
        Some(HopFacts {
            endpoint: Endpoint::SubmitUser,
            failed: Some(Check::RequestValid),
        })
    );
}
