//! `cargo xtask ci`: the prerequisites first, then every suite to its end, then the table.
//!
//! Before anything is built it probes what the suites need (rustfmt, clippy, Node.js and npm,
//! the Node packages under `tests/interop`, python3 and the two virtual environments `.ci/run`
//! makes, chromium and chromedriver where the browser suite looks for them) and prints which
//! suites will run and which cannot, with the reason and the fix ([`plan`]). Under `CI=true` a
//! suite that cannot run fails the run at once. Otherwise such a suite is not run at all, so no
//! test inside it can skip itself and still count as passed: the testbed's e2e, interop and
//! browser test binaries run as separate `cargo test` invocations (with `--workspace`, so the
//! features stay those of a whole workspace build and nothing is compiled twice), every other
//! package's tests in one more. Every suite that runs gets `TESTBED_REQUIRE_SETUP=1`, which the
//! tests' own skip helpers treat like `CI=true`: a setup the plan missed fails the test instead of
//! skipping it. Tests run with `--no-fail-fast`, a failing suite does not stop the next, and the
//! run ends with the table of every suite: PASSED, FAILED, or SKIPPED with the reason
//! ([`report`]).

pub mod plan;
pub mod report;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};

use crate::PARITY_RECORDINGS;
use plan::{Executable, Facts, NodePackage, Plan, Python, SDK_PYTHON, Suite, Venv};
use report::{Outcome, Status, TestCounts};

pub fn run(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let ci = crate::is_ci();
    let plan = Plan::new(&probe(root)?);
    eprint!("{}", plan.render());
    if ci && let Some(failure) = plan.ci_failure() {
        eprint!("{failure}");
        std::process::exit(1);
    }

    let mut node_install = NodeInstall::default();
    let mut outcomes = Vec::new();
    for suite in Suite::ALL {
        if let Some(reason) = plan.blocked(suite) {
            eprintln!("==> {}: SKIPPED: {reason}", suite.name());
            outcomes.push(Outcome {
                suite,
                status: Status::Skipped,
                seconds: None,
                detail: reason,
            });
            continue;
        }
        let suite_started = Instant::now();
        let (status, detail) = match run_suite(root, suite, &plan, &mut node_install) {
            Ok(detail) => (Status::Passed, detail),
            Err(error) => (Status::Failed, format!("{error:#}")),
        };
        outcomes.push(Outcome {
            suite,
            status,
            seconds: Some(suite_started.elapsed().as_secs_f64()),
            detail,
        });
    }

    eprint!("{}", report::render_table(&outcomes));
    let verdict = report::verdict(&outcomes, ci, started.elapsed().as_secs_f64());
    eprintln!("{}", verdict.line);
    if !verdict.success {
        std::process::exit(1);
    }
    Ok(())
}

/// Tells the tests of a suite the plan let run that their setup is there: the skip helpers in
/// `tests/interop` and `tests/browser` panic with their reason instead of skipping, as under
/// `CI=true`, so a prerequisite the plan does not know about cannot pass as a skipped test.
const REQUIRE_SETUP: (&str, &str) = ("TESTBED_REQUIRE_SETUP", "1");

/// `npm ci` in every Node package that lacks `node_modules`: one step shared by the interop and
/// browser suites, run before whichever of them runs first (the browser suite's Node service is
/// one of the interop packages, and the interop suite may be skipped). Its outcome is kept, so a
/// failed install fails every suite that needs it without being retried.
#[derive(Default)]
struct NodeInstall {
    outcome: Option<Result<(), String>>,
}

impl NodeInstall {
    fn ensure(&mut self, root: &Path, packages: &[String]) -> anyhow::Result<()> {
        let outcome = self.outcome.get_or_insert_with(|| {
            for package in packages {
                let name = format!("npm ci in {package}");
                crate::step(
                    &root.join(package),
                    &name,
                    "npm".to_owned(),
                    &["ci", "--no-audit", "--no-fund"],
                )
                .map_err(|error| format!("{error:#}"))?;
            }
            Ok(())
        });
        outcome.clone().map_err(|error| anyhow!(error))
    }
}

