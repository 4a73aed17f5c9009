//! The lock on the state machine that writes its durable changes to the store on release, and
//! loads the grant a refresh or a revocation presents from the store before the transition.

use std::ops::{Deref, DerefMut};
use std::sync::MutexGuard;

use super::Store;
use crate::flow::{Flows, IssuedGrant, RefreshRequest, TokenError};
use crate::ids::IdGenerator;

/// The locked state machine. When it is released, the durable changes the transitions made are
/// drained and written to the store while the lock is still held, so the database sees them in
/// the order they happened; then, when grants live in the store (`Flows::evict_grants`, set at
/// start), the grants and refresh tokens held are trimmed (`Flows::trim_grants`). A write that
/// fails is logged; what it held is lost once evicted (a full disk: the emulator keeps serving,
/// the grants of those requests do not survive a restart or an eviction).
///
/// [`FlowsGuard::refresh`] and [`FlowsGuard::revoke`] shadow the state machine's methods of the
/// same name: they load the presented refresh token and its grant from the store first.
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
    /// [`Flows::refresh`], with the presented token's grant loaded from the store first.
    pub fn refresh(
        &mut self,
        request: RefreshRequest,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<IssuedGrant, TokenError> {
        self.load_grant_of(&request.refresh_token);
        self.flows.refresh(request, now, ids)
    }

    /// [`Flows::revoke`], with the presented token's grant loaded from the store first.
    pub fn revoke(
        &mut self,
        client_id: &str,
        secret: Option<&str>,
        token: &str,
    ) -> Result<(), TokenError> {
        self.load_grant_of(token);
        self.flows.revoke(client_id, secret, token)
    }

    /// Loads the refresh token `token` and its grant when grants live in the store and the token
    /// is not held yet. A read that fails is logged and the token treated as unknown.
    fn load_grant_of(&mut self, token: &str) {
        let Some(store) = self.store else {
            return;
        };
        if !self.flows.grants_in_store() || self.flows.holds_refresh_token(token) {
            return;
        }
        match store.grant_of_refresh_token(token) {
            Ok(Some((grant, token))) => self.flows.import_grant(grant, vec![token]),
            Ok(None) => {}
            Err(error) => tracing::error!(
                error = %error_chain(&error),
                "cannot read a refresh token's grant from the state database"
            ),
        }
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
