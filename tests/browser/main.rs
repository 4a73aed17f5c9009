//! Browser: a person in Chromium signs in through Your App and decides on the emulator's consent
//! page, driven over WebDriver (fantoccini → Debian's chromedriver on a free loopback port).
//!
//! The tests run whenever `/usr/bin/chromedriver` exists; without it they say why and pass, except
//! under `CI=true`, where they fail (`.ci/run` installs `chromium` and `chromium-driver`). Every
//! run saves what a person sees under `target/browser/` (`login.png`, `consent.png`,
//! `error.png`); a failing test leaves a screenshot and the page source under
//! `target/browser/failures/`.

#[path = "../support/mod.rs"]
#[allow(
    dead_code,
    reason = "shared with the other suites; this one needs only spawn_stack_with"
)]
mod support;

mod flow;
mod harness;
