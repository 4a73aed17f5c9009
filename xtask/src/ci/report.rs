//! The end of `cargo xtask ci`: what each suite came to, the table of them and the verdict, and
//! the test counts read from cargo's output. Pure, so the wording is tested.

use std::fmt::Write as _;

use super::plan::Suite;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed,
    /// Not run: a skipped suite is never counted as passed.
    Skipped,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Passed => "PASSED",
            Status::Failed => "FAILED",
            Status::Skipped => "SKIPPED",
        }
    }
}

/// What one suite came to.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub suite: Suite,
    pub status: Status,
    /// How long it ran; `None` when it did not.
    pub seconds: Option<f64>,
    /// Counts, or why it failed or was skipped.
    pub detail: String,
}

/// The table of every suite: name, result, time, detail.
pub fn render_table(outcomes: &[Outcome]) -> String {
    let mut text = String::from("xtask ci: results\n");
    for outcome in outcomes {
        let time = match outcome.seconds {
            Some(seconds) => format!("{seconds:.0}s"),
            None => "-".to_owned(),
        };
        let line = format!(
            "  {:<14} {:<8} {time:>6}  {}",
            outcome.suite.name(),
            outcome.status.label(),
            outcome.detail
        );
        let _ = writeln!(text, "{}", line.trim_end());
    }
    text
}

/// The last line, and whether the run succeeded: nothing failed, and under `CI=true` nothing was
/// skipped either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub line: String,
    pub success: bool,
}

pub fn verdict(outcomes: &[Outcome], ci: bool, seconds: f64) -> Verdict {
    let named = |status: Status| -> Vec<&str> {
        outcomes
            .iter()
            .filter(|outcome| outcome.status == status)
            .map(|outcome| outcome.suite.name())
            .collect()
    };
    let passed = named(Status::Passed).len();
    let failed = named(Status::Failed);
    let skipped = named(Status::Skipped);
    let mut parts = vec![format!("{passed} passed")];
    if !failed.is_empty() {
        parts.push(format!("{} failed ({})", failed.len(), failed.join(", ")));
    }
    if !skipped.is_empty() {
        parts.push(format!(
            "{} skipped ({})",
            skipped.len(),
            skipped.join(", ")
        ));
    }
    let counts = format!("{} in {seconds:.0}s", parts.join(", "));
    let success = failed.is_empty() && (skipped.is_empty() || !ci);
    let line = if !failed.is_empty() {
        format!("xtask ci: FAILED: {counts}")
    } else if !success {
        format!("xtask ci: FAILED under CI=true, where nothing may be skipped: {counts}")
    } else if !skipped.is_empty() {
        format!("xtask ci: {counts}; the skipped suites did not run")
    } else {
        format!("xtask ci: all {passed} suites passed in {seconds:.0}s")
    };
    Verdict { line, success }
}

/// What a `cargo test` run printed about its test binaries, read line by line from its merged
/// stdout and stderr: `Running <source> (<binary>)` or `Doc-tests <crate>` starts a binary,
/// `test result: …` ends it, and `error: test failed, to rerun pass `…`` names a failed one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestCounts {
    pub binaries: u32,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// Cargo's own names for the failed binaries (`-p bench --test bench`).
    pub failed_targets: Vec<String>,
}

