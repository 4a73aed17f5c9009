//! Your App's configuration and its user directory (`fixtures/users.toml`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use scalekit_wire::{Secret, UserClaims};
use serde::Deserialize;
use testbed_web::AllowedHost;
use url::Url;

/// Everything Your App needs to run. Plain data: `main.rs` fills it from the command line, tests
/// build it directly.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen, e.g. `127.0.0.1:8401`.
    pub listen: SocketAddr,
    /// The public base URL, when it differs from `http://{bound address}`.
    pub public_url: Option<Url>,
    /// Host names the app answers for besides loopback and its public URL's host (a container
    /// or proxy name); a request for any other host is refused before routing (DNS rebinding).
    pub allowed_hosts: Vec<AllowedHost>,
    /// The Scalekit environment URL. A trailing slash is tolerated.
    pub environment_url: Url,
    /// The environment API client (`skc_…`) used for the management token.
    pub client_id: String,
    /// The environment API client's secret.
    pub client_secret: Secret,
    /// The BYOA connection (`conn_…`) this app is the login endpoint of.
    pub connection_id: String,
    /// When set, `GET /login` signs this persona in without showing a form (headless runs).
    pub auto_login: Option<String>,
    /// How the hand-off back to Scalekit goes: correctly, or with one deliberate mistake.
    pub behaviour: Behaviour,
    /// The users this app knows.
    pub personas: Vec<Persona>,
    /// A CA certificate (PEM) the app trusts besides the system's roots when it calls the
    /// environment: the emulator's development CA under `--tls`.
    pub ca_cert_pem: Option<String>,
}

/// How Your App hands a login back to Scalekit (steps 2 and 3 of the BYOA flow). Every variant
/// but `Correct` is one deliberate mistake a real integration makes, so that negative scenarios
/// can show what Scalekit (or the emulator) answers to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// Post the user, then redirect to `partner:callback` with the state unchanged.
    #[default]
    Correct,
    /// Redirect with the state altered (one character appended).
    AlterState,
    /// Redirect without the state.
    DropState,
    /// Redirect to `partner:callback` without posting the user first.
    RedirectBeforePost,
    /// Post the user without `email`.
    OmitEmail,
    /// Post a phone number that is not E.164.
    PhoneNotE164,
    /// Report a failed login (`login_failed: true`, no `sub` or `email`).
    LoginFailed,
    /// Post with a bearer that is not a management token.
    BadBearer,
    /// Post to this connection id instead of the configured one (e.g. the `res_…` id).
    WrongConnection(String),
    /// Keep the first login request id it was given and post every later user to that one (a
    /// value cached across sign-ins), then redirect with the current state.
    ReuseLoginRequest,
    /// Post the user, then fetch `partner:callback` itself with its own HTTP client (so without
    /// the browser's cookies) and send the browser where that answer pointed, or to its own
    /// landing page.
    CallbackServerSide,
}

impl std::str::FromStr for Behaviour {
    type Err = String;

    /// The kebab-case names of the variants; `wrong-connection=<id>` for [`Self::WrongConnection`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(connection_id) = text.strip_prefix("wrong-connection=") {
            return Ok(Self::WrongConnection(connection_id.to_owned()));
        }
        Ok(match text {
            "correct" => Self::Correct,
            "alter-state" => Self::AlterState,
            "drop-state" => Self::DropState,
            "redirect-before-post" => Self::RedirectBeforePost,
            "omit-email" => Self::OmitEmail,
            "phone-not-e164" => Self::PhoneNotE164,
            "login-failed" => Self::LoginFailed,
            "bad-bearer" => Self::BadBearer,
            "reuse-login-request" => Self::ReuseLoginRequest,
            "callback-server-side" => Self::CallbackServerSide,
            other => {
                return Err(format!(
                    "unknown behaviour {other:?}: expected correct, alter-state, drop-state, \
                     redirect-before-post, omit-email, phone-not-e164, login-failed, bad-bearer, \
                     reuse-login-request, callback-server-side or wrong-connection=<id>"
                ));
            }
        })
    }
}

