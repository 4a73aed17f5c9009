//! `scalekit.v1.auth.AuthService/UpdateLoginUserDetails` over gRPC (h2c with prior knowledge, on
//! the REST port), with a tonic client: the same transition and errors as the REST form.

use anyhow::{Context as _, Result};
use prost::Message as _;
use reqwest::StatusCode;
use scalekit_emulator::grpc::proto::google::rpc;
use scalekit_emulator::grpc::proto::scalekit::v1::auth::auth_service_client::AuthServiceClient;
use scalekit_emulator::grpc::proto::scalekit::v1::auth::{UpdateLoginUserDetailsRequest, User};
use scalekit_emulator::grpc::proto::scalekit::v1::errdetails::{
    ErrorInfo, ValidationErrorInfo, validation_error_info::FieldViolation,
};
use serde_json::{Value, json};
use tonic::transport::Channel;
use url::Url;

use crate::helpers::{CONNECTION, RESOURCE, TestEnv, VERIFIER, location, query_param};

/// A tonic client on the environment URL: `http://` means h2c with prior knowledge.
async fn client(env: &TestEnv) -> Result<AuthServiceClient<Channel>> {
    let channel = Channel::from_shared(env.base.clone())?.connect().await?;
    Ok(AuthServiceClient::new(channel))
}

fn request(
    login_request_id: &str,
    user: User,
    bearer: Option<&str>,
) -> Result<tonic::Request<UpdateLoginUserDetailsRequest>> {
    let mut request = tonic::Request::new(UpdateLoginUserDetailsRequest {
        connection_id: CONNECTION.to_owned(),
        login_request_id: login_request_id.to_owned(),
        user: Some(user),
    });
    if let Some(token) = bearer {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    Ok(request)
}

fn ada() -> User {
    let custom_attributes = prost_types::Struct {
        fields: [
            (
                "plan".to_owned(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue("pro".to_owned())),
                },
            ),
            (
                "seats".to_owned(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::NumberValue(3.0)),
                },
            ),
        ]
        .into_iter()
        .collect(),
    };
    User {
        sub: "ada-grpc".to_owned(),
        email: "ada@example.com".to_owned(),
        email_verified: true,
        given_name: "Ada".to_owned(),
        name: "Ada Lovelace".to_owned(),
        roles: vec!["admin".to_owned()],
        custom_attributes: Some(custom_attributes),
        organization_external_id: Some("analytical-engines".to_owned()),
        ..User::default()
    }
}

/// The `ErrorInfo` inside the status's `grpc-status-details-bin`.
fn error_info(status: &tonic::Status) -> Result<(rpc::Status, ErrorInfo)> {
    let details = rpc::Status::decode(status.details())?;
    let any = details.details.first().context("no detail")?;
    assert_eq!(
        any.type_url,
        "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo"
    );
    let info = ErrorInfo::decode(any.value.as_slice())?;
    Ok((details, info))
}

#[tokio::test]
async fn a_user_posted_over_grpc_completes_the_flow_through_partner_callback() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, state) = env.start_login().await?;

    let response = client(&env)
        .await?
        .update_login_user_details(request(&lri, ada(), Some(&management))?)
        .await?
        .into_inner();
    assert!(
        response.auth_request_id.starts_with("req_"),
        "{}",
        response.auth_request_id
    );

    let redirect = location(env.callback(&state).await?, StatusCode::FOUND)?;
    assert_eq!(query_param(&redirect, "state")?, "client-state-1");
    let code = query_param(&redirect, "code")?;
    let tokens = env.exchange(&code, VERIFIER, StatusCode::OK).await?;
    let access: Value = env
        .verify(
            tokens["access_token"].as_str().unwrap_or_default(),
            RESOURCE,
        )
        .await?;
    assert_eq!(access["xuid"], "ada-grpc");
    assert_eq!(access["email"], "ada@example.com");
    assert_eq!(access["custom_claims"], json!({"plan": "pro", "seats": 3}));
    assert_eq!(access["roles"], json!(["admin"]));
    assert!(
        access["oid"]
            .as_str()
            .is_some_and(|oid| oid.starts_with("org_")),
        "{access}"
    );
    Ok(())
}

