//! What of the state machine outlives a restart: the durable records as plain data, the changes
//! transitions make to them (an outbox the edge drains after each transition and writes to the
//! store), and the snapshot the state machine is rebuilt from at start.
//!
//! Durable: DCR clients, agents created through the control API, users (those of trusted
//! identity providers too), organizations, remembered consents, grants and refresh tokens (with
//! their rotation state), and the identity assertions redeemed until their `exp`. Login requests, consent pages and codes live for minutes and stay
//! in memory only: a restart abandons the sign-ins in progress, as a browser would see after a
//! Scalekit deploy.

use std::collections::HashMap;

use scalekit_wire::{Secret, UserClaims};
use serde::{Deserialize, Serialize};

use super::{
    Client, Flows, GrantRecord, PendingAuthorization, RefreshRecord, RememberedConsent, SignIn,
    StoredAgent, StoredAssertion, StoredIdpUser,
};
use crate::types::{
    ClientId, ClientState, ConnectionId, OrganizationId, PkceChallenge, RedirectUri, RefreshToken,
    ResourceId, ScopeSet, SessionId, UserId,
};

/// The most grants held in memory while grants live in the store (see [`Flows::trim_grants`]).
pub const RESIDENT_GRANTS: usize = 256;

/// The most refresh tokens held in memory while grants live in the store.
pub const RESIDENT_REFRESH_TOKENS: usize = 1024;

/// A client registered through DCR (configured clients come from the configuration each start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClient {
    /// `m2m_…`.
    pub client_id: String,
    /// `client_name`.
    pub client_name: Option<String>,
    /// The registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The `res_…` the client belongs to.
    pub resource: String,
}

/// The `usr_…` minted for a (connection, posted `sub`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// `conn_…`.
    pub connection: String,
    /// The `sub` "Your App" posted.
    pub external_sub: String,
    /// `usr_…`.
    pub user: String,
}

/// The `org_…` minted for a (connection, `organization_external_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrganization {
    /// `conn_…`.
    pub connection: String,
    /// The `organization_external_id` "Your App" posted.
    pub external_id: String,
    /// `org_…`.
    pub organization: String,
}

/// Scopes a user approved for a client and resource on the consent page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConsent {
    /// `usrcnst_…`.
    pub consent_id: String,
    /// `usr_…`.
    pub user: String,
    /// The client.
    pub client: String,
    /// `res_…`.
    pub resource: String,
    /// The approved scopes.
    pub scopes: Vec<String>,
    /// Unix seconds of the first approval.
    pub created_at: u64,
}

/// A grant (the family of refresh tokens of one sign-in with `offline_access`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredGrant {
    /// `grant_…`.
    pub grant_id: String,
    /// The sign-in the grant was made for.
    pub sign_in: StoredSignIn,
}

/// A completed sign-in as plain data (kept as JSON in the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSignIn {
    /// The client.
    pub client: String,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// The client's `state`.
    pub client_state: Option<String>,
    /// The OIDC `nonce`.
    pub nonce: Option<String>,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// The S256 `code_challenge`.
    pub challenge: String,
    /// `res_…`.
    pub resource: String,
    /// `conn_…`.
    pub connection: String,
    /// `usr_…`.
    pub user: String,
    /// The posted `sub`.
    pub external_sub: String,
    /// Everything "Your App" posted.
    pub claims: UserClaims,
    /// `org_…`.
    pub organization: Option<String>,
    /// `ses_…`.
    pub session: String,
    /// When the user signed in (unix seconds).
    pub auth_time: u64,
}

/// One refresh token of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRefreshToken {
    /// The token itself.
    pub token: Secret,
    /// `grant_…`.
    pub grant_id: String,
    /// The client it was issued to.
    pub client: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// Already exchanged for a newer token: presenting it again revokes the grant.
    pub rotated: bool,
}

