//! What `cargo xtask ci` can run here: each prerequisite found or missing (with its one-line
//! fix) and, from them, each suite's fate. Pure: the facts are probed elsewhere (`ci::probe`) and
//! handed in, so every decision and every message is tested without touching the machine.

use std::fmt::Write as _;

/// Debian's packages for the browser suite (`tests/browser` starts `/usr/bin/chromedriver`,
/// which starts `/usr/bin/chromium`).
pub const CHROMIUM_FIX: &str = "apt-get install -y chromium chromium-driver";

/// Node.js 20 or newer (the interop packages' `engines`) with npm. Debian 12's own `nodejs` is
/// 18, so NodeSource's, whose package carries npm.
pub const NODE_FIX: &str =
    "curl -fsSL https://deb.nodesource.com/setup_22.x | bash - && apt-get install -y nodejs";

/// python3 and its `venv` module (Debian splits `ensurepip` into `python3-venv`).
pub const PYTHON_FIX: &str = "apt-get install -y python3 python3-venv";

/// The oldest Node.js major the interop packages accept (`"engines": { "node": ">=20" }`).
pub const NODE_MAJOR: u32 = 20;

/// The one Node package the browser suite runs: the Node sample login service its SDK app checks
/// start (`tests/browser/app_check_sdk.rs`). The interop suite needs every package.
pub const BROWSER_NODE_PACKAGE: &str = "tests/interop/app-service-node";

/// The fix for a missing virtual environment `venv` pinned by `requirements`.
pub fn venv_fix(venv: &str, requirements: &str) -> String {
    format!(
        "bash .ci/run makes it (or: python3 -m venv {venv} && {venv}/bin/pip install -r {requirements})"
    )
}

/// The steps of `cargo xtask ci`, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    Fmt,
    Clippy,
    Doc,
    /// Every package's tests but the testbed's: unit, integration and doc tests.
    Workspace,
    E2e,
    Interop,
    Browser,
    Schemathesis,
    Conformance,
    /// `testbed parity fixtures/parity`: the committed recordings against the embedded emulator.
    Parity,
}

impl Suite {
    pub const ALL: [Suite; 10] = [
        Suite::Fmt,
        Suite::Clippy,
        Suite::Doc,
        Suite::Workspace,
        Suite::E2e,
        Suite::Interop,
        Suite::Browser,
        Suite::Schemathesis,
        Suite::Conformance,
        Suite::Parity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Suite::Fmt => "fmt",
            Suite::Clippy => "clippy",
            Suite::Doc => "doc",
            Suite::Workspace => "workspace",
            Suite::E2e => "e2e",
            Suite::Interop => "interop",
            Suite::Browser => "browser",
            Suite::Schemathesis => "schemathesis",
            Suite::Conformance => "conformance",
            Suite::Parity => "parity",
        }
    }

    /// What the suite runs, for the plan.
    pub fn command(self) -> &'static str {
        match self {
            Suite::Fmt => "cargo fmt --all -- --check",
            Suite::Clippy => "cargo clippy --workspace --all-targets -- -D warnings",
            Suite::Doc => "RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps",
            Suite::Workspace => "cargo test --workspace --exclude testbed --no-fail-fast",
            Suite::E2e => "cargo test --workspace --no-fail-fast --bin testbed --test e2e",
            Suite::Interop => {
                "npm ci where still needed, cargo build -q -p mcp-driver --bin mcp-driver, \
                 cargo test --workspace --no-fail-fast --test interop"
            }
            Suite::Browser => {
                "npm ci where still needed, cargo test --workspace --no-fail-fast --test browser"
            }
            Suite::Schemathesis => "target/ci-venv/bin/schemathesis against both OpenAPI documents",
            Suite::Conformance => "testbed conformance: every scenario",
            Suite::Parity => "testbed parity fixtures/parity: the recordings against the emulator",
        }
    }
}

