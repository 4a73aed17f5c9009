//! The lock on the state machine that writes its durable changes to the store on release.

use std::ops::{Deref, DerefMut};
use std::sync::MutexGuard;

use super::Store;
use crate::flow::Flows;

/// The locked state machine. When it is released, the durable changes the transitions made are
/// drained and written to the store while the lock is still held, so the database sees them in
/// the order they happened. A write that fails is logged: the in-memory state stays
/// authoritative until the next restart.
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
            let mut message = error.to_string();
            let mut cause = std::error::Error::source(&error);
            while let Some(each) = cause {
                message.push_str(": ");
                message.push_str(&each.to_string());
                cause = each.source();
            }
            tracing::error!(
                error = %message,
                changes = changes.len(),
                "cannot write the durable state; it is kept in memory only"
            );
        }
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
