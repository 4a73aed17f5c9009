//! What somebody's login service or MCP server needs to run against a stack: one list, used by
//! `testbed up` (its banner and `--env-file`) and by the app check's printed settings, so they
//! never disagree.

use crate::{DevCa, Stack};

/// One setting: its name (the one Scalekit's SDKs and our docs use), its value, and what it is
/// for. A secret's value is kept out of `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub value: String,
    pub about: &'static str,
    /// The value is a credential.
    pub secret: bool,
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.secret {
            "<redacted>"
        } else {
            self.value.as_str()
        };
        formatter
            .debug_struct("Setting")
            .field("name", &self.name)
            .field("value", &value)
            .finish_non_exhaustive()
    }
}

impl Setting {
    fn plain(name: &'static str, value: String, about: &'static str) -> Setting {
        Setting {
            name,
            value,
            about,
            secret: false,
        }
    }
}

/// The names a login service needs (the app check prints these).
pub const LOGIN_SERVICE_SETTINGS: [&str; 4] = [
    "SCALEKIT_ENVIRONMENT_URL",
    "SCALEKIT_CLIENT_ID",
    "SCALEKIT_CLIENT_SECRET",
    "SCALEKIT_CONNECTION_ID",
];

/// Everything a login service or MCP server needs for `stack`'s first resource and its
/// connection, then, under TLS, the variables that make Node, Python and gRPC trust the CA.
pub fn settings(stack: &Stack, trust: Option<&DevCa>) -> Vec<Setting> {
    let environment = &stack.fixtures.environment;
    let environment_url = stack.environment_url.as_str().trim_end_matches('/');
    let mut settings = vec![
        Setting::plain(
            "SCALEKIT_ENVIRONMENT_URL",
            environment_url.to_owned(),
            "The Scalekit environment URL (the emulator)",
        ),
        Setting::plain(
            "SCALEKIT_CLIENT_ID",
            environment.api_client.client_id.clone(),
            "The environment's API client (Settings > API credentials in Scalekit)",
        ),
        Setting {
            name: "SCALEKIT_CLIENT_SECRET",
            value: environment.api_client.client_secret.expose().to_owned(),
            about: "Its secret",
            secret: true,
        },
    ];
    if let Some(resource) = environment.resources.first() {
        settings.extend([
            Setting::plain(
                "SCALEKIT_CONNECTION_ID",
                resource.connection.clone(),
                "The bring-your-own-auth connection your login service posts users to",
            ),
            Setting::plain(
                "SCALEKIT_RESOURCE_ID",
                resource.id.clone(),
                "The MCP server resource (an access token's second audience)",
            ),
            Setting::plain(
                "MCP_SERVER_URL",
                stack.mcp_url.to_string(),
                "The MCP server's Server URL (an access token's first audience)",
            ),
            Setting::plain(
                "AUTHORIZATION_SERVER",
                format!("{environment_url}/resources/{}", resource.id),
                "The resource's authorization server, named in its protected-resource metadata",
            ),
        ]);
    }
    settings.push(Setting::plain(
        "JWKS_URL",
        format!("{environment_url}/keys"),
        "The keys access tokens are signed with",
    ));
    for variable in trust.iter().flat_map(|trust| trust.variables()) {
        settings.push(Setting::plain(
            variable.name,
            variable.path.display().to_string(),
            variable.about,
        ));
    }
    settings
}

/// `value` as a dotenv and POSIX shell word: bare when it holds only characters no shell or
/// dotenv reader treats specially, else in single quotes (a `'` written `'\''`), so that
/// `set -a; . ./.env` and dotenv libraries read the same value back.
pub fn quoted(value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:+@,%=".contains(c));
    if bare {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// The dotenv text: a header, then each setting under its comment, values quoted when needed.
pub fn render_env_file(settings: &[Setting]) -> String {
    let mut out = String::from(
        "# Written by `testbed up --env-file` and removed when it stops; it holds the API client's secret.\n",
    );
    for setting in settings {
        out.push_str(&format!(
            "# {}\n{}={}\n",
            setting.about,
            setting.name,
            quoted(&setting.value)
        ));
    }
    out
}

/// Writes `text` to `path` whole, owner-only when `private` ([`testbed_web::files`]).
pub use testbed_web::files::write_atomically;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_only_when_a_shell_would_read_them_otherwise() {
        assert_eq!(quoted("https://127.0.0.1:8400"), "https://127.0.0.1:8400");
        assert_eq!(quoted("test_sk_1"), "test_sk_1");
        assert_eq!(
            quoted("/home/me/My Projects/.testbed/tls/ca.pem"),
            "'/home/me/My Projects/.testbed/tls/ca.pem'"
        );
        assert_eq!(quoted("it's $HOME"), r"'it'\''s $HOME'");
        assert_eq!(quoted(""), "''");
    }

    #[test]
    fn a_quoted_value_reads_back_through_a_posix_shell() {
        let value = "a b'c\"d$e`f\\g";
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("V={}; printf %s \"$V\"", quoted(value)))
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&output.stdout), value);
    }

    #[test]
    fn the_secret_stays_out_of_debug_and_each_setting_is_one_line_under_its_comment() {
        let settings = [
            Setting::plain("SCALEKIT_CLIENT_ID", "skc_1".to_owned(), "the API client"),
            Setting {
                name: "SCALEKIT_CLIENT_SECRET",
                value: "test_sk_must_not_print".to_owned(),
                about: "its secret",
                secret: true,
            },
        ];
        assert!(!format!("{settings:?}").contains("test_sk_must_not_print"));
        assert_eq!(
            render_env_file(&settings),
            "# Written by `testbed up --env-file` and removed when it stops; it holds the API client's secret.\n\
             # the API client\nSCALEKIT_CLIENT_ID=skc_1\n\
             # its secret\nSCALEKIT_CLIENT_SECRET=test_sk_must_not_print\n"
        );
    }

    #[test]
    fn a_file_is_written_whole_and_private_and_leaves_no_temporary_behind() {
        let directory = std::env::temp_dir().join(format!("settings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).expect("a folder");
        let path = directory.join(".env");
        write_atomically(&path, "A=1\n", true).expect("written");
        write_atomically(&path, "A=2\n", true).expect("written again");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "A=2\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = std::fs::read_dir(&directory)
            .expect("listed")
            .map(|entry| entry.expect("an entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(".env")]);
        std::fs::remove_dir_all(&directory).expect("cleaned");
    }
}