/// Runs one suite; `Ok` carries the table's detail (counts), `Err` says what failed.
fn run_suite(
    root: &Path,
    suite: Suite,
    plan: &Plan,
    node_install: &mut NodeInstall,
) -> anyhow::Result<String> {
    let cargo = crate::cargo();
    match suite {
        Suite::Fmt => {
            crate::step(root, "fmt", cargo, &["fmt", "--all", "--", "--check"])?;
            Ok(String::new())
        }
        Suite::Clippy => {
            let args = [
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ];
            crate::step(root, "clippy", cargo, &args)?;
            Ok(String::new())
        }
        Suite::Doc => {
            let args = ["doc", "--workspace", "--no-deps"];
            crate::step_with_env(
                root,
                "doc",
                cargo,
                &args,
                &[("RUSTDOCFLAGS", "-D warnings")],
            )?;
            Ok(String::new())
        }
        Suite::Workspace => cargo_test(
            root,
            &["--workspace", "--exclude", "testbed", "--no-fail-fast"],
        ),
        Suite::E2e => cargo_test(
            root,
            &[
                "--workspace",
                "--no-fail-fast",
                "--bin",
                "testbed",
                "--test",
                "e2e",
            ],
        ),
        Suite::Interop => {
            node_install.ensure(root, &plan.to_install)?;
            // The MCP-client snippet runs `cargo run -q -p mcp-driver -- …` inside a test, which
            // `--test interop` does not build and whose `-p mcp-driver` resolves features on its
            // own: built here with exactly that selection, the nested run finds it fresh instead
            // of compiling inside the test.
            crate::step(
                root,
                "interop: mcp-driver for the MCP-client snippet's `cargo run`",
                cargo,
                &["build", "-q", "-p", "mcp-driver", "--bin", "mcp-driver"],
            )?;
            cargo_test(
                root,
                &["--workspace", "--no-fail-fast", "--test", "interop"],
            )
        }
        Suite::Browser => {
            node_install.ensure(root, &plan.to_install)?;
            cargo_test(
                root,
                &["--workspace", "--no-fail-fast", "--test", "browser"],
            )
        }
        Suite::Schemathesis => crate::run_schemathesis(root, &[]),
        Suite::Conformance => {
            eprintln!("==> conformance: testbed conformance");
            let status =
                crate::testbed_status(root, "conformance", &crate::conformance_args(root, &[]))?;
            let report = "report: target/conformance/report.html";
            if !status.success() {
                bail!("{status}; {report}");
            }
            Ok(report.to_owned())
        }
        Suite::Parity => {
            eprintln!("==> parity: testbed parity {PARITY_RECORDINGS}");
            let status = crate::testbed_status(root, "parity", &crate::parity_args(root, &[]))?;
            let report = "report: target/conformance/parity.json";
            if !status.success() {
                bail!("{status}; {report}");
            }
            Ok(report.to_owned())
        }
    }
}

/// `cargo test ARGS` with [`REQUIRE_SETUP`], its stdout and stderr merged in one pipe so that
/// each `test result` line follows the `Running` line of its binary; echoed as it comes, and
/// counted.
fn cargo_test(root: &Path, args: &[&str]) -> anyhow::Result<String> {
    let (variable, value) = REQUIRE_SETUP;
    eprintln!("==> {variable}={value} cargo test {}", args.join(" "));
    let (reader, writer) = std::io::pipe().context("making a pipe")?;
    let mut child = {
        let mut command = Command::new(crate::cargo());
        command
            .current_dir(root)
            .arg("test")
            .args(args)
            // Plain lines to parse, whatever the caller's terminal settings.
            .env("CARGO_TERM_COLOR", "never")
            .env(variable, value)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().context("sharing the pipe")?)
            .stderr(writer);
        command.spawn().context("running cargo test")?
        // The command, which holds the pipe's writing ends, is dropped here, so the reader sees
        // the end of the output once cargo and its tests have exited.
    };
    let mut counts = TestCounts::default();
    let mut reader = BufReader::new(reader);
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        if reader
            .read_until(b'\n', &mut bytes)
            .context("reading cargo's output")?
            == 0
        {
            break;
        }
        // Lossy: a test may print bytes that are not UTF-8, which must not end the run.
        let line = String::from_utf8_lossy(&bytes);
        let line = line.trim_end_matches(['\n', '\r']);
        eprintln!("{line}");
        counts.read_line(line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        bail!("{} ({status})", counts.summary());
    }
    Ok(counts.summary())
}

