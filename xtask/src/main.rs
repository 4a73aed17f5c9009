//! `cargo xtask`: the one entry point for the project's own jobs; CI runs the same commands.
//!
//! - `cargo xtask conformance [ARGS]`: every scenario against the embedded stack (`testbed conformance`).
//! - `cargo xtask up [ARGS]`: the stack on the fixtures' ports (`testbed up`).
//! - `cargo xtask ci`: format check, clippy, docs, Node setup for the interop tests, tests, conformance.
//! - `cargo xtask bench [ARGS]`: release builds of the emulator and `testbed-bench`, then the
//!   measurements (`docs/performance.md`); not part of `ci`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

const USAGE: &str = "usage: cargo xtask <conformance|up|ci|bench> [ARGS]

  conformance [ARGS]  run every scenario against the embedded stack; ARGS go to `testbed conformance`
                      (--filter ID, --list, --concurrency N, --report-dir DIR, --fixtures DIR)
  up [ARGS]           start the emulator, Your App and the MCP server on the fixtures' ports;
                      ARGS go to `testbed up` (--auto-login PERSONA, --consent auto|prompt)
  ci                  what CI runs: fmt --check, clippy -D warnings, doc -D warnings, npm ci, tests,
                      conformance
  bench [ARGS]        release-build the emulator and testbed-bench, then measure flows/s, the token
                      endpoint, cold start, RSS and the signing ceiling with the emulator on core 0
                      and the generator on core 1; ARGS go to `testbed-bench` (--update-baseline,
                      --duration-ms N, --rss-flows N, --no-pin; see docs/performance.md)";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(task) = args.next() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let rest: Vec<String> = args.collect();
    let root = workspace_root();
    match task.as_str() {
        "conformance" => conformance(&root, &rest),
        "up" => testbed(&root, "up", &rest),
        "ci" => ci(&root),
        "bench" => bench(&root, &rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("unknown task {other:?}\n\n{USAGE}");
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_owned()
}

fn conformance(root: &Path, rest: &[String]) -> anyhow::Result<()> {
    let mut args = vec![
        "--scenarios".to_owned(),
        root.join("scenarios").display().to_string(),
        "--report-dir".to_owned(),
        root.join("target/conformance").display().to_string(),
    ];
    args.extend(rest.iter().cloned());
    testbed(root, "conformance", &args)
}

/// Runs `testbed <subcommand> ARGS` through cargo, passing its exit code on.
fn testbed(root: &Path, subcommand: &str, args: &[String]) -> anyhow::Result<()> {
    let status = Command::new(cargo())
        .current_dir(root)
        .args(["run", "--quiet", "--package", "testbed", "--", subcommand])
        .args(args)
        .status()
        .context("running cargo")?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn ci(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    step(root, "format", cargo(), &["fmt", "--all", "--", "--check"])?;
    step(
        root,
        "clippy",
        cargo(),
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    step_with_env(
        root,
        "doc",
        cargo(),
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    for package in node_packages(root)? {
        if !package.join("node_modules").exists() {
            let name = format!("npm ci in {}", package.display());
            step(
                &package,
                &name,
                "npm".into(),
                &["ci", "--no-audit", "--no-fund"],
            )?;
        }
    }
    step(root, "tests", cargo(), &["test", "--workspace"])?;
    conformance(root, &[])?;
    eprintln!(
        "xtask ci: everything passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds the emulator and the generator in release mode (benchmarks of a debug build measure
/// the compiler, not the code), then runs `testbed-bench`, which pins itself and the emulator.
fn bench(root: &Path, rest: &[String]) -> anyhow::Result<()> {
    step(
        root,
        "release build",
        cargo(),
        &[
            "build",
            "--release",
            "--package",
            "scalekit-emulator",
            "--package",
            "bench",
            "--bins",
        ],
    )?;
    let release = root.join("target/release");
    let status = Command::new(release.join("testbed-bench"))
        .current_dir(root)
        .arg("--emulator")
        .arg(release.join("scalekit-emulator"))
        .args(rest)
        .status()
        .context("running testbed-bench")?;
    if !status.success() {
        bail!("testbed-bench failed ({status})");
    }
    Ok(())
}

/// The interop tests' Node packages: every `tests/interop/*/package.json`.
fn node_packages(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let interop = root.join("tests/interop");
    let mut packages = Vec::new();
    for entry in
        std::fs::read_dir(&interop).with_context(|| format!("reading {}", interop.display()))?
    {
        let path = entry?.path();
        if path.join("package.json").exists() {
            packages.push(path);
        }
    }
    packages.sort();
    Ok(packages)
}

fn step(directory: &Path, name: &str, program: String, args: &[&str]) -> anyhow::Result<()> {
    step_with_env(directory, name, program, args, &[])
}

fn step_with_env(
    directory: &Path,
    name: &str,
    program: String,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<()> {
    eprintln!("==> {name}: {program} {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(&program)
        .current_dir(directory)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    eprintln!("==> {name}: ok in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