/// One user of Your App, with the claims it hands to Scalekit.
#[derive(Clone, PartialEq)]
pub struct Persona {
    /// The login name, e.g. `ada`.
    pub name: String,
    /// A human name for pages.
    pub display_name: String,
    /// One line for the dev persona picker.
    pub description: String,
    /// An argon2 PHC string (`$argon2id$…`).
    pub password_hash: Secret,
    /// The BYOA user object posted to Scalekit.
    pub claims: UserClaims,
}

impl fmt::Debug for Persona {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is a `Secret`, so deriving would already redact it; written out so that a
        // future field cannot slip a secret in unnoticed.
        formatter
            .debug_struct("Persona")
            .field("name", &self.name)
            .field("display_name", &self.display_name)
            .field("description", &self.description)
            .field("password_hash", &self.password_hash)
            .field("claims", &self.claims)
            .finish()
    }
}

/// A users file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read users file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not have the expected shape.
    #[error("invalid users file {origin}")]
    Parse {
        /// The file, or `<string>`.
        origin: String,
        /// Why.
        #[source]
        source: toml::de::Error,
    },
    /// The TOML parses but says something that cannot be right.
    #[error("invalid users file {origin}: {problem}")]
    Invalid {
        /// The file, or `<string>`.
        origin: String,
        /// What is wrong.
        problem: String,
    },
}

/// The users file on disk.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    personas: Vec<PersonaEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonaEntry {
    name: String,
    display_name: String,
    description: String,
    password_hash: Secret,
    /// Read as a table first so that a misspelt claim is an error, not a silently dropped field
    /// (`UserClaims` itself accepts anything, as Scalekit's gateway does).
    claims: toml::Table,
}

/// The claim names a users file may use: the proto field names of Scalekit's `User` message.
const CLAIM_NAMES: &[&str] = &[
    "sub",
    "email",
    "given_name",
    "family_name",
    "email_verified",
    "phone_number",
    "phone_number_verified",
    "name",
    "preferred_username",
    "picture",
    "gender",
    "locale",
    "groups",
    "custom_attributes",
    "organization_external_id",
    "roles",
    "organization_external_name",
    "login_failed",
];

/// Reads a users file (`fixtures/users.toml`).
pub fn load_personas(path: &Path) -> Result<Vec<Persona>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_personas(&text, &path.display().to_string())
}

/// Parses the contents of a users file.
pub fn personas_from_toml_str(text: &str) -> Result<Vec<Persona>, ConfigError> {
    parse_personas(text, "<string>")
}