/// A program looked up by path, as the browser suite looks for chromium and chromedriver
/// (`mcp_driver::browser::chromium_path`: `$CHROMIUM`, else `/usr/bin/chromium`).
#[derive(Clone, Debug)]
pub struct Executable {
    pub path: String,
    /// The environment variable that chose `path`, when one did.
    pub from_variable: Option<&'static str>,
    pub exists: bool,
}

/// python3 on `PATH` and whether it can make a virtual environment.
#[derive(Clone, Debug)]
pub enum Python {
    Missing,
    WithoutVenv { version: String },
    Ready { version: String },
}

/// A virtual environment made by `.ci/run`, judged by running its program.
#[derive(Clone, Debug)]
pub enum Venv {
    Missing,
    /// It exists but its check failed (`cannot import scalekit`).
    Broken {
        why: String,
    },
    Ready,
}

/// One `tests/interop/*/` Node package; installed once `npm ci` has completed in it.
#[derive(Clone, Debug)]
pub struct NodePackage {
    pub dir: String,
    pub installed: bool,
}

/// Everything the plan depends on, as probed on this machine.
#[derive(Clone, Debug)]
pub struct Facts {
    /// `cargo fmt --version`, when it works.
    pub rustfmt: Option<String>,
    pub clippy: Option<String>,
    /// `node --version` (`v20.19.2`).
    pub node: Option<String>,
    pub npm: Option<String>,
    pub node_packages: Vec<NodePackage>,
    pub python3: Python,
    /// `target/sdk-venv`, the Python SDK of the interop suite and of the browser suite's SDK app
    /// checks (its `python` imports `scalekit`).
    pub sdk_venv: Venv,
    /// `target/ci-venv`, Schemathesis.
    pub ci_venv: Venv,
    pub chromium: Executable,
    pub chromedriver: Executable,
}

/// Where the interop and browser suites' Python SDK lives and what pins it.
pub const SDK_VENV: &str = "target/sdk-venv";
pub const SDK_PYTHON: &str = "target/sdk-venv/bin/python";
pub const SDK_REQUIREMENTS: &str = "tests/interop/python-sdk/requirements.txt";

/// One line of the prerequisite check.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub state: State,
    /// The suites that cannot run while this is missing; empty when nothing needs it now.
    pub needed_by: Vec<Suite>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Found(String),
    Missing { what: String, fix: String },
}

/// The prerequisites and what they allow.
#[derive(Clone, Debug)]
pub struct Plan {
    pub checks: Vec<Check>,
    /// Node packages `npm ci` installs before the first suite that needs them (interop, or
    /// browser when interop does not run).
    pub to_install: Vec<String>,
}

