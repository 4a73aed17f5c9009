//! The gRPC edge: `scalekit.v1.auth.AuthService/UpdateLoginUserDetails`, the call every official
//! SDK makes (reference: scalekit.md §2 "gRPC form"), over the same state transition and the same
//! management-token check as the REST form.
//!
//! It is served on the environment's own port next to the REST routes (see [`crate::serve`]):
//! requests whose content type is `application/grpc…` come here.

use std::collections::BTreeSet;
use std::time::Instant;

use prost::Message as _;
use scalekit_wire::{Constraint, FieldViolation, UserClaims};
use tonic::{Request, Response, Status};

use crate::management::{ApiError, authenticate_management, bearer, submit_user_details};
use crate::state::AppState;
use proto::scalekit::v1::auth::auth_service_server::{self, AuthServiceServer};
use proto::scalekit::v1::auth::{
    UpdateLoginUserDetailsRequest, UpdateLoginUserDetailsResponse, User,
};

/// The Rust types generated from `proto/` by `build.rs` (protox + tonic-prost-build).
#[allow(
    unused_qualifications,
    missing_docs,
    clippy::all,
    clippy::pedantic,
    reason = "generated code"
)]
pub mod proto {
    /// `google.*`.
    pub mod google {
        /// `google.rpc`: the `Status` carried in `grpc-status-details-bin`.
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
    /// `scalekit.*`.
    pub mod scalekit {
        /// `scalekit.v1`.
        pub mod v1 {
            /// `scalekit.v1.auth`: `AuthService`, its messages, server and client.
            pub mod auth {
                tonic::include_proto!("scalekit.v1.auth");
            }
            /// `scalekit.v1.errdetails`: `ErrorInfo`.
            pub mod errdetails {
                tonic::include_proto!("scalekit.v1.errdetails");
            }
        }
    }
}

/// The longest `connection_id` the descriptor's `buf.validate` rule accepts.
const CONNECTION_ID_MAX_LEN: usize = 32;

/// `scalekit.v1.auth.AuthService` over the emulator's state.
#[derive(Debug, Clone)]
pub struct AuthService {
    state: AppState,
}

impl AuthService {
    /// The service over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// The tonic server for it (unknown methods of the service answer UNIMPLEMENTED).
    pub fn into_server(self) -> AuthServiceServer<AuthService> {
        AuthServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl auth_service_server::AuthService for AuthService {
    async fn update_login_user_details(
        &self,
        request: Request<UpdateLoginUserDetailsRequest>,
    ) -> Result<Response<UpdateLoginUserDetailsResponse>, Status> {
        let started = Instant::now();
        let ids = format!(
            "connection_id={}&login_request_id={}",
            encode(&request.get_ref().connection_id),
            encode(&request.get_ref().login_request_id)
        );
        let result = self.update_login_user_details(request);
        if self.state.config.control {
            self.state.requests.record_grpc(
                UPDATE_LOGIN_USER_DETAILS_PATH,
                &ids,
                result.as_ref().err().map(ApiError::summary),
                started,
            );
        }
        result.map(Response::new).map_err(Status::from)
    }
}

impl From<ApiError> for Status {
    /// The gateway error as a gRPC status: the same code and message, and the same `ErrorInfo`
    /// in `grpc-status-details-bin` (a `google.rpc.Status` whose `details` hold it as an `Any`),
    /// the way Scalekit's SDKs read it with `findDetails(ErrorInfo)`.
    fn from(error: ApiError) -> Status {
        use proto::google::rpc;
        use proto::scalekit::v1::errdetails;

        tracing::info!(code = error.code.name(), message = %error.message, "grpc error");
        let validation_error_info =
            (!error.violations.is_empty()).then(|| errdetails::ValidationErrorInfo {
                field_violations: error
                    .violations
                    .iter()
                    .map(
                        |violation| errdetails::validation_error_info::FieldViolation {
                            field: violation.field.clone(),
                            description: violation.description.clone(),
                            constraint: violation.constraint.clone().unwrap_or_default(),
                        },
                    )
                    .collect(),
            });
        let info = errdetails::ErrorInfo {
            error_code: error.code.name().to_owned(),
            validation_error_info,
            ..errdetails::ErrorInfo::default()
        };
        let status = rpc::Status {
            code: error.code.number(),
            message: error.message.clone(),
            details: vec![prost_types::Any {
                type_url: scalekit_wire::ERROR_INFO_TYPE.to_owned(),
                value: info.encode_to_vec(),
            }],
        };
        Status::with_details(
            tonic::Code::from_i32(error.code.number()),
            error.message,
            status.encode_to_vec().into(),
        )
    }
}

impl AuthService {
    fn update_login_user_details(
        &self,
        request: Request<UpdateLoginUserDetailsRequest>,
    ) -> Result<UpdateLoginUserDetailsResponse, ApiError> {
        let headers = request.metadata().clone().into_headers();
        authenticate_management(&self.state, bearer(&headers))?;
        let request = request.into_inner();
        validate_request(&request)?;
        let claims = user_claims(request.user.unwrap_or_default());
        let auth_request_id = submit_user_details(
            &self.state,
            &request.connection_id,
            &request.login_request_id,
            claims,
        )?;
        Ok(UpdateLoginUserDetailsResponse {
            auth_request_id: auth_request_id.to_string(),
        })
    }
}

/// The method's path, as the request log shows gRPC calls.
const UPDATE_LOGIN_USER_DETAILS_PATH: &str = "/scalekit.v1.auth.AuthService/UpdateLoginUserDetails";

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The descriptor's `buf.validate` rules: `connection_id` 1–32 characters, `login_request_id`
/// required. The REST form cannot send them empty (they are path segments).
fn validate_request(request: &UpdateLoginUserDetailsRequest) -> Result<(), ApiError> {
    let mut violations = Vec::new();
    let connection_length = request.connection_id.chars().count();
    if connection_length == 0 {
        violations.push(FieldViolation::new(
            "connection_id",
            Constraint::StringMinLen,
            "value length must be at least 1 characters",
        ));
    } else if connection_length > CONNECTION_ID_MAX_LEN {
        violations.push(FieldViolation::new(
            "connection_id",
            Constraint::StringMaxLen,
            "value length must be at most 32 characters",
        ));
    }
    if request.login_request_id.is_empty() {
        violations.push(FieldViolation::new(
            "login_request_id",
            Constraint::Required,
            "value is required",
        ));
    }
    if violations.is_empty() {
        return Ok(());
    }
    let fields: BTreeSet<&str> = violations.iter().map(|each| each.field.as_str()).collect();
    let fields: Vec<&str> = fields.into_iter().collect();
    Err(ApiError::invalid_argument(
        format!("invalid request: {}", fields.join(", ")),
        violations,
    ))
}

/// The protobuf `User` as the JSON user object the REST form takes. Proto3 cannot tell an empty
/// string or `false` from an absent field, so those read as absent, as they do in Scalekit's
/// gateway (which parses REST JSON into this same message).
pub fn user_claims(user: User) -> UserClaims {
    let text = |value: String| (!value.is_empty()).then_some(value);
    UserClaims {
        sub: text(user.sub),
        email: text(user.email),
        given_name: text(user.given_name),
        family_name: text(user.family_name),
        email_verified: user.email_verified.then_some(true),
        phone_number: text(user.phone_number),
        phone_number_verified: user.phone_number_verified.then_some(true),
        name: text(user.name),
        preferred_username: text(user.preferred_username),
        picture: text(user.picture),
        gender: text(user.gender),
        locale: text(user.locale),
        groups: user.groups,
        custom_attributes: user.custom_attributes.map(struct_to_json),
        organization_external_id: user.organization_external_id,
        roles: user.roles,
        organization_external_name: user.organization_external_name,
        login_failed: user.login_failed,
    }
}

/// `google.protobuf.Struct` as a JSON object (proto3 JSON mapping).
fn struct_to_json(value: prost_types::Struct) -> serde_json::Map<String, serde_json::Value> {
    value
        .fields
        .into_iter()
        .map(|(name, value)| (name, value_to_json(value)))
        .collect()
}

/// Numbers are doubles in a `Struct`; whole ones within the exactly representable range come
/// back as JSON integers, as `{"seats": 3}` posted over REST would be.
fn value_to_json(value: prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    use serde_json::Value;

    /// 2^53: past it, not every integer is a double.
    const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(boolean)) => Value::Bool(boolean),
        Some(Kind::StringValue(string)) => Value::String(string),
        Some(Kind::NumberValue(number)) => {
            if number.fract() == 0.0 && number.abs() <= EXACT_INTEGER_LIMIT {
                #[allow(clippy::cast_possible_truncation, reason = "whole and within 2^53")]
                let integer = number as i64;
                Value::from(integer)
            } else {
                serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StructValue(object)) => Value::Object(struct_to_json(object)),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.into_iter().map(value_to_json).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::value::Kind;
    use serde_json::json;

    fn number(value: f64) -> prost_types::Value {
        prost_types::Value {
            kind: Some(Kind::NumberValue(value)),
        }
    }

    #[test]
    fn a_struct_becomes_the_json_object_rest_would_have_posted() {
        let custom = prost_types::Struct {
            fields: [
                (
                    "plan".to_owned(),
                    prost_types::Value {
                        kind: Some(Kind::StringValue("pro".to_owned())),
                    },
                ),
                ("seats".to_owned(), number(3.0)),
                ("ratio".to_owned(), number(0.5)),
                (
                    "tags".to_owned(),
                    prost_types::Value {
                        kind: Some(Kind::ListValue(prost_types::ListValue {
                            values: vec![prost_types::Value {
                                kind: Some(Kind::BoolValue(true)),
                            }],
                        })),
                    },
                ),
                (
                    "none".to_owned(),
                    prost_types::Value {
                        kind: Some(Kind::NullValue(0)),
                    },
                ),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            serde_json::Value::Object(struct_to_json(custom)),
            json!({"plan": "pro", "seats": 3, "ratio": 0.5, "tags": [true], "none": null})
        );
    }

    #[test]
    fn empty_proto3_fields_read_as_absent() {
        let claims = user_claims(User {
            sub: "ada-1".to_owned(),
            email: "ada@example.com".to_owned(),
            email_verified: true,
            organization_external_id: Some("analytical-engines".to_owned()),
            ..User::default()
        });
        assert_eq!(
            serde_json::to_value(&claims).unwrap_or_default(),
            json!({
                "sub": "ada-1",
                "email": "ada@example.com",
                "email_verified": true,
                "organization_external_id": "analytical-engines"
            })
        );
    }

    #[test]
    fn empty_ids_break_the_descriptor_rules() {
        let request = UpdateLoginUserDetailsRequest {
            connection_id: String::new(),
            login_request_id: String::new(),
            user: None,
        };
        let status = validate_request(&request).map_err(Status::from);
        let status = status.err().unwrap_or_else(|| Status::ok("accepted"));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid request: connection_id, login_request_id"
        );
    }

    #[test]
    fn a_connection_id_longer_than_32_characters_breaks_the_descriptor_rules() {
        let request = UpdateLoginUserDetailsRequest {
            connection_id: format!("conn_{}", "1".repeat(28)),
            login_request_id: "lri_1".to_owned(),
            user: None,
        };
        let status = validate_request(&request).map_err(Status::from);
        let status = status.err().unwrap_or_else(|| Status::ok("accepted"));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "invalid request: connection_id");
    }
}
