//! Running the Node side of an interop test: where its package lives and whether it is installed.

use std::path::{Path, PathBuf};

/// `tests/interop/<name>`, the folder of one Node package.
pub fn package_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/interop")
        .join(name)
}

/// `Some(reason)` when the package `name` lacks its dependency `module`, or Node is not on PATH.
/// Under `CI=true` or `TESTBED_REQUIRE_SETUP=1` (`cargo xtask ci`) that is a failure instead.
pub fn missing_setup(name: &str, module: &str) -> Option<String> {
    let installed = package_dir(name)
        .join("node_modules")
        .join(module)
        .join("package.json");
    let reason = if !installed.exists() {
        format!(
            "{} is missing: run `npm ci` in tests/interop/{name}",
            installed.display()
        )
    } else if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        "node is not on PATH".to_owned()
    } else {
        return None;
    };
    let required = std::env::var("CI").as_deref() == Ok("true")
        || std::env::var("TESTBED_REQUIRE_SETUP").as_deref() == Ok("1");
    assert!(
        !required,
        "required under CI=true or TESTBED_REQUIRE_SETUP=1: {reason}"
    );
    Some(reason)
}
