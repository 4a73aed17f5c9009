//! Read-only views of the state machine for the emulator's control API
//! (`GET /_emulator/login-requests`): what is in progress, without any credential.

use super::Flows;
use crate::types::{ClientId, ConnectionId, LoginRequestId, LoginState, ResourceId};

/// A login request waiting for "Your App": the user sign-in that `/oauth/authorize` started and
/// the partner callback has not finished yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLoginRequestView {
    /// `lri_…`.
    pub login_request_id: LoginRequestId,
    /// `conn_…` the user signs in through.
    pub connection_id: ConnectionId,
    /// The MCP client that asked.
    pub client_id: ClientId,
    /// `res_…` the authorization is for.
    pub resource_id: ResourceId,
    /// The Scalekit-minted `state` "Your App" must send back unchanged. It names the login
    /// request; it is not a credential (the user POST needs the management token).
    pub state: LoginState,
    /// Unix seconds; the request is refused from then on.
    pub expires_at: u64,
    /// Whether "Your App" has posted the user already.
    pub user_submitted: bool,
}

impl Flows {
    /// Every login request held, expired or not (the edge filters by its clock), oldest expiry
    /// first, then by id, so that the listing is stable.
    pub fn pending_login_requests(&self) -> Vec<PendingLoginRequestView> {
        let mut views: Vec<PendingLoginRequestView> = self
            .login_requests
            .iter()
            .map(|(id, request)| PendingLoginRequestView {
                login_request_id: id.clone(),
                connection_id: request.connection.clone(),
                client_id: request.authorization.client.clone(),
                resource_id: request.authorization.resource.clone(),
                state: request.state.clone(),
                expires_at: request.expires_at,
                user_submitted: request.submitted.is_some(),
            })
            .collect();
        views.sort_by(|left, right| {
            (left.expires_at, &left.login_request_id)
                .cmp(&(right.expires_at, &right.login_request_id))
        });
        views
    }
}
