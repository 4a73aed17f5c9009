//! Spawning the stack for the end-to-end suites: fresh state and ephemeral ports per test.

use testbed_stack::{Fixtures, Stack, StackConfig};

/// The stack from the repository's fixtures, with `persona` signed in headlessly.
pub async fn spawn_stack(persona: &str) -> Stack {
    spawn_stack_with(persona, |_| {}).await
}

/// The same, after `adjust` has changed the configuration.
pub async fn spawn_stack_with(persona: &str, adjust: impl FnOnce(&mut StackConfig)) -> Stack {
    let fixtures = Fixtures::embedded().expect("the repository's fixtures are valid");
    let mut config = StackConfig::ephemeral(fixtures, Some(persona));
    adjust(&mut config);
    Stack::spawn(config).await.expect("the stack starts")
}