fn parse_personas(text: &str, origin: &str) -> Result<Vec<Persona>, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        origin: origin.to_owned(),
        problem,
    };
    let file: UsersFile = toml::from_str(text).map_err(|source| ConfigError::Parse {
        origin: origin.to_owned(),
        source,
    })?;
    let mut personas: Vec<Persona> = Vec::with_capacity(file.personas.len());
    for entry in file.personas {
        if entry.name.is_empty() {
            return Err(invalid("a persona has an empty name".to_owned()));
        }
        if personas.iter().any(|persona| persona.name == entry.name) {
            return Err(invalid(format!("persona `{}` appears twice", entry.name)));
        }
        if let Some(unknown) = entry
            .claims
            .keys()
            .find(|key| !CLAIM_NAMES.contains(&key.as_str()))
        {
            return Err(invalid(format!(
                "persona `{}` has an unknown claim `{unknown}`",
                entry.name
            )));
        }
        let claims: UserClaims = entry.claims.try_into().map_err(|error: toml::de::Error| {
            invalid(format!(
                "persona `{}` has malformed claims: {}",
                entry.name,
                error.message()
            ))
        })?;
        if claims.sub.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(format!(
                "persona `{}` has no `sub` claim",
                entry.name
            )));
        }
        if argon2::PasswordHash::new(entry.password_hash.expose()).is_err() {
            return Err(invalid(format!(
                "persona `{}` has a password_hash that is not a PHC string",
                entry.name
            )));
        }
        personas.push(Persona {
            name: entry.name,
            display_name: entry.display_name,
            description: entry.description,
            password_hash: entry.password_hash,
            claims,
        });
    }
    Ok(personas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::verify_password;

    #[test]
    fn behaviours_parse_from_their_kebab_case_names() {
        assert_eq!("correct".parse(), Ok(Behaviour::Correct));
        assert_eq!(
            "reuse-login-request".parse(),
            Ok(Behaviour::ReuseLoginRequest)
        );
        assert_eq!(
            "wrong-connection=res_1".parse(),
            Ok(Behaviour::WrongConnection("res_1".to_owned()))
        );
        assert_eq!(
            "sloppy"
                .parse::<Behaviour>()
                .map_err(|error| error.starts_with("unknown behaviour \"sloppy\"")),
            Err(true)
        );
    }

    fn fixture_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/users.toml")
    }

    #[test]
    fn the_users_fixture_parses_and_every_hash_verifies_with_its_documented_password() {
        let personas = load_personas(&fixture_path()).unwrap();
        let names: Vec<&str> = personas
            .iter()
            .map(|persona| persona.name.as_str())
            .collect();
        assert!(names.starts_with(&["ada", "grace", "linus"]), "{names:?}");
        for persona in &personas {
            let documented = format!("{}-password", persona.name);
            assert!(
                verify_password(&persona.password_hash, &documented),
                "{} does not verify",
                persona.name
            );
            assert!(!verify_password(&persona.password_hash, "wrong-password"));
        }
    }

    #[test]
    fn the_fixture_personas_carry_the_claims_the_brief_describes() {
        let personas = load_personas(&fixture_path()).unwrap();
        let by_name = |name: &str| {
            personas
                .iter()
                .find(|persona| persona.name == name)
                .unwrap()
        };

        let ada = serde_json::to_value(&by_name("ada").claims).unwrap();
        for claim in CLAIM_NAMES.iter().filter(|claim| **claim != "login_failed") {
            assert!(ada.get(claim).is_some(), "ada lacks {claim}");
        }
        let grace = &by_name("grace").claims;
        assert!(grace.organization_external_id.is_some());
        assert_ne!(
            grace.custom_attributes,
            by_name("ada").claims.custom_attributes
        );
        let linus = serde_json::to_value(&by_name("linus").claims).unwrap();
        let mut keys: Vec<&String> = linus.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["email", "sub"]);
    }

    #[test]
    fn a_misspelt_claim_is_an_error_naming_the_persona() {
        let text = r#"
            [[personas]]
            name = "ada"
            display_name = "Ada"
            description = "d"
            password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"
            [personas.claims]
            sub = "u1"
            emial = "ada@example.com"
        "#;
        let error = personas_from_toml_str(text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid users file <string>: persona `ada` has an unknown claim `emial`"
        );
    }

    #[test]
    fn an_unknown_persona_field_is_an_error_naming_the_file() {
        let error = load_personas(Path::new("/nonexistent/users.toml")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read users file /nonexistent/users.toml"
        );
        let error = personas_from_toml_str("[[personas]]\nnmae = \"x\"\n").unwrap_err();
        assert!(
            error.to_string().starts_with("invalid users file <string>"),
            "{error}"
        );
        assert!(
            std::error::Error::source(&error)
                .unwrap()
                .to_string()
                .contains("nmae")
        );
    }

    #[test]
    fn debug_output_redacts_the_password_hash() {
        let persona = Persona {
            name: "ada".into(),
            display_name: "Ada".into(),
            description: "d".into(),
            password_hash: Secret::new("$argon2id$secret-hash"),
            claims: UserClaims::default(),
        };
        let debug = format!("{persona:?}");
        assert!(debug.contains("[redacted]"));
        assert!(!debug.contains("secret-hash"));
    }
}
