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

/// One bad field: `scalekit.v1.errdetails.FieldViolation {field, description, constraint}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldViolation {
    /// The field's proto name, e.g. `email`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
    /// The rule the value broke, e.g. `required` (see [`Constraint`]). Scalekit's own answers
    /// may name rules this crate does not know, so it is kept as text. Absent from the
    /// violations of the emulator's control API, which is not Scalekit's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
}

impl FieldViolation {
    /// A violation of one of Scalekit's rules.
    pub fn new(
        field: impl Into<String>,
        constraint: Constraint,
        description: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
            constraint: Some(constraint.as_str().to_owned()),
        }
    }
}

/// The `constraint` of a [`FieldViolation`], named as protovalidate names the `buf.validate`
/// rule (its `constraint_id`): Scalekit's request messages carry `buf.validate` rules (the
/// descriptors in its SDKs), and a gateway that turns protovalidate's violations into
/// `FieldViolation`s most likely passes that id on. The rules Scalekit checks in its own code
/// (`sub` and `email` unless `login_failed`, E.164 phone numbers) get the id of the
/// `buf.validate` rule that says the same. Decided: no public answer shows a `constraint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    /// `required`: the field must be set.
    Required,
    /// `string.min_len`: too few characters.
    StringMinLen,
    /// `string.max_len`: too many characters.
    StringMaxLen,
    /// `string.pattern`: the text does not match the field's pattern (E.164 for phone numbers).
    StringPattern,
    /// `string.prefix`: the text does not start with the prefix (an `m2m_` client id).
    StringPrefix,
}

impl Constraint {
    /// The rule id on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Constraint::Required => "required",
            Constraint::StringMinLen => "string.min_len",
            Constraint::StringMaxLen => "string.max_len",
            Constraint::StringPattern => "string.pattern",
            Constraint::StringPrefix => "string.prefix",
        }
    }
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