/// A change a transition made to the durable state, in the order it was made.
#[derive(Debug, Clone, PartialEq)]
pub enum DurableChange {
    /// A client registered through DCR.
    ClientRegistered(StoredClient),
    /// An agent was created through the control API.
    AgentCreated(StoredAgent),
    /// An agent created through the control API was deleted.
    AgentDeleted {
        /// `m2m_…`.
        client_id: String,
    },
    /// A user was minted for a new (connection, `sub`).
    UserCreated(StoredUser),
    /// A user was minted for a new (trusted identity provider, assertion `sub`).
    IdpUserCreated(StoredIdpUser),
    /// An identity assertion was redeemed: refused again until its `exp` (swept by
    /// [`DurableChange::Expired`] after that).
    AssertionRedeemed(StoredAssertion),
    /// An organization was minted for a new (connection, external id).
    OrganizationCreated(StoredOrganization),
    /// A consent was approved (replaces an earlier one for the same user, client and resource).
    ConsentRemembered(StoredConsent),
    /// A remembered consent was revoked through the consent API.
    ConsentRevoked {
        /// `usrcnst_…`.
        consent_id: String,
    },
    /// A grant was made (always followed by its first refresh token). Boxed: a sign-in is large.
    GrantCreated(Box<StoredGrant>),
    /// A grant and all its refresh tokens were revoked.
    GrantRevoked {
        /// `grant_…`.
        grant_id: String,
    },
    /// A refresh token was issued.
    RefreshTokenIssued(StoredRefreshToken),
    /// A refresh token was exchanged for a newer one.
    RefreshTokenRotated {
        /// The rotated-out token.
        token: Secret,
    },
    /// An expired refresh token was presented and dropped (recorded only when grants live in
    /// the store, so that the next presentation finds nothing there either).
    RefreshTokenDropped {
        /// The expired token.
        token: Secret,
    },
    /// The sweep ran: refresh tokens expired at `now` are gone, grants left without one, and
    /// redeemed assertions whose `exp` has passed.
    Expired {
        /// Unix seconds.
        now: u64,
    },
    /// Everything durable was dropped (the control API's reset).
    Reset,
}

/// Everything durable, as loaded from the store at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurableState {
    /// DCR clients.
    pub clients: Vec<StoredClient>,
    /// Agents created through the control API.
    pub agents: Vec<StoredAgent>,
    /// Users.
    pub users: Vec<StoredUser>,
    /// Organizations.
    pub organizations: Vec<StoredOrganization>,
    /// Remembered consents.
    pub consents: Vec<StoredConsent>,
    /// Grants.
    pub grants: Vec<StoredGrant>,
    /// Refresh tokens, rotated ones included.
    pub refresh_tokens: Vec<StoredRefreshToken>,
    /// Users of trusted identity providers (cross-app access).
    pub idp_users: Vec<StoredIdpUser>,
    /// Identity assertions redeemed and not yet expired.
    pub assertions: Vec<StoredAssertion>,
}

impl Flows {
    /// From now on, transitions record their durable changes for [`Flows::take_durable_changes`].
    /// Off by default, so that a state machine nobody drains does not grow.
    pub fn record_durable_changes(&mut self) {
        self.durable_log.get_or_insert_with(Vec::new);
    }

