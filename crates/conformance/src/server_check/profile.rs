//! The optional profile of the server check (`--mcp-server-profile`, strict TOML): where the
//! emulator listens, a tool and the scope it needs, and how long to wait for a rotated key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

/// How long the check waits, by default, for the server to accept a token signed by a newly
/// published key: a little more than the 30 s cooldown of `jose`'s `createRemoteJWKSet`, the
/// most common JWKS cache in JavaScript servers.
pub const DEFAULT_REFETCH_WAIT: Duration = Duration::from_secs(40);

/// The longest refetch wait a profile may ask for.
const MAX_REFETCH_WAIT_SECS: u64 = 600;

/// What the check needs to know about the server besides its URL (`--mcp-server-profile`, TOML).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerProfile {
    /// Where the emulator listens: the environment URL the server is configured with.
    pub environment_listen: Option<SocketAddr>,
    /// A tool that needs a scope, for the scope checks.
    pub scope: Option<ScopeCheck>,
    /// How long to wait for the server to accept a token signed by a newly published key.
    pub refetch_wait: Duration,
}

impl Default for ServerProfile {
    fn default() -> Self {
        Self {
            environment_listen: None,
            scope: None,
            refetch_wait: DEFAULT_REFETCH_WAIT,
        }
    }
}

/// A tool and the scope it needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeCheck {
    /// The tool's name.
    pub tool: String,
    /// The scope a token needs to call it.
    pub scope: String,
    /// The tool's arguments.
    #[serde(default)]
    pub arguments: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[serde(default)]
    environment: EnvironmentSection,
    scope: Option<ScopeCheck>,
    #[serde(default)]
    keys: KeysSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentSection {
    listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysSection {
    refetch_wait_secs: Option<u64>,
}

/// A profile that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("cannot read the MCP server profile {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid profile (the message names the line).
    #[error("MCP server profile {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Reads a profile file.
pub fn load_profile(path: &Path) -> Result<ServerProfile, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_profile(&text, path)
}

/// Parses a profile.
pub fn parse_profile(text: &str, path: &Path) -> Result<ServerProfile, ProfileError> {
    let invalid = |message: String| ProfileError::Parse {
        path: path.to_owned(),
        message,
    };
    let file: ProfileFile = toml::from_str(text)
        .map_err(|error| invalid(crate::app_check::parse_message(text, &error)))?;
    if let Some(scope) = &file.scope
        && (scope.tool.trim().is_empty() || scope.scope.trim().is_empty())
    {
        return Err(invalid(
            "[scope] needs a tool and the scope it requires, neither empty".to_owned(),
        ));
    }
    let refetch_wait = match file.keys.refetch_wait_secs {
        None => DEFAULT_REFETCH_WAIT,
        Some(seconds) if (1..=MAX_REFETCH_WAIT_SECS).contains(&seconds) => {
            Duration::from_secs(seconds)
        }
        Some(seconds) => {
            return Err(invalid(format!(
                "[keys] refetch_wait_secs must be from 1 to {MAX_REFETCH_WAIT_SECS}, not {seconds}"
            )));
        }
    };
    Ok(ServerProfile {
        environment_listen: file.environment.listen,
        scope: file.scope,
        refetch_wait,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_parses_with_defaults() {
        let profile = parse_profile("", Path::new("p.toml")).expect("an empty profile");
        assert_eq!(profile, ServerProfile::default());
        let profile = parse_profile(
            "[environment]\nlisten = \"127.0.0.1:9400\"\n\n[scope]\ntool = \"whoami\"\nscope = \"mcp:read\"\narguments = { verbose = true }\n\n[keys]\nrefetch_wait_secs = 5\n",
            Path::new("p.toml"),
        )
        .expect("a full profile");
        assert_eq!(
            profile.environment_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9400)))
        );
        let scope = profile.scope.expect("a scope check");
        assert_eq!(scope.tool, "whoami");
        assert_eq!(scope.arguments.get("verbose"), Some(&Value::Bool(true)));
        assert_eq!(profile.refetch_wait, Duration::from_secs(5));
    }

    #[test]
    fn a_profile_with_an_unknown_key_or_a_bad_wait_is_refused() {
        let error = parse_profile("[scope]\ntool = \"t\"\nscop = \"x\"\n", Path::new("p.toml"))
            .expect_err("an unknown key");
        assert!(
            error
                .to_string()
                .starts_with("MCP server profile p.toml: line 3, column 1: unknown field `scop`"),
            "{error}"
        );
        let error = parse_profile("[keys]\nrefetch_wait_secs = 0\n", Path::new("p.toml"))
            .expect_err("a zero wait");
        assert_eq!(
            error.to_string(),
            "MCP server profile p.toml: [keys] refetch_wait_secs must be from 1 to 600, not 0"
        );
        let error = parse_profile("[scope]\ntool = \"\"\nscope = \"x\"\n", Path::new("p.toml"))
            .expect_err("an empty tool");
        assert_eq!(
            error.to_string(),
            "MCP server profile p.toml: [scope] needs a tool and the scope it requires, neither empty"
        );
    }
}
