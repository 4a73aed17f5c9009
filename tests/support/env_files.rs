//! What the suites that start `testbed up` as a process share: the repository's fixtures moved to
//! ephemeral ports, and reading the `--env-file` it writes.

use std::collections::BTreeMap;
use std::path::Path;

/// Copies the repository's `environment.toml` and `users.toml` to `to`, with the emulator's,
/// Your App's and the MCP server's ports set to 0 (each named exactly once in the fixtures).
pub fn copy_fixtures_on_ephemeral_ports(to: &Path) {
    let from = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures"));
    std::fs::create_dir_all(to).expect("the fixtures folder is created");
    std::fs::copy(from.join("users.toml"), to.join("users.toml")).expect("users.toml is copied");
    let mut environment =
        std::fs::read_to_string(from.join("environment.toml")).expect("environment.toml is read");
    for (fixed, ephemeral) in [
        (r#""127.0.0.1:8400""#, r#""127.0.0.1:0""#),
        (
            r#""http://127.0.0.1:8401/login""#,
            r#""http://127.0.0.1:0/login""#,
        ),
        (
            r#""http://127.0.0.1:8402/mcp""#,
            r#""http://127.0.0.1:0/mcp""#,
        ),
    ] {
        assert_eq!(
            environment.matches(fixed).count(),
            1,
            "fixtures/environment.toml should name {fixed} once"
        );
        environment = environment.replace(fixed, ephemeral);
    }
    std::fs::write(to.join("environment.toml"), environment).expect("environment.toml is written");
}

/// The `KEY=value` lines of an env file; blank lines and `#` comments skipped. Values are bare, or
/// in single quotes (a `'` written `'\''`) when a shell would read them otherwise.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not a KEY=value line: {line:?}"));
            let value = match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(quoted) => quoted.replace(r"'\''", "'"),
                None => value.to_owned(),
            };
            (key.to_owned(), value)
        })
        .collect()
}
