//! The consent API over remembered consents (DESC `/api/v1/user_consents`,
//! `DELETE /api/v1/clients/{client_id}/consents/{consent_id}`): list them and revoke one. Revoking
//! makes the next sign-in show the consent page again; tokens already issued stay valid (DOCS
//! managing-mcp-clients).

use scalekit_wire::{Constraint, FieldViolation, prefix};

use super::cimd::is_document_url;
use super::{DurableChange, Flows};
use crate::types::ClientId;

/// One remembered consent, as the list call shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentView {
    /// `usrcnst_…`.
    pub id: String,
    /// `usr_…`.
    pub user_id: String,
    /// The client (an `m2m_…` id, a configured id or a metadata document URL).
    pub client_id: String,
    /// `res_…`.
    pub resource_id: String,
    /// The approved scopes.
    pub scopes: Vec<String>,
    /// Unix seconds of the first approval.
    pub created_at: u64,
}

/// Why a revocation was refused (Scalekit's gateway error at the HTTP edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeConsentError {
    /// The client id breaks `RevokeUserConsent`'s `m2m_` rule: 400 / INVALID_ARGUMENT with a
    /// field violation on `client_id`.
    #[error("{message}")]
    InvalidArgument {
        message: String,
        violations: Vec<FieldViolation>,
    },
    /// No consent with this id for this client: 404 / NOT_FOUND.
    #[error("{0}")]
    NotFound(String),
}

impl Flows {
    /// Remembered consents, filtered by user and client when given, oldest first.
    pub fn list_consents(
        &self,
        user_id: Option<&str>,
        client_id: Option<&str>,
    ) -> Vec<ConsentView> {
        let mut views: Vec<ConsentView> = self
            .remembered_consents
            .iter()
            .filter(|((user, client, _), _)| {
                user_id.is_none_or(|wanted| user.as_str() == wanted)
                    && client_id.is_none_or(|wanted| client.as_str() == wanted)
            })
            .map(|((user, client, resource), consent)| ConsentView {
                id: consent.id.clone(),
                user_id: user.to_string(),
                client_id: client.to_string(),
                resource_id: resource.to_string(),
                scopes: consent.scopes.as_slice().to_vec(),
                created_at: consent.created_at,
            })
            .collect();
        views
            .sort_by(|left, right| (left.created_at, &left.id).cmp(&(right.created_at, &right.id)));
        views
    }

    /// Forgets one remembered consent of `client_id`. Scalekit's validator wants an `m2m_…`
    /// client id; the emulator also accepts its configured clients' ids and metadata document
    /// URLs (which have no `m2m_…` form), since they stand for clients Scalekit would know.
    pub fn revoke_consent(
        &mut self,
        client_id: &str,
        consent_id: &str,
    ) -> Result<(), RevokeConsentError> {
        let configured = self
            .clients
            .get(&ClientId::new(client_id))
            .is_some_and(|client| !client.dynamic);
        if !client_id.starts_with(prefix::MCP_CLIENT) && !configured && !is_document_url(client_id)
        {
            return Err(RevokeConsentError::InvalidArgument {
                message: "invalid client_id".to_owned(),
                violations: vec![FieldViolation::new(
                    "client_id",
                    Constraint::StringPrefix,
                    format!("client_id must start with {}", prefix::MCP_CLIENT),
                )],
            });
        }
        let key = self
            .remembered_consents
            .iter()
            .find(|((_, client, _), consent)| {
                client.as_str() == client_id && consent.id == consent_id
            })
            .map(|(key, _)| key.clone())
            .ok_or_else(|| {
                RevokeConsentError::NotFound(format!(
                    "consent {consent_id} not found for client {client_id}"
                ))
            })?;
        self.remembered_consents.remove(&key);
        self.record(DurableChange::ConsentRevoked {
            consent_id: consent_id.to_owned(),
        });
        Ok(())
    }
}
