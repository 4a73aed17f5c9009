//! Error bodies on the wire: Scalekit's gateway shape for `/api/v1` and RFC 6749 §5.2 for OAuth.

use serde::{Deserialize, Serialize};

/// The `@type` of Scalekit's error detail.
pub const ERROR_INFO_TYPE: &str = "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo";

/// Scalekit's REST error body: `{code, message, details: [ErrorInfo]}` where `code` is the gRPC
/// status number (reference: scalekit.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayError {
    /// The gRPC status code, e.g. 16 for UNAUTHENTICATED.
    pub code: i32,
    /// A human-readable message.
    pub message: String,
    /// Usually one `ErrorInfo`.
    #[serde(default)]
    pub details: Vec<ErrorDetail>,
}

/// `scalekit.v1.errdetails.ErrorInfo`, the fields the emulator fills.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Always [`ERROR_INFO_TYPE`].
    #[serde(rename = "@type")]
    pub type_url: String,
    /// The gRPC status name, e.g. `UNAUTHENTICATED`.
    pub error_code: String,
    /// Present for field-level validation failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_error_info: Option<ValidationErrorInfo>,
}

impl ErrorDetail {
    /// An `ErrorInfo` with only an error code.
    pub fn new(error_code: impl Into<String>) -> Self {
        Self {
            type_url: ERROR_INFO_TYPE.to_owned(),
            error_code: error_code.into(),
            validation_error_info: None,
        }
    }
}

/// `validation_error_info` of an `ErrorInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationErrorInfo {
    /// One entry per bad field.
    pub field_violations: Vec<FieldViolation>,
}

/// One bad field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldViolation {
    /// The field's proto name, e.g. `email`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// An OAuth error body (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthErrorBody {
    /// The RFC 6749 error code, e.g. `invalid_grant`.
    pub error: String,
    /// A client-facing description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}