impl Plan {
    pub fn new(facts: &Facts) -> Plan {
        let mut checks = Vec::new();
        checks.push(Check {
            name: "rustfmt",
            state: program_state(
                facts.rustfmt.as_deref(),
                "rustfmt missing",
                "rustup component add rustfmt",
            ),
            needed_by: vec![Suite::Fmt],
        });
        checks.push(Check {
            name: "clippy",
            state: program_state(
                facts.clippy.as_deref(),
                "clippy missing",
                "rustup component add clippy",
            ),
            needed_by: vec![Suite::Clippy],
        });
        // The browser suite's SDK app checks run a Node service and a Python one, so it needs
        // Node, its package and the SDK venv as much as the interop suite does.
        checks.push(Check {
            name: "node",
            state: node_state(facts.node.as_deref()),
            needed_by: vec![Suite::Interop, Suite::Browser],
        });

        let uninstalled: Vec<String> = facts
            .node_packages
            .iter()
            .filter(|package| !package.installed)
            .map(|package| package.dir.clone())
            .collect();
        // npm matters only while a package still needs `npm ci`: to the interop suite for any of
        // them, to the browser suite for its own.
        let mut npm_needed_by = Vec::new();
        if !uninstalled.is_empty() {
            npm_needed_by.push(Suite::Interop);
        }
        if uninstalled.iter().any(|dir| dir == BROWSER_NODE_PACKAGE) {
            npm_needed_by.push(Suite::Browser);
        }
        checks.push(Check {
            name: "npm",
            state: match (&facts.npm, uninstalled.is_empty()) {
                (Some(version), _) => State::Found(version.clone()),
                (None, true) => {
                    State::Found("not on PATH; not needed, every package is installed".to_owned())
                }
                (None, false) => State::Missing {
                    what: format!("npm missing (to run npm ci in {})", uninstalled.join(", ")),
                    fix: NODE_FIX.to_owned(),
                },
            },
            needed_by: npm_needed_by,
        });
        let installed = facts.node_packages.len() - uninstalled.len();
        checks.push(Check {
            name: "node packages",
            state: State::Found(if uninstalled.is_empty() {
                format!("{installed} installed")
            } else {
                format!(
                    "{installed} installed; npm ci installs {}",
                    uninstalled.join(", ")
                )
            }),
            needed_by: vec![Suite::Interop, Suite::Browser],
        });

        // python3 matters only while a virtual environment is still to be made.
        let mut python_needed_by = Vec::new();
        if !matches!(facts.sdk_venv, Venv::Ready) {
            python_needed_by.extend([Suite::Interop, Suite::Browser]);
        }
        if !matches!(facts.ci_venv, Venv::Ready) {
            python_needed_by.push(Suite::Schemathesis);
        }
        checks.push(Check {
            name: "python3",
            state: match &facts.python3 {
                Python::Ready { version } => State::Found(format!("{version} with venv")),
                Python::WithoutVenv { version } => State::Missing {
                    what: format!("{version} has no venv module"),
                    fix: PYTHON_FIX.to_owned(),
                },
                Python::Missing => State::Missing {
                    what: "python3 missing".to_owned(),
                    fix: PYTHON_FIX.to_owned(),
                },
            },
            needed_by: python_needed_by,
        });
        checks.push(Check {
            name: "sdk-venv",
            state: venv_state(
                &facts.sdk_venv,
                SDK_PYTHON,
                &venv_fix(SDK_VENV, SDK_REQUIREMENTS),
            ),
            needed_by: vec![Suite::Interop, Suite::Browser],
        });
        checks.push(Check {
            name: "ci-venv",
            state: venv_state(
                &facts.ci_venv,
                crate::SCHEMATHESIS,
                &venv_fix(crate::CI_VENV, crate::CI_REQUIREMENTS),
            ),
            needed_by: vec![Suite::Schemathesis],
        });
        checks.push(Check {
            name: "chromium",
            state: executable_state("chromium", &facts.chromium),
            needed_by: vec![Suite::Browser],
        });
        checks.push(Check {
            name: "chromedriver",
            state: executable_state("chromedriver", &facts.chromedriver),
            needed_by: vec![Suite::Browser],
        });

        let to_install = if facts.npm.is_some() {
            uninstalled
        } else {
            Vec::new()
        };
        Plan { checks, to_install }
    }

    /// Why `suite` cannot run, or `None` when it can: the missing prerequisites, those with the
    /// same fix named together (`chromium missing at …, chromedriver missing at …: apt-get …`).
    pub fn blocked(&self, suite: Suite) -> Option<String> {
        let mut groups: Vec<(Vec<&str>, &str)> = Vec::new();
        for check in &self.checks {
            let State::Missing { what, fix } = &check.state else {
                continue;
            };
            if !check.needed_by.contains(&suite) {
                continue;
            }
            match groups.iter_mut().find(|(_, known)| *known == fix.as_str()) {
                Some((whats, _)) => whats.push(what),
                None => groups.push((vec![what.as_str()], fix.as_str())),
            }
        }
        if groups.is_empty() {
            return None;
        }
        let reasons: Vec<String> = groups
            .iter()
            .map(|(whats, fix)| format!("{}: {fix}", whats.join(", ")))
            .collect();
        Some(reasons.join("; "))
    }