impl TestCounts {
    /// Reads one line. Only cargo's and libtest's own lines count, at the start of the line and
    /// with cargo's status words right-aligned in 12 columns, so a test's captured output that
    /// mentions "Running" is not a binary.
    pub fn read_line(&mut self, line: &str) {
        if line.starts_with("     Running ") || line.starts_with("   Doc-tests ") {
            self.binaries += 1;
        } else if let Some(result) = line.strip_prefix("test result: ") {
            for part in result.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(label), Some(count)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(count) = count.parse::<u64>() else {
                    continue;
                };
                match label {
                    "passed" => self.passed += count,
                    "failed" => self.failed += count,
                    "ignored" => self.ignored += count,
                    _ => {}
                }
            }
        } else if let Some(target) = line
            .strip_prefix("error: test failed, to rerun pass `")
            .and_then(|rest| rest.strip_suffix('`'))
            && !self.failed_targets.iter().any(|known| known == target)
        {
            self.failed_targets.push(target.to_owned());
        }
    }

    /// The table's detail: `612 passed, 3 ignored in 41 binaries`, plus what failed.
    pub fn summary(&self) -> String {
        if self.binaries == 0 {
            return "no test binary ran (did it build? see the output above)".to_owned();
        }
        let mut parts = vec![format!("{} passed", self.passed)];
        if self.failed > 0 {
            parts.push(format!("{} failed", self.failed));
        }
        if self.ignored > 0 {
            parts.push(format!("{} ignored", self.ignored));
        }
        let noun = if self.binaries == 1 {
            "binary"
        } else {
            "binaries"
        };
        let mut summary = format!("{} in {} test {noun}", parts.join(", "), self.binaries);
        if !self.failed_targets.is_empty() {
            let _ = write!(
                summary,
                "; failed: {}",
                self.failed_targets
                    .iter()
                    .map(|target| format!("`{target}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(suite: Suite, status: Status, detail: &str) -> Outcome {
        Outcome {
            suite,
            status,
            seconds: (status != Status::Skipped).then_some(12.4),
            detail: detail.to_owned(),
        }
    }

    #[test]
    fn everything_passed_says_so() {
        let outcomes: Vec<Outcome> = Suite::ALL
            .into_iter()
            .map(|suite| outcome(suite, Status::Passed, ""))
            .collect();
        let verdict = verdict(&outcomes, true, 311.6);
        assert_eq!(verdict.line, "xtask ci: all 10 suites passed in 312s");
        assert!(verdict.success);
    }

    #[test]
    fn a_skipped_suite_is_never_counted_as_passed() {
        let outcomes = [
            outcome(Suite::E2e, Status::Passed, ""),
            outcome(Suite::Browser, Status::Skipped, "chromium missing"),
            outcome(Suite::Schemathesis, Status::Skipped, "venv missing"),
        ];
        let outside_ci = verdict(&outcomes, false, 60.0);
        assert_eq!(
            outside_ci.line,
            "xtask ci: 1 passed, 2 skipped (browser, schemathesis) in 60s; the skipped suites did not run"
        );
        assert!(outside_ci.success);

        let under_ci = verdict(&outcomes, true, 60.0);
        assert_eq!(
            under_ci.line,
            "xtask ci: FAILED under CI=true, where nothing may be skipped: 1 passed, 2 skipped \
             (browser, schemathesis) in 60s"
        );
        assert!(!under_ci.success);
    }

    #[test]
    fn a_failure_fails_the_run_and_is_named() {
        let outcomes = [
            outcome(Suite::Workspace, Status::Failed, ""),
            outcome(Suite::Browser, Status::Skipped, ""),
            outcome(Suite::Conformance, Status::Passed, ""),
        ];
        let verdict = verdict(&outcomes, false, 5.0);
        assert_eq!(
            verdict.line,
            "xtask ci: FAILED: 1 passed, 1 failed (workspace), 1 skipped (browser) in 5s"
        );
        assert!(!verdict.success);
    }

    #[test]
    fn the_table_has_a_row_per_suite_with_its_result_time_and_detail() {
        let outcomes = [
            outcome(Suite::Fmt, Status::Passed, ""),
            outcome(
                Suite::E2e,
                Status::Failed,
                "80 passed, 1 failed in 2 test binaries",
            ),
            outcome(
                Suite::Browser,
                Status::Skipped,
                "chromium missing at /usr/bin/chromium: apt-get install -y chromium chromium-driver",
            ),
        ];
        assert_eq!(
            render_table(&outcomes),
            "xtask ci: results\n\
             \x20 fmt            PASSED      12s\n\
             \x20 e2e            FAILED      12s  80 passed, 1 failed in 2 test binaries\n\
             \x20 browser        SKIPPED       -  chromium missing at /usr/bin/chromium: apt-get install -y chromium chromium-driver\n"
        );
    }

    /// Cargo's merged output for a binary that passes, one with a failing test, one that
    /// aborts before its summary, and doc tests.
    const OUTPUT: &str = "\
   Compiling xfail v0.1.0 (/tmp/xfail)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 0.43s
     Running unittests src/lib.rs (target/debug/deps/xfail-61d992a8a5519343)

running 1 test
test ok ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

     Running tests/a.rs (target/debug/deps/a-7e7b5a91605382b3)

running 3 tests
test good ... ok
test skipped ... ignored
test bad ... FAILED

failures:

---- bad stdout ----
Running the scenario
test result: this line is a test's own output, indented or not
thread 'bad' panicked at tests/a.rs:2:10:

failures:
    bad

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.09s

error: test failed, to rerun pass `--test a`
     Running tests/b.rs (target/debug/deps/b-2b3b1b4fc80dfcb4)

running 1 test
error: test failed, to rerun pass `--test b`

Caused by:
  process didn't exit successfully: `/tmp/xfail/target/debug/deps/b-2b3b1b4fc80dfcb4` (signal: 6, SIGABRT: process abort signal)
   Doc-tests xfail

running 1 test
test src/lib.rs - f (line 1) ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

error: 2 targets failed:
    `--test a`
    `--test b`
";

    #[test]
    fn cargo_test_output_gives_the_counts_and_the_failed_binaries() {
        let mut counts = TestCounts::default();
        for line in OUTPUT.lines() {
            counts.read_line(line);
        }
        assert_eq!(
            counts,
            TestCounts {
                binaries: 4,
                passed: 3,
                failed: 1,
                ignored: 1,
                failed_targets: vec!["--test a".to_owned(), "--test b".to_owned()],
            }
        );
        assert_eq!(
            counts.summary(),
            "3 passed, 1 failed, 1 ignored in 4 test binaries; failed: `--test a`, `--test b`"
        );
    }

    #[test]
    fn no_binary_at_all_says_so() {
        let mut counts = TestCounts::default();
        counts.read_line("error[E0425]: cannot find value `x` in this scope");
        assert_eq!(
            counts.summary(),
            "no test binary ran (did it build? see the output above)"
        );
    }
}
