//! The BYOA `User` object "Your App" posts to Scalekit (reference: scalekit.md §2, `User` message).

use serde::{Deserialize, Serialize};

/// The user object of `UpdateLoginUserDetails`, as JSON. The REST body is this object itself,
/// not nested under a `user` key. Field names are the proto names (snake_case); the gateway also
/// accepts the camelCase JSON names, so both are read. Every field is optional on the wire: which
/// ones are required (`sub` and `email` unless `login_failed`) is the server's check, not the
/// shape's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserClaims {
    /// The user's id in "Your App" (field 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Field 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Field 3.
    #[serde(default, alias = "givenName", skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Field 4.
    #[serde(default, alias = "familyName", skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Field 5.
    #[serde(
        default,
        alias = "emailVerified",
        skip_serializing_if = "Option::is_none"
    )]
    pub email_verified: Option<bool>,
    /// Field 6, E.164.
    #[serde(
        default,
        alias = "phoneNumber",
        skip_serializing_if = "Option::is_none"
    )]
    pub phone_number: Option<String>,
    /// Field 7.
    #[serde(
        default,
        alias = "phoneNumberVerified",
        skip_serializing_if = "Option::is_none"
    )]
    pub phone_number_verified: Option<bool>,
    /// Field 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Field 9.
    #[serde(
        default,
        alias = "preferredUsername",
        skip_serializing_if = "Option::is_none"
    )]
    pub preferred_username: Option<String>,
    /// Field 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Field 11.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// Field 12, BCP 47.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Field 13.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Field 14, a `google.protobuf.Struct`: any JSON object.
    #[serde(
        default,
        alias = "customAttributes",
        skip_serializing_if = "Option::is_none"
    )]
    pub custom_attributes: Option<serde_json::Map<String, serde_json::Value>>,
    /// Field 15.
    #[serde(
        default,
        alias = "organizationExternalId",
        skip_serializing_if = "Option::is_none"
    )]
    pub organization_external_id: Option<String>,
    /// Field 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Field 17, at most 200 characters; shown on the consent screen.
    #[serde(
        default,
        alias = "organizationExternalName",
        skip_serializing_if = "Option::is_none"
    )]
    pub organization_external_name: Option<String>,
    /// Field 18: the login failed; `sub` and `email` are then not required.
    #[serde(
        default,
        alias = "loginFailed",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub login_failed: bool,
}

/// The answer to the user-details call: `UpdateLoginUserDetailsResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequestResponse {
    /// `req_…`.
    pub auth_request_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_and_snake_case_both_parse() {
        let snake: UserClaims = serde_json::from_str(
            r#"{"sub":"u1","email":"a@b.c","given_name":"Ada","login_failed":false}"#,
        )
        .unwrap();
        let camel: UserClaims =
            serde_json::from_str(r#"{"sub":"u1","email":"a@b.c","givenName":"Ada"}"#).unwrap();
        assert_eq!(snake, camel);
        assert_eq!(snake.given_name.as_deref(), Some("Ada"));
    }

    #[test]
    fn serialises_only_what_is_set() {
        let claims = UserClaims {
            sub: Some("u1".into()),
            email: Some("a@b.c".into()),
            ..UserClaims::default()
        };
        assert_eq!(
            serde_json::to_string(&claims).unwrap(),
            r#"{"sub":"u1","email":"a@b.c"}"#
        );
    }
}