#[tokio::test]
async fn a_second_grpc_post_of_the_same_user_returns_the_same_auth_request() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, _) = env.start_login().await?;
    let mut client = client(&env).await?;
    let first = client
        .update_login_user_details(request(&lri, ada(), Some(&management))?)
        .await?
        .into_inner();
    let second = client
        .update_login_user_details(request(&lri, ada(), Some(&management))?)
        .await?
        .into_inner();
    assert_eq!(first.auth_request_id, second.auth_request_id);
    Ok(())
}

#[tokio::test]
async fn a_grpc_call_without_a_bearer_is_unauthenticated_token_empty() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (lri, _) = env.start_login().await?;
    let status = client(&env)
        .await?
        .update_login_user_details(request(&lri, ada(), None)?)
        .await
        .err()
        .context("the call succeeded")?;
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "Token empty");
    let (details, info) = error_info(&status)?;
    assert_eq!(details.code, 16);
    assert_eq!(details.message, "Token empty");
    assert_eq!(
        info,
        ErrorInfo {
            error_code: "UNAUTHENTICATED".to_owned(),
            ..ErrorInfo::default()
        }
    );
    Ok(())
}

#[tokio::test]
async fn a_grpc_call_with_a_bad_bearer_is_unauthenticated_invalid_token() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (lri, _) = env.start_login().await?;
    let status = client(&env)
        .await?
        .update_login_user_details(request(&lri, ada(), Some("not-a-token"))?)
        .await
        .err()
        .context("the call succeeded")?;
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "invalid token");
    Ok(())
}

#[tokio::test]
async fn a_grpc_user_without_email_is_invalid_argument_with_a_field_violation() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, _) = env.start_login().await?;
    let user = User {
        sub: "ada-grpc".to_owned(),
        ..User::default()
    };
    let status = client(&env)
        .await?
        .update_login_user_details(request(&lri, user, Some(&management))?)
        .await
        .err()
        .context("the call succeeded")?;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "invalid user: email");
    let (details, info) = error_info(&status)?;
    assert_eq!(details.code, 3);
    assert_eq!(
        info,
        ErrorInfo {
            error_code: "INVALID_ARGUMENT".to_owned(),
            validation_error_info: Some(ValidationErrorInfo {
                field_violations: vec![FieldViolation {
                    field: "email".to_owned(),
                    description: "email is required unless login_failed is true".to_owned(),
                    constraint: "required".to_owned(),
                }],
            }),
            ..ErrorInfo::default()
        }
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_grpc_call_is_in_the_request_log_with_its_ids_and_error() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, _) = env.start_login().await?;
    let user = User {
        sub: "ada-grpc".to_owned(),
        ..User::default()
    };
    client(&env)
        .await?
        .update_login_user_details(request(&lri, user, Some(&management))?)
        .await
        .err()
        .context("the call succeeded")?;
    let mut log: Value = env
        .http
        .get(env.url("/_emulator/requests?limit=1"))
        .send()
        .await?
        .json()
        .await?;
    let record = log["requests"][0]
        .as_object_mut()
        .context("a logged request")?;
    record.remove("duration_ms").context("duration_ms")?;
    record.remove("at").context("at")?;
    assert_eq!(
        log,
        json!({"requests": [{
            "method": "POST",
            "path": "/scalekit.v1.auth.AuthService/UpdateLoginUserDetails",
            "query": format!("connection_id={CONNECTION}&login_request_id={lri}"),
            "status": 200,
            "error": {
                "code": "INVALID_ARGUMENT",
                "message": "invalid user: email",
                "fields": ["email"]
            }
        }]})
    );
    Ok(())
}

