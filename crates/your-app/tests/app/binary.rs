//! The `your-app` binary's `hash-password` subcommand.

use std::io::Write;
use std::process::{Command, Stdio};

use scalekit_wire::Secret;
use your_app::verify_password;

#[test]
fn hash_password_prints_an_argon2id_hash_of_the_first_stdin_line() -> anyhow::Result<()> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_your-app"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(b"s3cret pass\r\n")?;
    let output = child.wait_with_output()?;

    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout)?;
    let hash = stdout.trim_end_matches('\n');
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(verify_password(&Secret::new(hash), "s3cret pass"));
    Ok(())
}

#[test]
fn serving_without_the_scalekit_settings_is_a_usage_error() -> anyhow::Result<()> {
    let output = Command::new(env!("CARGO_BIN_EXE_your-app"))
        .args(["--users", "fixtures/users.toml"])
        .env_remove("SCALEKIT_ENVIRONMENT_URL")
        .env_remove("SCALEKIT_CLIENT_ID")
        .env_remove("SCALEKIT_CLIENT_SECRET")
        .env_remove("SCALEKIT_CONNECTION_ID")
        .output()?;

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr)?;
    assert!(stderr.contains("--environment-url"), "{stderr}");
    Ok(())
}