    /// The durable changes recorded since the last call, oldest first.
    pub fn take_durable_changes(&mut self) -> Vec<DurableChange> {
        self.durable_log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Replaces every flow, client registration, user, consent, grant and refresh token with the
    /// state `fresh` starts from, keeping the recording of durable changes as it was and recording
    /// the reset itself.
    pub fn reset_to(&mut self, fresh: Flows) {
        let recording = self.durable_log.is_some();
        let grants_in_store = self.grants_in_store;
        *self = fresh;
        self.grants_in_store = grants_in_store;
        if recording {
            self.record_durable_changes();
            self.record(DurableChange::Reset);
        }
    }

    /// Drops every grant and refresh token held in memory, and from now on treats them as living
    /// in the store: the edge loads the grant a request presents a refresh token of
    /// ([`Flows::present`], [`Flows::presented_from_store`]) before the transition and, once the transition's changes are
    /// written, calls [`Flows::trim_grants`]. Memory then stays flat however many grants are made
    /// (RSS in docs/performance.md), and a revocation of a grant not held is still recorded.
    /// Without a store nothing calls this and everything stays in memory.
    ///
    /// [`Flows::export_durable`] then omits the grants and refresh tokens the store holds.
    pub fn evict_grants(&mut self) {
        self.grants_in_store = true;
        // A map that grew (a load at start, a large import) gives its memory back.
        if self.grants.capacity() > RESIDENT_GRANTS {
            self.grants = HashMap::new();
        } else {
            self.grants.clear();
        }
        if self.refresh_tokens.capacity() > RESIDENT_REFRESH_TOKENS {
            self.refresh_tokens = HashMap::new();
        } else {
            self.refresh_tokens.clear();
        }
    }

    /// When grants live in the store: evicts them all once more than [`RESIDENT_GRANTS`] grants
    /// or [`RESIDENT_REFRESH_TOKENS`] refresh tokens are held, so that the grants in use now (a
    /// client refreshing, a test suite's recent sign-ins) are served from memory while the
    /// memory stays bounded. What is held is always what the store holds too: every transition
    /// that changes it records the change.
    pub fn trim_grants(&mut self) {
        if self.grants_in_store
            && (self.grants.len() > RESIDENT_GRANTS
                || self.refresh_tokens.len() > RESIDENT_REFRESH_TOKENS)
        {
            self.evict_grants();
        }
    }

    /// Whether grants and refresh tokens live in the store (see [`Flows::evict_grants`]).
    pub fn grants_in_store(&self) -> bool {
        self.grants_in_store
    }

    pub(super) fn record(&mut self, change: DurableChange) {
        if let Some(log) = &mut self.durable_log {
            log.push(change);
        }
    }

    /// The durable state as plain data (what the store holds after every change is applied).
    pub fn export_durable(&self) -> DurableState {
        let mut state = DurableState {
            clients: self
                .clients
                .values()
                .filter(|client| client.dynamic)
                .map(|client| StoredClient {
                    client_id: client.id.to_string(),
                    client_name: client.name.clone(),
                    redirect_uris: client.redirect_uris.clone(),
                    resource: client.resource.to_string(),
                })
                .collect(),
            agents: self.stored_agents(),
            users: self
                .users
                .iter()
                .map(|((connection, external_sub), user)| StoredUser {
                    connection: connection.to_string(),
                    external_sub: external_sub.clone(),
                    user: user.to_string(),
                })
                .collect(),
            organizations: self
                .organizations
                .iter()
                .map(
                    |((connection, external_id), organization)| StoredOrganization {
                        connection: connection.to_string(),
                        external_id: external_id.clone(),
                        organization: organization.to_string(),
                    },
                )
                .collect(),
            consents: self
                .remembered_consents
                .iter()
                .map(|((user, client, resource), consent)| StoredConsent {
                    consent_id: consent.id.clone(),
                    user: user.to_string(),
                    client: client.to_string(),
                    resource: resource.to_string(),
                    scopes: consent.scopes.as_slice().to_vec(),
                    created_at: consent.created_at,
                })
                .collect(),
            grants: self
                .grants
                .iter()
                .map(|(grant_id, grant)| StoredGrant {
                    grant_id: grant_id.clone(),
                    sign_in: StoredSignIn::from(&grant.sign_in),
                })
                .collect(),
            refresh_tokens: self
                .refresh_tokens
                .iter()
                .map(|(token, record)| StoredRefreshToken {
                    token: token.as_secret().clone(),
                    grant_id: record.grant.clone(),
                    client: record.client.to_string(),
                    expires_at: record.expires_at,
                    rotated: record.rotated,
                })
                .collect(),
            idp_users: Vec::new(),
            assertions: Vec::new(),
        };
        (state.assertions, state.idp_users) = self.export_cross_app();
        // Sorted, so that two exports of the same state compare equal.
        state
            .clients
            .sort_by(|left, right| left.client_id.cmp(&right.client_id));
        state.agents.sort_by(|left, right| {
            (left.created_at, &left.client_id).cmp(&(right.created_at, &right.client_id))
        });
        state
            .users
            .sort_by(|left, right| left.user.cmp(&right.user));
        state
            .organizations
            .sort_by(|left, right| left.organization.cmp(&right.organization));
        state.consents.sort_by(|left, right| {
            (&left.user, &left.client, &left.resource).cmp(&(
                &right.user,
                &right.client,
                &right.resource,
            ))
        });
        state
            .grants
            .sort_by(|left, right| left.grant_id.cmp(&right.grant_id));
        state
            .refresh_tokens
            .sort_by(|left, right| left.token.expose().cmp(right.token.expose()));
        state
    }

    /// Adds a loaded durable state to a fresh state machine. Configured clients keep their
    /// configuration; refresh tokens whose grant is missing are dropped.
    pub fn import_durable(&mut self, state: DurableState) {
        for client in state.clients {
            let id = ClientId::new(client.client_id);
            if self.clients.contains_key(&id) {
                continue;
            }
            self.clients.insert(
                id.clone(),
                Client {
                    id,
                    name: client.client_name,
                    redirect_uris: client.redirect_uris,
                    resource: ResourceId::new(client.resource),
                    secret: None,
                    dynamic: true,
                },
            );
        }
        self.import_agents(state.agents);
        for user in state.users {
            self.users.insert(
                (ConnectionId::new(user.connection), user.external_sub),
                UserId::new(user.user),
            );
        }
        for organization in state.organizations {
            self.organizations.insert(
                (
                    ConnectionId::new(organization.connection),
                    organization.external_id,
                ),
                OrganizationId::new(organization.organization),
            );
        }
        for consent in state.consents {
            self.remembered_consents.insert(
                (
                    UserId::new(consent.user),
                    ClientId::new(consent.client),
                    ResourceId::new(consent.resource),
                ),
                RememberedConsent {
                    id: consent.consent_id,
                    scopes: consent.scopes.iter().map(String::as_str).collect(),
                    created_at: consent.created_at,
                },
            );
        }
        self.import_cross_app(state.assertions, state.idp_users);
        self.import_grants_and_tokens(state.grants, state.refresh_tokens);
    }

    pub(super) fn import_grants_and_tokens(
        &mut self,
        grants: Vec<StoredGrant>,
        refresh_tokens: Vec<StoredRefreshToken>,
    ) {
        for grant in grants {
            // Held already (another of its refresh tokens was loaded): keep its token list.
            if self.grants.contains_key(&grant.grant_id) {
                continue;
            }
            // A stored redirect URI that no longer parses (a hand-edited database) drops the grant.
            let Some(sign_in) = grant.sign_in.into_sign_in() else {
                continue;
            };
            self.grants.insert(
                grant.grant_id,
                GrantRecord {
                    sign_in,
                    refresh_tokens: Vec::new(),
                },
            );
        }
        for token in refresh_tokens {
            let Some(grant) = self.grants.get_mut(&token.grant_id) else {
                continue;
            };
            let token_value = RefreshToken::from(token.token);
            grant.refresh_tokens.push(token_value.clone());
            self.refresh_tokens.insert(
                token_value,
                RefreshRecord {
                    grant: token.grant_id,
                    client: ClientId::new(token.client),
                    expires_at: token.expires_at,
                    rotated: token.rotated,
                },
            );
        }
    }
}

impl From<&SignIn> for StoredSignIn {
    fn from(sign_in: &SignIn) -> Self {
        let authorization = &sign_in.authorization;
        StoredSignIn {
            client: authorization.client.to_string(),
            redirect_uri: authorization.redirect_uri.as_str().to_owned(),
            client_state: authorization.client_state.as_ref().map(ToString::to_string),
            nonce: authorization.nonce.clone(),
            scopes: authorization.scopes.as_slice().to_vec(),
            challenge: authorization.challenge.to_string(),
            resource: authorization.resource.to_string(),
            connection: sign_in.connection.to_string(),
            user: sign_in.user.to_string(),
            external_sub: sign_in.external_sub.clone(),
            claims: sign_in.claims.clone(),
            organization: sign_in.organization.as_ref().map(ToString::to_string),
            session: sign_in.session.to_string(),
            auth_time: sign_in.auth_time,
        }
    }
}

impl StoredSignIn {
    fn into_sign_in(self) -> Option<SignIn> {
        let redirect_uri = RedirectUri::parse(&self.redirect_uri)?;
        Some(SignIn {
            authorization: PendingAuthorization {
                client: ClientId::new(self.client),
                // Only the consent page shows it, and a stored grant is past consent.
                client_name: None,
                redirect_uri,
                client_state: self.client_state.map(ClientState::new),
                nonce: self.nonce,
                scopes: self.scopes.iter().map(String::as_str).collect::<ScopeSet>(),
                challenge: PkceChallenge::new(self.challenge),
                resource: ResourceId::new(self.resource),
            },
            connection: ConnectionId::new(self.connection),
            user: UserId::new(self.user),
            external_sub: self.external_sub,
            claims: self.claims,
            organization: self.organization.map(OrganizationId::new),
            session: SessionId::new(self.session),
            auth_time: self.auth_time,
        })
    }
}
