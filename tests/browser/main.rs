//! Browser: a person in Chromium signs in through Your App and decides on the emulator's consent
//! page, driven over WebDriver (fantoccini → Debian's chromedriver on a free loopback port).
//!
//! The tests run whenever chromedriver and Chromium exist (`$CHROMEDRIVER` and `$CHROMIUM`, else
//! `/usr/bin/chromedriver` and `/usr/bin/chromium`); without them they say why and pass, except
//! under `CI=true`, where they fail (`.ci/run` installs `chromium` and `chromium-driver`). Every
//! run saves what a person sees under `target/browser/` (`login.png`, `consent.png`,
//! `error.png`); a failing test leaves a screenshot and the page source under
//! `target/browser/failures/`.
//!
//! The driver's browser user agent (`mcp_driver::browser`, which also starts chromedriver for
//! these tests) is tested here too: the conformance runner with `browser: true` over flow
//! scenarios, and the `mcp-driver` binary with `--browser` (its pages under
//! `target/browser/driver-*/`).

#[path = "../support/mod.rs"]
#[allow(
    dead_code,
    reason = "shared with the other suites; this one needs only spawn_stack_with"
)]
mod support;

mod app_check;
mod app_check_sdk;
mod conformance;
mod driver;
mod flow;
mod harness;
mod inspector;
