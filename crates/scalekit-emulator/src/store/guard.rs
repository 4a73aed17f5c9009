//! The lock on the state machine that writes its durable changes to the store on release, and
//! presents the refresh token of a refresh or a revocation, its grant read from the store first.

use std::ops::{Deref, DerefMut};
use std::sync::MutexGuard;

use super::Store;
use crate::flow::{Flows, PresentedToken};
use crate::types::RefreshToken;

/// The locked state machine. When it is released, the durable changes the transitions made are
/// drained and written to the store while the lock is still held, so the database sees them in
/// the order they happened and an answer is sent only once its changes are stored; then, when
/// grants live in the store (`Flows::evict_grants`, set at start), the grants and refresh tokens
/// held are trimmed (`Flows::trim_grants`). A write that fails is logged; what it held is lost
/// once evicted (a full disk: the emulator keeps serving, the grants of those requests do not
/// survive a restart or an eviction).
///
/// A refresh or a revocation takes a token presented through [`FlowsGuard::present_refresh_token`],
/// which reads its grant from the store when the state machine does not hold it. Nothing of the
/// guard shadows the state machine: `Flows::refresh` and `Flows::revoke` reached through
/// `DerefMut` take the same presented token, which only `Flows::present` (when nothing is to be
/// read) and `Flows::presented_from_store` make, so the store read cannot be skipped by mistake.
pub struct FlowsGuard<'a> {
    flows: MutexGuard<'a, Flows>,
    store: Option<&'a Store>,
}

impl<'a> FlowsGuard<'a> {
    /// Wraps a locked state machine; with no store, it is a plain guard.
    pub fn new(flows: MutexGuard<'a, Flows>, store: Option<&'a Store>) -> FlowsGuard<'a> {
        FlowsGuard { flows, store }
    }
}

impl FlowsGuard<'_> {
    /// Presents `token` for `Flows::refresh` or `Flows::revoke`, with the token and its grant
    /// read from the store first when grants live there and the token is not held. A read that
    /// fails is logged and the token treated as unknown.
    pub fn present_refresh_token(&mut self, token: RefreshToken) -> PresentedToken {
        let lookup = match self.flows.present(token) {
            Ok(presented) => return presented,
            Err(lookup) => lookup,
        };
        let stored = match self.store {
            None => None,
            Some(store) => store
                .grant_of_refresh_token(lookup.token())
                .unwrap_or_else(|error| {
                    tracing::error!(
                        error = %error_chain(&error),
                        "cannot read a refresh token's grant from the state database"
                    );
                    None
                }),
        };
        self.flows.presented_from_store(lookup, stored)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(each) = cause {
        message.push_str(": ");
        message.push_str(&each.to_string());
        cause = each.source();
    }
    message
}

impl Deref for FlowsGuard<'_> {
    type Target = Flows;

    fn deref(&self) -> &Flows {
        &self.flows
    }
}

impl DerefMut for FlowsGuard<'_> {
    fn deref_mut(&mut self) -> &mut Flows {
        &mut self.flows
    }
}

impl Drop for FlowsGuard<'_> {
    fn drop(&mut self) {
        let Some(store) = self.store else {
            return;
        };
        let changes = self.flows.take_durable_changes();
        if let Err(error) = store.apply(&changes) {
            tracing::error!(
                error = %error_chain(&error),
                changes = changes.len(),
                "cannot write the durable state"
            );
        }
        self.flows.trim_grants();
    }
}

impl std::fmt::Debug for FlowsGuard<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FlowsGuard")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}