#[tokio::test]
async fn a_grpc_call_with_empty_ids_breaks_the_descriptor_rules() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let mut request = request("", ada(), Some(&management))?;
    request.get_mut().connection_id = String::new();
    let status = client(&env)
        .await?
        .update_login_user_details(request)
        .await
        .err()
        .context("the call succeeded")?;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "invalid request: connection_id, login_request_id"
    );
    // Each violation names the descriptor's rule as protovalidate does.
    let (_, info) = error_info(&status)?;
    let violation = |field: &str, description: &str, constraint: &str| FieldViolation {
        field: field.to_owned(),
        description: description.to_owned(),
        constraint: constraint.to_owned(),
    };
    assert_eq!(
        info.validation_error_info
            .context("validation_error_info")?
            .field_violations,
        [
            violation(
                "connection_id",
                "value length must be at least 1 characters",
                "string.min_len"
            ),
            violation("login_request_id", "value is required", "required"),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_login_request_over_grpc_is_not_found() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let status = client(&env)
        .await?
        .update_login_user_details(request("lri_404", ada(), Some(&management))?)
        .await
        .err()
        .context("the call succeeded")?;
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(
        status.message(),
        "login request not found: it is unknown, expired, already completed or belongs to another connection"
    );
    let (_, info) = error_info(&status)?;
    assert_eq!(info.error_code, "NOT_FOUND");
    Ok(())
}

#[tokio::test]
async fn rest_answers_over_h2c_on_the_same_port() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let http2 = reqwest::Client::builder().http2_prior_knowledge().build()?;
    let response = http2.get(env.url("/keys")).send().await?;
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let keys: Value = response.json().await?;
    assert!(keys["keys"][0]["kid"].is_string(), "{keys}");
    Ok(())
}

/// A tonic client whose calls name `authority` in `:authority` (a page's rebound name, or an
/// allowed one) while connecting to the emulator's loopback address.
async fn client_for(env: &TestEnv, authority: &str) -> Result<AuthServiceClient<Channel>> {
    let channel = Channel::from_shared(env.base.clone())?
        .origin(format!("http://{authority}").parse()?)
        .connect()
        .await?;
    Ok(AuthServiceClient::new(channel))
}

#[tokio::test]
async fn a_grpc_call_for_a_foreign_authority_is_refused_before_the_service_and_posts_nothing()
-> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, _) = env.start_login().await?;
    let status = client_for(&env, "evil.example:8400")
        .await?
        .update_login_user_details(request(&lri, ada(), Some(&management))?)
        .await
        .err()
        .context("the call succeeded")?;
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status
            .message()
            .starts_with("this server does not answer for the host evil.example:8400"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("--allowed-host evil.example"),
        "{}",
        status.message()
    );
    let (_, info) = error_info(&status)?;
    assert_eq!(info.error_code, "FAILED_PRECONDITION");
    let (_, pending) = env
        .control(reqwest::Method::GET, "/_emulator/login-requests", None)
        .await?;
    assert_eq!(pending["login_requests"][0]["user_submitted"], false);
    Ok(())
}

#[tokio::test]
async fn a_grpc_call_for_localhost_or_an_allowed_host_is_served() -> Result<()> {
    let env = TestEnv::spawn_with(|config| {
        config.allowed_hosts = vec!["emulator.internal".parse().expect("a host")];
    })
    .await?;
    let management = env.management_token().await?;
    let port = Url::parse(&env.base)?.port().context("a port")?;
    for authority in [
        format!("localhost:{port}"),
        format!("emulator.internal:{port}"),
    ] {
        let (lri, _) = env.start_login().await?;
        let response = client_for(&env, &authority)
            .await?
            .update_login_user_details(request(&lri, ada(), Some(&management))?)
            .await
            .with_context(|| format!("as {authority}"))?;
        assert!(response.into_inner().auth_request_id.starts_with("req_"));
    }
    Ok(())
}
