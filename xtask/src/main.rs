//! `cargo xtask`: the one entry point for the project's own jobs; CI runs the same commands.
//!
//! - `cargo xtask conformance [ARGS]`: every scenario against the embedded stack (`testbed conformance`).
//! - `cargo xtask parity [DIR] [ARGS]`: the recordings in DIR (default `fixtures/parity`) replayed
//!   against the embedded emulator (`testbed parity`).
//! - `cargo xtask up [ARGS]`: the stack on the fixtures' ports (`testbed up`).
//! - `cargo xtask ci`: first the prerequisites of every suite (`ci::plan`), then format check,
//!   clippy, docs, the workspace's tests, the testbed's e2e, interop and browser suites (with
//!   `TESTBED_REQUIRE_SETUP=1`, so none of their tests can skip for a missing setup),
//!   Schemathesis, conformance and parity, each run to its end, and a table of what passed,
//!   failed or was skipped and why (`ci`).
//! - `cargo xtask schemathesis [ARGS]`: Schemathesis against the emulator's two OpenAPI documents
//!   (the control API's and the emulated Scalekit surface's), each on an emulator of its own.
//! - `cargo xtask bench [ARGS]`: release builds of the emulator and `testbed-bench`, then the
//!   measurements (`docs/performance.md`); not part of `ci`.