    /// The suites that cannot run, each with its reason.
    pub fn blocked_suites(&self) -> Vec<(Suite, String)> {
        Suite::ALL
            .into_iter()
            .filter_map(|suite| self.blocked(suite).map(|reason| (suite, reason)))
            .collect()
    }

    /// The up-front report: every prerequisite, then every suite and whether it will run.
    pub fn render(&self) -> String {
        let mut text = String::from("xtask ci: prerequisites\n");
        for check in &self.checks {
            let (status, detail) = match &check.state {
                State::Found(detail) => ("ok", detail.clone()),
                State::Missing { what, .. } if check.needed_by.is_empty() => {
                    ("absent", format!("{what}; not needed now"))
                }
                State::Missing { what, fix } => ("MISSING", format!("{what}: {fix}")),
            };
            let _ = writeln!(text, "  {:<14} {status:<8} {detail}", check.name);
        }
        text.push_str("xtask ci: suites\n");
        for suite in Suite::ALL {
            match self.blocked(suite) {
                None => {
                    let _ = writeln!(
                        text,
                        "  {:<14} {:<10} {}",
                        suite.name(),
                        "will run",
                        suite.command()
                    );
                }
                Some(reason) => {
                    let _ = writeln!(text, "  {:<14} {:<10} {reason}", suite.name(), "CANNOT RUN");
                }
            }
        }
        text
    }

    /// Under `CI=true` every suite must run: the failure naming each one that cannot, or `None`.
    pub fn ci_failure(&self) -> Option<String> {
        let blocked = self.blocked_suites();
        if blocked.is_empty() {
            return None;
        }
        let mut text = format!(
            "xtask ci: FAILED before building: CI=true requires every suite, and {} cannot run:\n",
            blocked.len()
        );
        for (suite, reason) in blocked {
            let _ = writeln!(text, "  {}: {reason}", suite.name());
        }
        Some(text)
    }
}

fn program_state(version: Option<&str>, what: &str, fix: &str) -> State {
    match version {
        Some(version) => State::Found(version.to_owned()),
        None => State::Missing {
            what: what.to_owned(),
            fix: fix.to_owned(),
        },
    }
}

fn node_state(version: Option<&str>) -> State {
    let Some(version) = version else {
        return State::Missing {
            what: "node missing".to_owned(),
            fix: NODE_FIX.to_owned(),
        };
    };
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok());
    match major {
        Some(major) if major >= NODE_MAJOR => State::Found(version.to_owned()),
        _ => State::Missing {
            what: format!("node {version} is older than {NODE_MAJOR}"),
            fix: NODE_FIX.to_owned(),
        },
    }
}

fn venv_state(venv: &Venv, program: &str, fix: &str) -> State {
    match venv {
        Venv::Ready => State::Found(program.to_owned()),
        Venv::Missing => State::Missing {
            what: format!("{program} missing"),
            fix: fix.to_owned(),
        },
        Venv::Broken { why } => State::Missing {
            what: format!("{program} {why}"),
            fix: fix.to_owned(),
        },
    }
}

