//! Wire shapes shared by every piece of the test bed.
//!
//! Everything here is a shape that crosses a process boundary between two pieces (the emulator,
//! "Your App", the MCP server, the driver and the conformance harness), so each piece agrees on it
//! without depending on another piece's internals. Nothing here does IO.

mod error;
mod facts;
mod ids;
pub mod redact;
mod secret;
mod user;

pub use error::{
    Constraint, ERROR_INFO_TYPE, ErrorDetail, FieldViolation, GatewayError, OAuthErrorBody,
    ValidationErrorInfo,
};
pub use facts::{Check, Endpoint, ErrorSummary, HopFacts, OAuthErrorCode};
pub use ids::prefix;
pub use secret::Secret;
pub use user::{AuthRequestResponse, UserClaims};
