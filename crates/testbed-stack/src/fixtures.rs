//! The fixtures a stack runs with: `fixtures/environment.toml` and `fixtures/users.toml`.
//!
//! The files in the repository are compiled in, so the stack starts from any directory; a
//! directory of the same two files can replace them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use url::Url;

const ENVIRONMENT_FILE: &str = "environment.toml";
const USERS_FILE: &str = "users.toml";
const EMBEDDED_ENVIRONMENT: &str = include_str!("../../../fixtures/environment.toml");
const EMBEDDED_USERS: &str = include_str!("../../../fixtures/users.toml");

/// The environment and the personas, parsed and checked.
#[derive(Debug, Clone)]
pub struct Fixtures {
    /// The emulated Scalekit environment.
    pub environment: scalekit_emulator::Config,
    /// Your App's users.
    pub personas: Vec<your_app::Persona>,
    /// Where Your App listens with fixed ports: the host and port of the connection's login endpoint.
    pub app_listen: SocketAddr,
    /// Where the MCP server listens with fixed ports: the host and port of the resource's Server URL.
    pub mcp_listen: SocketAddr,
}

/// A fixture file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid fixture.
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

impl Fixtures {
    /// The fixtures shipped in the repository's `fixtures/` folder.
    pub fn embedded() -> Result<Self, FixtureError> {
        Self::parse(
            "fixtures/environment.toml",
            EMBEDDED_ENVIRONMENT,
            "fixtures/users.toml",
            EMBEDDED_USERS,
        )
    }

    /// `environment.toml` and `users.toml` from `directory`.
    pub fn from_dir(directory: &Path) -> Result<Self, FixtureError> {
        let environment_path = directory.join(ENVIRONMENT_FILE);
        let users_path = directory.join(USERS_FILE);
        let environment = read(&environment_path)?;
        let users = read(&users_path)?;
        Self::parse(
            &environment_path.display().to_string(),
            &environment,
            &users_path.display().to_string(),
            &users,
        )
    }

    fn parse(
        environment_name: &str,
        environment_text: &str,
        users_name: &str,
        users_text: &str,
    ) -> Result<Self, FixtureError> {
        let environment =
            scalekit_emulator::Config::from_toml_str(environment_text).map_err(|error| {
                FixtureError::Invalid {
                    file: environment_name.to_owned(),
                    message: error.to_string(),
                }
            })?;
        let personas = your_app::personas_from_toml_str(users_text).map_err(|error| {
            FixtureError::Invalid {
                file: users_name.to_owned(),
                message: error.to_string(),
            }
        })?;
        let connection = environment
            .connections
            .first()
            .ok_or_else(|| FixtureError::Invalid {
                file: environment_name.to_owned(),
                message: "at least one [[connections]] entry is needed".to_owned(),
            })?;
        let resource = environment
            .resources
            .first()
            .ok_or_else(|| FixtureError::Invalid {
                file: environment_name.to_owned(),
                message: "at least one [[resources]] entry is needed".to_owned(),
            })?;
        let app_listen = listen_address(
            &connection.login_endpoint,
            environment_name,
            "login_endpoint",
        )?;
        // The reference MCP server serves the first resource at its Server URL.
        let server_url = resource
            .server_url
            .as_ref()
            .ok_or_else(|| FixtureError::Invalid {
                file: environment_name.to_owned(),
                message: format!(
                    "resource {} needs a server_url: the reference MCP server serves the first resource there",
                    resource.id
                ),
            })?;
        let mcp_listen = listen_address(server_url, environment_name, "server_url")?;
        Ok(Self {
            environment,
            personas,
            app_listen,
            mcp_listen,
        })
    }

    /// The persona called `name`.
    pub fn persona(&self, name: &str) -> Option<&your_app::Persona> {
        self.personas.iter().find(|persona| persona.name == name)
    }
}

fn read(path: &Path) -> Result<String, FixtureError> {
    std::fs::read_to_string(path).map_err(|source| FixtureError::Read {
        path: path.to_owned(),
        source,
    })
}

fn listen_address(url: &Url, file: &str, field: &str) -> Result<SocketAddr, FixtureError> {
    let invalid = |message: String| FixtureError::Invalid {
        file: file.to_owned(),
        message,
    };
    let host = url
        .host_str()
        .ok_or_else(|| invalid(format!("{field} {url} has no host")))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| invalid(format!("{field} {url} has no port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{ip}:{port}").parse().map_err(|_| {
        invalid(format!(
            "{field} {url} must name an IP address or localhost to listen on"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_fixtures_parse_and_name_listen_addresses() {
        let fixtures = Fixtures::embedded().expect("the shipped fixtures are valid");
        assert_eq!(fixtures.app_listen, "127.0.0.1:8401".parse().unwrap());
        assert_eq!(fixtures.mcp_listen, "127.0.0.1:8402".parse().unwrap());
        assert!(fixtures.persona("ada").is_some());
    }

    #[test]
    fn a_first_resource_without_a_server_url_is_refused_since_the_mcp_server_serves_it() {
        let environment =
            EMBEDDED_ENVIRONMENT.replace("server_url = \"http://127.0.0.1:8402/mcp\"\n", "");
        let error = Fixtures::parse(
            "environment.toml",
            &environment,
            "users.toml",
            EMBEDDED_USERS,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment.toml: resource res_81920374650192839 needs a server_url: the reference MCP server serves the first resource there"
        );
    }

    #[test]
    fn a_missing_directory_names_the_file() {
        let error = Fixtures::from_dir(Path::new("/nonexistent/fixtures")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read /nonexistent/fixtures/environment.toml"
        );
    }
}