mod ci;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const USAGE: &str = "usage: cargo xtask <conformance|parity|up|ci|schemathesis|bench> [ARGS]

  conformance [ARGS]  run every scenario against the embedded stack; ARGS go to `testbed conformance`
                      (--filter ID, --list, --concurrency N, --report-dir DIR, --fixtures DIR,
                      --record DIR to write each scenario's normalized exchanges)
  parity [DIR] [ARGS] replay the recordings in DIR (default fixtures/parity) against the embedded
                      emulator and name every answer that differs; ARGS go to `testbed parity`
                      (--target url=URL, --baseline FILE, --report-dir DIR)
  up [ARGS]           start the emulator, Your App and the MCP server on the fixtures' ports;
                      ARGS go to `testbed up` (--auto-login PERSONA, --consent auto|prompt,
                      --tls [--tls-dir DIR] for HTTPS and gRPC over TLS from a local development
                      CA, --env-file PATH to write a dotenv file with what a login service or MCP
                      server needs once it is up, --in-memory, --state-dir DIR, --fixtures DIR;
                      all of them: `cargo xtask up --help`)
  ci                  what CI runs. First it checks the prerequisites (rustfmt, clippy, Node.js 20+
                      and npm, the Node packages under tests/interop, python3 with venv,
                      target/sdk-venv, target/ci-venv, Debian's chromium and chromium-driver) and
                      says which suites cannot run and how to fix that; under CI=true a missing
                      one fails at once. Then: fmt --check, clippy -D warnings, doc -D warnings,
                      the workspace's tests, the e2e, interop (after building mcp-driver) and
                      browser suites (npm ci first where needed, before whichever runs first),
                      schemathesis, conformance, parity (fixtures/parity against the emulator);
                      tests with --no-fail-fast and
                      TESTBED_REQUIRE_SETUP=1 (a test that would skip for missing setup fails),
                      and a failing suite does not stop the next. It ends with a table (PASSED,
                      FAILED, or SKIPPED with the reason) and exits non-zero if anything failed,
                      or under CI=true was skipped
  schemathesis [ARGS] build the emulator, start two on free loopback ports and run Schemathesis
                      (target/ci-venv, pinned in xtask/requirements-ci.txt) with every check against
                      the control API's and the Scalekit surface's OpenAPI documents; ARGS go to
                      `schemathesis run` (--max-examples N, --seed N, --exclude-checks ...)
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
        "parity" => testbed(&root, "parity", &parity_args(&root, &rest)),
        "up" => testbed(&root, "up", &rest),
        "ci" => ci::run(&root),
        "schemathesis" => schemathesis(&root, &rest),
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
    testbed(root, "conformance", &conformance_args(root, rest))
}

/// Runs `testbed <subcommand> ARGS` through cargo, passing its exit code on.
fn testbed(root: &Path, subcommand: &str, args: &[String]) -> anyhow::Result<()> {
    let status = testbed_status(root, subcommand, args)?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

/// Runs `testbed <subcommand> ARGS` through cargo and returns how it ended.
fn testbed_status(root: &Path, subcommand: &str, args: &[String]) -> anyhow::Result<ExitStatus> {
    Command::new(cargo())
        .current_dir(root)
        .args(["run", "--quiet", "--package", "testbed", "--", subcommand])
        .args(args)
        .status()
        .context("running cargo")
}

/// The conformance task's arguments: every scenario, reports under `target/conformance/`.
fn conformance_args(root: &Path, rest: &[String]) -> Vec<String> {
    let mut args = vec![
        "--scenarios".to_owned(),
        root.join("scenarios").display().to_string(),
        "--report-dir".to_owned(),
        root.join("target/conformance").display().to_string(),
    ];
    args.extend(rest.iter().cloned());
    args
}

/// The recordings `cargo xtask parity` and `ci` replay when no folder is given.
const PARITY_RECORDINGS: &str = "fixtures/parity";

/// The options of `testbed parity` that take a value (`--baseline FILE`): the word after one is
/// its value, not the folder.
const PARITY_VALUE_OPTIONS: &[&str] = &[
    "--target",
    "--fixtures",
    "--scenarios",
    "--baseline",
    "--report-dir",
    "--report",
    "--concurrency",
];

/// The parity task's arguments: `fixtures/parity` unless a folder is given (an argument that is
/// neither an option nor an option's value), the report under `target/conformance/`.
fn parity_args(root: &Path, rest: &[String]) -> Vec<String> {
    let mut args = vec![
        "--report-dir".to_owned(),
        root.join("target/conformance").display().to_string(),
    ];
    let mut folder_given = false;
    let mut value_next = false;
    for arg in rest {
        if value_next {
            value_next = false;
        } else if arg.starts_with('-') {
            value_next = PARITY_VALUE_OPTIONS.contains(&arg.as_str());
        } else {
            folder_given = true;
        }
    }
    if !folder_given {
        args.push(root.join(PARITY_RECORDINGS).display().to_string());
    }
    args.extend(rest.iter().cloned());
    args
}

/// Where `.ci/run` makes the virtual environment with the pinned Python tools.
const CI_VENV: &str = "target/ci-venv";

/// Test cases per API operation and phase: about a minute for both documents on a debug build
/// and two shared cores (a run prints its own count and time).
const SCHEMATHESIS_MAX_EXAMPLES: &str = "100";

/// The two OpenAPI documents, each run against an emulator of its own: the control API's run
/// resets, arms faults, rotates and retires keys and moves the clock, none of which must reach
/// the surface's answers (a fault would answer with whatever status it was armed with).
const SCHEMATHESIS_DOCUMENTS: [(&str, &str); 2] = [
    ("control API", "/_emulator/openapi.json"),
    ("Scalekit surface", "/_emulator/scalekit-openapi.json"),
];

/// The pinned Python tools of [`CI_VENV`].
const CI_REQUIREMENTS: &str = "xtask/requirements-ci.txt";

/// Schemathesis in [`CI_VENV`], relative to the workspace root.
const SCHEMATHESIS: &str = "target/ci-venv/bin/schemathesis";

/// `cargo xtask schemathesis`: asked for by name, so a missing virtual environment is an error
/// with the fix, never a quiet skip.
fn schemathesis(root: &Path, rest: &[String]) -> anyhow::Result<()> {
    let program = root.join(SCHEMATHESIS);
    if !program.exists() {
        bail!(
            "schemathesis cannot run: {SCHEMATHESIS} is missing: {}",
            ci::plan::venv_fix(CI_VENV, CI_REQUIREMENTS)
        );
    }
    let summary = run_schemathesis(root, rest)?;
    eprintln!("==> schemathesis: {summary}");
    Ok(())
}

/// Schemathesis (`--checks all`, settings in `xtask/schemathesis.toml`) against the control API's
/// and the emulated Scalekit surface's OpenAPI documents, each on a fresh emulator built from
/// this tree; returns the generated cases per document, or the error naming what failed.
fn run_schemathesis(root: &Path, rest: &[String]) -> anyhow::Result<String> {
    let started = Instant::now();
    let program = root.join(SCHEMATHESIS);
    step(
        root,
        "emulator build",
        cargo(),
        &[
            "build",
            "--package",
            "scalekit-emulator",
            "--bin",
            "scalekit-emulator",
        ],
    )?;
    let binary = root.join("target/debug/scalekit-emulator");
    let report_root = root.join("target/schemathesis");
    let mut generated = Vec::new();
    let mut total = 0;
    let mut failed = Vec::new();
    for (name, document) in SCHEMATHESIS_DOCUMENTS {
        let directory = report_root.join(name.replace(' ', "-").to_lowercase());
        std::fs::create_dir_all(&directory)
            .with_context(|| format!("creating {}", directory.display()))?;
        let emulator = ChildEmulator::start(root, &binary, &directory.join("emulator.log"))?;
        let url = format!("{}{document}", emulator.url);
        let mut command = Command::new(&program);
        command
            .current_dir(&directory)
            .arg("--config-file")
            .arg(root.join("xtask/schemathesis.toml"))
            .args(["run", &url, "--checks", "all", "--no-color"])
            .args(["--max-examples", SCHEMATHESIS_MAX_EXAMPLES])
            .args(["--report", "junit", "--report-dir"])
            .arg(&directory)
            .args(rest);
        eprintln!(
            "==> schemathesis ({name}): {} {}",
            program.display(),
            render_args(&command)
        );
        let (status, cases) = run_counting_cases(&mut command)?;
        drop(emulator);
        eprintln!("==> schemathesis ({name}): {cases} cases generated");
        generated.push(format!("{name} {cases}"));
        total += cases;
        if !status.success() {
            failed.push(format!(
                "{name} ({status}; the emulator's log is {})",
                directory.join("emulator.log").display()
            ));
        }
    }
    let summary = format!("{total} generated cases ({})", generated.join(", "));
    eprintln!(
        "==> schemathesis: {summary} in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!("{summary}; failed: {}", failed.join("; "));
    }
    Ok(summary)
}

/// An emulator started from its binary on a free loopback port (`--listen 127.0.0.1:0`), in
/// memory, with the control API on; killed on drop.
struct ChildEmulator {
    child: Child,
    url: String,
}

impl ChildEmulator {
    /// Starts the emulator with `fixtures/environment.toml`, its output in `log`, and waits for
    /// the line that names the environment URL.
    fn start(root: &Path, binary: &Path, log: &Path) -> anyhow::Result<ChildEmulator> {
        let output =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .current_dir(root)
            .arg("--config")
            .arg(root.join("fixtures/environment.toml"))
            .args(["--listen", "127.0.0.1:0"])
            // In memory, as documented: no key file in the developer's `.testbed/`.
            .arg("--fresh-signing-key")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut emulator = ChildEmulator {
            child,
            url: String::new(),
        };
        let begin = Instant::now();
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(url) = text.lines().find_map(listening_url) {
                emulator.url = url;
                return Ok(emulator);
            }
            if let Some(status) = emulator.child.try_wait()? {
                bail!("the emulator exited ({status}) before listening: {text}");
            }
            if begin.elapsed() > Duration::from_secs(60) {
                bail!("the emulator did not listen within 60 s: {text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildEmulator {
    fn drop(&mut self) {
        // Only this child, by its own handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment URL of the emulator's "scalekit emulator listening" line
/// (`… environment_url="http://127.0.0.1:40123"`).
fn listening_url(line: &str) -> Option<String> {
    if !line.contains("scalekit emulator listening") {
        return None;
    }
    let after = &line[line.find("environment_url")?..];
    let start = after.find("http://")?;
    let url: String = after[start..]
        .chars()
        .take_while(|character| {
            character.is_ascii_alphanumeric() || matches!(character, ':' | '/' | '.' | '[' | ']')
        })
        .collect();
    Some(url.trim_end_matches('/').to_owned())
}

/// Runs Schemathesis, echoing its output, and returns its status and the number of test cases
/// its summary says it generated (`  1329 generated, 1329 passed`).
fn run_counting_cases(command: &mut Command) -> anyhow::Result<(ExitStatus, u64)> {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .context("starting schemathesis")?;
    let stdout = child.stdout.take().context("schemathesis's output")?;
    let mut cases = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some((count, _)) = line.trim().split_once(" generated") {
            cases = count.trim().parse().unwrap_or(cases);
        }
    }
    Ok((child.wait()?, cases))
}

fn render_args(command: &Command) -> String {
    command
        .get_args()
        .map(|argument| argument.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `CI=true`: a suite that cannot run fails instead of being skipped (`cargo xtask ci` before it
/// builds anything, and the interop and browser tests themselves).
fn is_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
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

/// The Node packages: every `tests/interop/*/package.json` (the interop suite's, among them
/// `app-service-node`, which the browser suite's SDK app checks run too).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rest: &[&str]) -> Vec<String> {
        let rest: Vec<String> = rest.iter().map(|arg| (*arg).to_owned()).collect();
        parity_args(Path::new("/repo"), &rest)
    }

    #[test]
    fn parity_replays_the_projects_recordings_unless_a_folder_is_given() {
        let report = ["--report-dir", "/repo/target/conformance"];
        assert_eq!(
            args(&[]),
            [&report[..], &["/repo/fixtures/parity"]].concat()
        );
        // An option's value is not the folder.
        assert_eq!(
            args(&["--concurrency", "2", "--baseline", "b.toml"]),
            [
                &report[..],
                &[
                    "/repo/fixtures/parity",
                    "--concurrency",
                    "2",
                    "--baseline",
                    "b.toml"
                ]
            ]
            .concat()
        );
        assert_eq!(
            args(&["--concurrency=2", "mine"]),
            [&report[..], &["--concurrency=2", "mine"]].concat()
        );
        assert_eq!(
            args(&["--target", "url=http://127.0.0.1:8400", "mine"]),
            [
                &report[..],
                &["--target", "url=http://127.0.0.1:8400", "mine"]
            ]
            .concat()
        );
    }
}