/// Looks at this machine for everything [`Plan::new`] decides on.
fn probe(root: &Path) -> anyhow::Result<Facts> {
    let cargo = crate::cargo();
    let node_packages = crate::node_packages(root)?
        .into_iter()
        .map(|dir| NodePackage {
            // npm writes this last, so a half-done install does not count.
            installed: dir.join("node_modules/.package-lock.json").exists(),
            dir: dir.strip_prefix(root).unwrap_or(&dir).display().to_string(),
        })
        .collect();
    let python3 = match version_of("python3", &["--version"]) {
        None => Python::Missing,
        Some(version) if succeeds("python3", &["-c", "import venv, ensurepip"]) => {
            Python::Ready { version }
        }
        Some(version) => Python::WithoutVenv { version },
    };
    Ok(Facts {
        rustfmt: version_of(&cargo, &["fmt", "--version"]),
        clippy: version_of(&cargo, &["clippy", "--version"]),
        node: version_of("node", &["--version"]),
        npm: version_of("npm", &["--version"]),
        node_packages,
        python3,
        sdk_venv: venv(
            &root.join(SDK_PYTHON),
            &["-c", "import scalekit"],
            "cannot import scalekit",
        ),
        ci_venv: venv(
            &root.join(crate::SCHEMATHESIS),
            &["--version"],
            "does not run (--version failed)",
        ),
        chromium: executable("CHROMIUM", "/usr/bin/chromium"),
        chromedriver: executable("CHROMEDRIVER", "/usr/bin/chromedriver"),
    })
}

/// The first line `program ARGS` prints, when it runs and succeeds.
fn version_of(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().map(str::trim).find(|line| !line.is_empty())?;
    Some(line.to_owned())
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A virtual environment's `program`: missing, failing `check`, or ready.
fn venv(program: &Path, check: &[&str], broken: &str) -> Venv {
    if !program.exists() {
        return Venv::Missing;
    }
    if !succeeds(&program.display().to_string(), check) {
        return Venv::Broken {
            why: broken.to_owned(),
        };
    }
    Venv::Ready
}

/// Where the browser suite finds a program: `$variable`, else Debian's `default` path
/// (`mcp_driver::browser::{chromium_path, chromedriver_path}`).
fn executable(variable: &'static str, default: &str) -> Executable {
    let (path, from_variable) = match std::env::var_os(variable) {
        Some(value) => (value.to_string_lossy().into_owned(), Some(variable)),
        None => (default.to_owned(), None),
    };
    Executable {
        exists: Path::new(&path).exists(),
        path,
        from_variable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How `cargo xtask ci` sees a machine without `target/sdk-venv`, probed at a path that does
    /// not exist rather than by deleting the real one.
    #[test]
    fn a_venv_whose_python_does_not_exist_is_missing() {
        let root = std::env::temp_dir().join(format!("xtask-no-venv-{}", std::process::id()));
        let python = root.join(SDK_PYTHON);
        assert!(!python.exists());
        assert!(matches!(
            venv(
                &python,
                &["-c", "import scalekit"],
                "cannot import scalekit"
            ),
            Venv::Missing
        ));
    }

    /// A failed `npm ci` before the interop suite fails the browser suite with the same error
    /// rather than running it again (or running the browser suite without its package).
    #[test]
    fn a_failed_npm_ci_is_run_once_and_fails_every_suite_that_needs_it() {
        let root = std::env::temp_dir().join(format!("xtask-no-package-{}", std::process::id()));
        let packages = ["tests/interop/app-service-node".to_owned()];
        let mut install = NodeInstall::default();
        let first = install.ensure(&root, &packages).unwrap_err().to_string();
        assert!(first.starts_with("running npm"), "{first}");
        let second = install.ensure(&root, &packages).unwrap_err().to_string();
        assert_eq!(first, second);

        let mut nothing_to_install = NodeInstall::default();
        assert!(nothing_to_install.ensure(&root, &[]).is_ok());
    }
}