fn executable_state(name: &str, executable: &Executable) -> State {
    if executable.exists {
        return State::Found(executable.path.clone());
    }
    let from = match executable.from_variable {
        Some(variable) => format!(" (from ${variable})"),
        None => String::new(),
    };
    State::Missing {
        what: format!("{name} missing at {}{from}", executable.path),
        fix: CHROMIUM_FIX.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine with everything installed.
    fn everything() -> Facts {
        Facts {
            rustfmt: Some("rustfmt 1.8.0-stable".to_owned()),
            clippy: Some("clippy 0.1.95".to_owned()),
            node: Some("v20.19.2".to_owned()),
            npm: Some("10.8.2".to_owned()),
            node_packages: vec![
                NodePackage {
                    dir: BROWSER_NODE_PACKAGE.to_owned(),
                    installed: true,
                },
                NodePackage {
                    dir: "tests/interop/node-sdk".to_owned(),
                    installed: true,
                },
                NodePackage {
                    dir: "tests/interop/ts-sdk".to_owned(),
                    installed: true,
                },
            ],
            python3: Python::Ready {
                version: "Python 3.11.2".to_owned(),
            },
            sdk_venv: Venv::Ready,
            ci_venv: Venv::Ready,
            chromium: Executable {
                path: "/usr/bin/chromium".to_owned(),
                from_variable: None,
                exists: true,
            },
            chromedriver: Executable {
                path: "/usr/bin/chromedriver".to_owned(),
                from_variable: None,
                exists: true,
            },
        }
    }

    fn blocked_names(plan: &Plan) -> Vec<&'static str> {
        plan.blocked_suites()
            .into_iter()
            .map(|(suite, _)| suite.name())
            .collect()
    }

    #[test]
    fn with_everything_installed_every_suite_runs_and_ci_does_not_fail() {
        let plan = Plan::new(&everything());
        assert!(plan.blocked_suites().is_empty());
        assert_eq!(plan.ci_failure(), None);
        assert!(plan.to_install.is_empty());
    }

    #[test]
    fn a_missing_chromium_under_ci_fails_naming_the_browser_suite_and_the_fix() {
        let mut facts = everything();
        facts.chromium.exists = false;
        let plan = Plan::new(&facts);
        assert_eq!(
            plan.ci_failure().as_deref(),
            Some(
                "xtask ci: FAILED before building: CI=true requires every suite, and 1 cannot run:\n  \
                 browser: chromium missing at /usr/bin/chromium: apt-get install -y chromium chromium-driver\n"
            )
        );
    }

    #[test]
    fn chromium_and_chromedriver_missing_share_one_fix_and_an_override_is_named() {
        let mut facts = everything();
        facts.chromium.exists = false;
        facts.chromedriver = Executable {
            path: "/nonexistent".to_owned(),
            from_variable: Some("CHROMEDRIVER"),
            exists: false,
        };
        let plan = Plan::new(&facts);
        assert_eq!(
            plan.blocked(Suite::Browser).as_deref(),
            Some(
                "chromium missing at /usr/bin/chromium, chromedriver missing at /nonexistent \
                 (from $CHROMEDRIVER): apt-get install -y chromium chromium-driver"
            )
        );
        assert_eq!(blocked_names(&plan), ["browser"]);
    }

    #[test]
    fn the_up_front_report_lists_each_prerequisite_and_each_suite() {
        let mut facts = everything();
        facts.chromium.exists = false;
        let text = Plan::new(&facts).render();
        assert!(
            text.contains("  chromium       MISSING  chromium missing at /usr/bin/chromium: apt-get install -y chromium chromium-driver\n"),
            "{text}"
        );
        assert!(
            text.contains("  chromedriver   ok       /usr/bin/chromedriver\n"),
            "{text}"
        );
        assert!(
            text.contains("  browser        CANNOT RUN chromium missing at /usr/bin/chromium: apt-get install -y chromium chromium-driver\n"),
            "{text}"
        );
        assert!(
            text.contains("  e2e            will run   cargo test --workspace --no-fail-fast --bin testbed --test e2e\n"),
            "{text}"
        );
    }

    #[test]
    fn a_package_without_node_modules_is_installed_by_npm_ci_not_missing() {
        let mut facts = everything();
        facts.node_packages[2].installed = false;
        let plan = Plan::new(&facts);
        assert_eq!(plan.blocked(Suite::Interop), None);
        assert_eq!(plan.to_install, ["tests/interop/ts-sdk"]);
    }

    #[test]
    fn without_npm_a_package_to_install_blocks_interop_but_installed_ones_do_not() {
        let mut facts = everything();
        facts.npm = None;
        assert_eq!(Plan::new(&facts).blocked(Suite::Interop), None);

        facts.node_packages[2].installed = false;
        let plan = Plan::new(&facts);
        assert_eq!(
            plan.blocked(Suite::Interop).as_deref(),
            Some(&*format!(
                "npm missing (to run npm ci in tests/interop/ts-sdk): {NODE_FIX}"
            ))
        );
        // The browser suite runs only app-service-node, which is installed.
        assert_eq!(blocked_names(&plan), ["interop"]);
        assert!(plan.to_install.is_empty());
    }

    #[test]
    fn without_npm_an_uninstalled_app_service_node_blocks_the_browser_suite_too() {
        let mut facts = everything();
        facts.npm = None;
        facts.node_packages[0].installed = false;
        let plan = Plan::new(&facts);
        assert_eq!(
            plan.blocked(Suite::Browser).as_deref(),
            Some(&*format!(
                "npm missing (to run npm ci in tests/interop/app-service-node): {NODE_FIX}"
            ))
        );
        assert_eq!(blocked_names(&plan), ["interop", "browser"]);
    }

    /// `npm ci` is one step shared by the interop and browser suites, run before whichever of
    /// them comes first, so both say so.
    #[test]
    fn an_uninstalled_app_service_node_is_installed_for_the_browser_suite_too() {
        let mut facts = everything();
        facts.node_packages[0].installed = false;
        let plan = Plan::new(&facts);
        assert!(plan.blocked_suites().is_empty());
        assert_eq!(plan.to_install, [BROWSER_NODE_PACKAGE]);
        assert!(
            Suite::Interop
                .command()
                .starts_with("npm ci where still needed, ")
        );
        assert!(
            Suite::Browser
                .command()
                .starts_with("npm ci where still needed, ")
        );
    }

    #[test]
    fn without_node_neither_the_interop_nor_the_browser_suite_runs() {
        let mut facts = everything();
        facts.node = None;
        let plan = Plan::new(&facts);
        let reason = format!("node missing: {NODE_FIX}");
        assert_eq!(plan.blocked(Suite::Interop).as_deref(), Some(&*reason));
        assert_eq!(plan.blocked(Suite::Browser).as_deref(), Some(&*reason));
        assert_eq!(blocked_names(&plan), ["interop", "browser"]);
    }

    #[test]
    fn node_older_than_20_blocks_interop_and_browser() {
        let mut facts = everything();
        facts.node = Some("v18.19.0".to_owned());
        let plan = Plan::new(&facts);
        assert_eq!(
            plan.blocked(Suite::Interop).as_deref(),
            Some(&*format!("node v18.19.0 is older than 20: {NODE_FIX}"))
        );
        assert_eq!(blocked_names(&plan), ["interop", "browser"]);
    }

    #[test]
    fn a_missing_sdk_venv_blocks_interop_and_browser_with_the_venv_commands() {
        let mut facts = everything();
        facts.sdk_venv = Venv::Missing;
        let plan = Plan::new(&facts);
        let reason = "target/sdk-venv/bin/python missing: bash .ci/run makes it (or: python3 -m \
                      venv target/sdk-venv && target/sdk-venv/bin/pip install -r \
                      tests/interop/python-sdk/requirements.txt)";
        assert_eq!(plan.blocked(Suite::Interop).as_deref(), Some(reason));
        // The browser suite's Python sample login service runs from the same venv: without it
        // that test would skip itself and the suite would pass.
        assert_eq!(plan.blocked(Suite::Browser).as_deref(), Some(reason));
        assert_eq!(blocked_names(&plan), ["interop", "browser"]);
    }

    /// The whole up-front report on a machine where only `target/sdk-venv` is missing.
    #[test]
    fn the_up_front_report_without_the_sdk_venv_shows_interop_and_browser_cannot_run() {
        let mut facts = everything();
        facts.sdk_venv = Venv::Missing;
        let fix = "bash .ci/run makes it (or: python3 -m venv target/sdk-venv && \
                   target/sdk-venv/bin/pip install -r tests/interop/python-sdk/requirements.txt)";
        let expected = format!(
            "xtask ci: prerequisites\n\
             \x20 rustfmt        ok       rustfmt 1.8.0-stable\n\
             \x20 clippy         ok       clippy 0.1.95\n\
             \x20 node           ok       v20.19.2\n\
             \x20 npm            ok       10.8.2\n\
             \x20 node packages  ok       3 installed\n\
             \x20 python3        ok       Python 3.11.2 with venv\n\
             \x20 sdk-venv       MISSING  target/sdk-venv/bin/python missing: {fix}\n\
             \x20 ci-venv        ok       target/ci-venv/bin/schemathesis\n\
             \x20 chromium       ok       /usr/bin/chromium\n\
             \x20 chromedriver   ok       /usr/bin/chromedriver\n\
             xtask ci: suites\n\
             \x20 fmt            will run   cargo fmt --all -- --check\n\
             \x20 clippy         will run   cargo clippy --workspace --all-targets -- -D warnings\n\
             \x20 doc            will run   RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps\n\
             \x20 workspace      will run   cargo test --workspace --exclude testbed --no-fail-fast\n\
             \x20 e2e            will run   cargo test --workspace --no-fail-fast --bin testbed --test e2e\n\
             \x20 interop        CANNOT RUN target/sdk-venv/bin/python missing: {fix}\n\
             \x20 browser        CANNOT RUN target/sdk-venv/bin/python missing: {fix}\n\
             \x20 schemathesis   will run   target/ci-venv/bin/schemathesis against both OpenAPI documents\n\
             \x20 conformance    will run   testbed conformance: every scenario\n\
             \x20 parity         will run   testbed parity fixtures/parity: the recordings against the emulator\n"
        );
        assert_eq!(Plan::new(&facts).render(), expected);
    }

    #[test]
    fn without_python3_each_missing_venv_names_both_fixes_and_ready_venvs_need_nothing() {
        let mut facts = everything();
        facts.python3 = Python::Missing;
        let plan = Plan::new(&facts);
        assert!(plan.blocked_suites().is_empty());
        assert!(
            plan.render()
                .contains("  python3        absent   python3 missing; not needed now\n")
        );

        facts.ci_venv = Venv::Broken {
            why: "does not run (--version failed)".to_owned(),
        };
        assert_eq!(
            Plan::new(&facts).blocked(Suite::Schemathesis).as_deref(),
            Some(
                "python3 missing: apt-get install -y python3 python3-venv; \
                 target/ci-venv/bin/schemathesis does not run (--version failed): bash .ci/run \
                 makes it (or: python3 -m venv target/ci-venv && target/ci-venv/bin/pip install \
                 -r xtask/requirements-ci.txt)"
            )
        );
    }

    #[test]
    fn missing_rust_components_block_only_their_own_step() {
        let mut facts = everything();
        facts.rustfmt = None;
        facts.clippy = None;
        let plan = Plan::new(&facts);
        assert_eq!(blocked_names(&plan), ["fmt", "clippy"]);
        assert_eq!(
            plan.blocked(Suite::Fmt).as_deref(),
            Some("rustfmt missing: rustup component add rustfmt")
        );
    }

    /// `Suite::Workspace` excludes the testbed package and the e2e, interop and browser suites
    /// name its targets one by one: a target added to it would run in no suite at all.
    #[test]
    fn every_testbed_test_target_belongs_to_a_suite() {
        let testbed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/testbed");
        let manifest = std::fs::read_to_string(testbed.join("Cargo.toml")).unwrap();
        let mut targets = Vec::new();
        let mut in_test = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_test = line == "[[test]]";
            } else if in_test && let Some(name) = line.strip_prefix("name = ") {
                targets.push(name.trim_matches('"').to_owned());
            }
        }
        assert_eq!(targets, ["e2e", "interop", "browser"]);
        assert!(
            !testbed.join("src/lib.rs").exists(),
            "the e2e suite runs the testbed's binary's unit tests only (--bin testbed)"
        );
    }
}
