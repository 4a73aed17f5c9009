//! The state that survives restarts, in SQLite (`{state_dir}/emulator.sqlite3`): the signing keys
//! (the key ring, in order) and the durable records of the state machine
//! ([`crate::flow::DurableState`]).
//!
//! The state machine does no IO: its transitions record [`DurableChange`]s, and the edge drains
//! them after each transition, under the same lock, into [`Store::apply`] (see [`FlowsGuard`]).
//! At start, [`Store::load`] gives the snapshot `Flows::import_durable` rebuilds from.
//!
//! The key ring is not part of `Flows`: its rare changes are written at once, in their own
//! transaction ([`Store::save_key_ring`]), by the control API that makes them.

mod guard;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};
use scalekit_wire::Secret;

pub use guard::FlowsGuard;

use crate::flow::{
    DurableChange, DurableState, StoredAgent, StoredAssertion, StoredClient, StoredConsent,
    StoredGrant, StoredIdpUser, StoredOrganization, StoredRefreshToken, StoredSignIn, StoredUser,
};
use crate::keys::Signer;
use crate::types::RefreshToken;

/// The database file inside the state directory.
pub const DATABASE_FILE: &str = "emulator.sqlite3";

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory could not be created.
    #[error("cannot create the state directory {path}")]
    CreateDirectory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused an operation.
    #[error("state database {path}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer emulator.
    #[error(
        "state database {path} has schema version {found}, newer than this emulator's {supported}; \
         use a newer emulator or another --state-dir"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A stored value is not what this emulator wrote.
    #[error("state database {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// One key of the stored key ring.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSigningKey {
    /// `snk_…`; `None` for the key a version 3 database held, until the ring is saved again.
    pub kid: Option<String>,
    /// The private key, PKCS#8 PEM.
    pub pem: Secret,
}

/// An open state database.
pub struct Store {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating when needed) `{state_dir}/emulator.sqlite3` and brings its schema up to
    /// date. A schema newer than this emulator's is an error, never silently downgraded.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::CreateDirectory {
            path: state_dir.to_owned(),
            source,
        })?;
        let path = state_dir.join(DATABASE_FILE);
        let connection = Connection::open(&path).map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        restrict_permissions(&path);
        Self::with_connection(path, connection)
    }

    /// A database in memory (for tests of the store itself).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let connection = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        Self::with_connection(path, connection)
    }

    fn with_connection(path: PathBuf, mut connection: Connection) -> Result<Store, StoreError> {
        schema::migrate(&mut connection, &path)?;
        // Every statement `apply` and the loads on use run stays prepared (rusqlite keeps 16).
        connection.set_prepared_statement_cache_capacity(32);
        Ok(Store {
            path,
            connection: Mutex::new(connection),
        })
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored key ring in JWKS order (the signing key first); empty when none was saved.
    pub fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        query(
            &self.connection(),
            "SELECT kid, pem FROM signing_keys ORDER BY position",
            |row| {
                Ok(StoredSigningKey {
                    kid: row.get(0)?,
                    pem: Secret::new(row.get::<_, String>(1)?),
                })
            },
        )
        .map_err(self.sqlite())
    }

    /// Replaces the stored key ring with `keys` (`kid` and PEM), in this order, in one
    /// transaction.
    pub fn save_signing_keys(&self, keys: &[(&str, &Secret)]) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(self.sqlite())?;
        transaction
            .execute("DELETE FROM signing_keys", [])
            .map_err(self.sqlite())?;
        for (position, (kid, pem)) in keys.iter().enumerate() {
            transaction
                .execute(
                    "INSERT INTO signing_keys (position, kid, pem) VALUES (?1, ?2, ?3)",
                    params![
                        i64::try_from(position).unwrap_or(i64::MAX),
                        kid,
                        pem.expose()
                    ],
                )
                .map_err(self.sqlite())?;
        }
        transaction.commit().map_err(self.sqlite())
    }

    /// The stored signing key of the emulated identity provider `idp`, if one was saved.
    pub fn idp_signing_key(&self, idp: &str) -> Result<Option<StoredSigningKey>, StoreError> {
        self.connection()
            .query_row(
                "SELECT kid, pem FROM idp_signing_keys WHERE idp_id = ?1",
                params![idp],
                |row| {
                    Ok(StoredSigningKey {
                        kid: Some(row.get(0)?),
                        pem: Secret::new(row.get::<_, String>(1)?),
                    })
                },
            )
            .optional()
            .map_err(self.sqlite())
    }

    /// Saves the signing key of the emulated identity provider `idp`, replacing a stored one.
    pub fn save_idp_signing_key(&self, idp: &str, key: &Signer) -> Result<(), StoreError> {
        self.connection()
            .execute(
                "INSERT OR REPLACE INTO idp_signing_keys (idp_id, kid, pem) VALUES (?1, ?2, ?3)",
                params![idp, key.kid(), key.private_key_pem().expose()],
            )
            .map(|_| ())
            .map_err(self.sqlite())
    }

    /// Saves a key ring (signing key first), replacing the stored one.
    pub fn save_key_ring(&self, keys: &[Arc<Signer>]) -> Result<(), StoreError> {
        let rows: Vec<(&str, &Secret)> = keys
            .iter()
            .map(|key| (key.kid(), key.private_key_pem()))
            .collect();
        self.save_signing_keys(&rows)
    }

    /// Everything durable, for `Flows::import_durable`.
    pub fn load(&self) -> Result<DurableState, StoreError> {
        self.load_with(true)
    }

    /// Everything durable but grants and refresh tokens, which stay in the store and are loaded
    /// on use ([`Store::grant_of_refresh_token`], `Flows::evict_grants`): the start then costs
    /// the same however many grants were made.
    pub fn load_resident(&self) -> Result<DurableState, StoreError> {
        self.load_with(false)
    }

    /// The refresh token `token` and its grant, if the store holds them.
    pub fn grant_of_refresh_token(
        &self,
        token: &RefreshToken,
    ) -> Result<Option<(StoredGrant, StoredRefreshToken)>, StoreError> {
        let connection = self.connection();
        let row = connection
            .prepare_cached(
                "SELECT refresh_tokens.grant_id, client_id, expires_at, rotated, sign_in
                 FROM refresh_tokens JOIN grants USING (grant_id) WHERE token = ?1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![token.expose()], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, i64>(2)?,
                            row.get::<_, bool>(3)?,
                            row.get::<_, String>(4)?,
                        ))
                    })
                    .optional()
            })
            .map_err(self.sqlite())?;
        let Some((grant_id, client, expires_at, rotated, sign_in)) = row else {
            return Ok(None);
        };
        let sign_in: StoredSignIn =
            serde_json::from_str(&sign_in).map_err(|error| StoreError::Corrupt {
                path: self.path.clone(),
                message: format!("grant {grant_id} sign_in: {error}"),
            })?;
        let token = StoredRefreshToken {
            token: token.as_secret().clone(),
            grant_id: grant_id.clone(),
            client,
            expires_at: from_sql_seconds(expires_at),
            rotated,
        };
        Ok(Some((StoredGrant { grant_id, sign_in }, token)))
    }

    fn load_with(&self, grants_too: bool) -> Result<DurableState, StoreError> {
        let connection = self.connection();
        let sqlite = self.sqlite();
        let corrupt = |message: String| StoreError::Corrupt {
            path: self.path.clone(),
            message,
        };

        let clients = query(
            &connection,
            "SELECT client_id, client_name, redirect_uris, resource_id FROM clients
             ORDER BY client_id",
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            },
        )
        .map_err(&sqlite)?
        .into_iter()
        .map(|(client_id, client_name, redirect_uris, resource)| {
            let redirect_uris: Vec<String> = serde_json::from_str(&redirect_uris)
                .map_err(|error| corrupt(format!("client {client_id} redirect_uris: {error}")))?;
            Ok(StoredClient {
                client_id,
                client_name,
                redirect_uris,
                resource,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;

        let agents = query(
            &connection,
            "SELECT client_id, resource_id, name, scopes, token_lifetime_secs, secret_sha256,
                    create_time
             FROM agents ORDER BY create_time, client_id",
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, i64>(6)?,
                ))
            },
        )
        .map_err(&sqlite)?
        .into_iter()
        .map(
            |(client_id, resource, name, scopes, lifetime, secret_sha256, create_time)| {
                let scopes: Vec<String> = serde_json::from_str(&scopes)
                    .map_err(|error| corrupt(format!("agent {client_id} scopes: {error}")))?;
                Ok(StoredAgent {
                    client_id,
                    name,
                    resource,
                    scopes,
                    token_lifetime_secs: from_sql_seconds(lifetime),
                    secret_sha256,
                    created_at: from_sql_seconds(create_time),
                })
            },
        )
        .collect::<Result<Vec<_>, StoreError>>()?;

        let users = query(
            &connection,
            "SELECT connection_id, external_sub, user_id FROM users ORDER BY user_id",
            |row| {
                Ok(StoredUser {
                    connection: row.get(0)?,
                    external_sub: row.get(1)?,
                    user: row.get(2)?,
                })
            },
        )
        .map_err(&sqlite)?;

        let organizations = query(
            &connection,
            "SELECT connection_id, external_id, organization_id FROM organizations
             ORDER BY organization_id",
            |row| {
                Ok(StoredOrganization {
                    connection: row.get(0)?,
                    external_id: row.get(1)?,
                    organization: row.get(2)?,
                })
            },
        )
        .map_err(&sqlite)?;

        let consents = query(
            &connection,
            "SELECT user_id, client_id, resource_id, scopes, consent_id, create_time FROM consents
             ORDER BY user_id, client_id, resource_id",
            |row| {
                Ok(StoredConsent {
                    consent_id: row.get(4)?,
                    user: row.get(0)?,
                    client: row.get(1)?,
                    resource: row.get(2)?,
                    scopes: row
                        .get::<_, String>(3)?
                        .split(' ')
                        .filter(|scope| !scope.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    created_at: from_sql_seconds(row.get(5)?),
                })
            },
        )
        .map_err(&sqlite)?;

        let idp_users = query(
            &connection,
            "SELECT idp_id, external_sub, user_id FROM idp_users ORDER BY user_id",
            |row| {
                Ok(StoredIdpUser {
                    idp: row.get(0)?,
                    external_sub: row.get(1)?,
                    user: row.get(2)?,
                })
            },
        )
        .map_err(&sqlite)?;

        // Bounded: each lives at most the longest accepted assertion lifetime.
        let assertions = query(
            &connection,
            "SELECT digest, expires_at FROM redeemed_assertions ORDER BY digest",
            |row| {
                Ok(StoredAssertion {
                    digest: row.get(0)?,
                    expires_at: from_sql_seconds(row.get(1)?),
                })
            },
        )
        .map_err(&sqlite)?;

        if !grants_too {
            return Ok(DurableState {
                clients,
                agents,
                users,
                organizations,
                consents,
                grants: Vec::new(),
                refresh_tokens: Vec::new(),
                idp_users,
                assertions,
            });
        }

        let grants = query(
            &connection,
            "SELECT grant_id, sign_in FROM grants ORDER BY grant_id",
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        )
        .map_err(&sqlite)?
        .into_iter()
        .map(|(grant_id, sign_in)| {
            let sign_in: StoredSignIn = serde_json::from_str(&sign_in)
                .map_err(|error| corrupt(format!("grant {grant_id} sign_in: {error}")))?;
            Ok(StoredGrant { grant_id, sign_in })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;

        let refresh_tokens = query(
            &connection,
            "SELECT token, grant_id, client_id, expires_at, rotated FROM refresh_tokens
             ORDER BY token",
            |row| {
                Ok(StoredRefreshToken {
                    token: Secret::new(row.get::<_, String>(0)?),
                    grant_id: row.get(1)?,
                    client: row.get(2)?,
                    expires_at: from_sql_seconds(row.get(3)?),
                    rotated: row.get(4)?,
                })
            },
        )
        .map_err(&sqlite)?;

        Ok(DurableState {
            clients,
            agents,
            users,
            organizations,
            consents,
            grants,
            refresh_tokens,
            idp_users,
            assertions,
        })
    }

    /// Writes durable changes, in order, in one transaction.
    pub fn apply(&self, changes: &[DurableChange]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(self.sqlite())?;
        for change in changes {
            apply_one(&transaction, change).map_err(|error| match error {
                ApplyError::Sqlite(source) => StoreError::Sqlite {
                    path: self.path.clone(),
                    source,
                },
                ApplyError::Json(error) => StoreError::Corrupt {
                    path: self.path.clone(),
                    message: error.to_string(),
                },
            })?;
        }
        transaction.commit().map_err(self.sqlite())
    }
}

enum ApplyError {
    Sqlite(rusqlite::Error),
    Json(serde_json::Error),
}

impl From<rusqlite::Error> for ApplyError {
    fn from(error: rusqlite::Error) -> Self {
        ApplyError::Sqlite(error)
    }
}

impl From<serde_json::Error> for ApplyError {
    fn from(error: serde_json::Error) -> Self {
        ApplyError::Json(error)
    }
}

fn apply_one(transaction: &Transaction<'_>, change: &DurableChange) -> Result<(), ApplyError> {
    match change {
        DurableChange::ClientRegistered(client) => {
            transaction
                .prepare_cached("INSERT OR REPLACE INTO clients (client_id, client_name, redirect_uris, resource_id)
                 VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![
                    client.client_id,
                    client.client_name,
                    serde_json::to_string(&client.redirect_uris)?,
                    client.resource
                ])?;
        }
        DurableChange::UserCreated(user) => {
            transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO users (connection_id, external_sub, user_id)
                 VALUES (?1, ?2, ?3)",
                )?
                .execute(params![user.connection, user.external_sub, user.user])?;
        }
        DurableChange::IdpUserCreated(user) => {
            transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO idp_users (idp_id, external_sub, user_id)
                     VALUES (?1, ?2, ?3)",
                )?
                .execute(params![user.idp, user.external_sub, user.user])?;
        }
        DurableChange::AssertionRedeemed(assertion) => {
            transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO redeemed_assertions (digest, expires_at)
                     VALUES (?1, ?2)",
                )?
                .execute(params![
                    assertion.digest,
                    to_sql_seconds(assertion.expires_at)
                ])?;
        }
        DurableChange::AgentCreated(agent) => {
            transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO agents (client_id, resource_id, name, scopes,
                     token_lifetime_secs, secret_sha256, create_time)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    agent.client_id,
                    agent.resource,
                    agent.name,
                    serde_json::to_string(&agent.scopes)?,
                    to_sql_seconds(agent.token_lifetime_secs),
                    agent.secret_sha256,
                    to_sql_seconds(agent.created_at)
                ])?;
        }
        DurableChange::AgentDeleted { client_id } => {
            transaction
                .prepare_cached("DELETE FROM agents WHERE client_id = ?1")?
                .execute(params![client_id])?;
        }
        DurableChange::OrganizationCreated(organization) => {
            transaction
                .prepare_cached("INSERT OR REPLACE INTO organizations (connection_id, external_id, organization_id)
                 VALUES (?1, ?2, ?3)")?
                .execute(params![
                    organization.connection,
                    organization.external_id,
                    organization.organization
                ])?;
        }
        DurableChange::ConsentRemembered(consent) => {
            transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO consents
                 (user_id, client_id, resource_id, scopes, consent_id, create_time)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    consent.user,
                    consent.client,
                    consent.resource,
                    consent.scopes.join(" "),
                    consent.consent_id,
                    to_sql_seconds(consent.created_at)
                ])?;
        }
        DurableChange::ConsentRevoked { consent_id } => {
            transaction
                .prepare_cached("DELETE FROM consents WHERE consent_id = ?1")?
                .execute(params![consent_id])?;
        }
        DurableChange::GrantCreated(grant) => {
            transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO grants (grant_id, sign_in) VALUES (?1, ?2)",
                )?
                .execute(params![
                    grant.grant_id,
                    serde_json::to_string(&grant.sign_in)?
                ])?;
        }
        DurableChange::GrantRevoked { grant_id } => {
            transaction
                .prepare_cached("DELETE FROM refresh_tokens WHERE grant_id = ?1")?
                .execute(params![grant_id])?;
            transaction
                .prepare_cached("DELETE FROM grants WHERE grant_id = ?1")?
                .execute(params![grant_id])?;
        }
        DurableChange::RefreshTokenIssued(token) => {
            transaction
                .prepare_cached("INSERT OR REPLACE INTO refresh_tokens (token, grant_id, client_id, expires_at, rotated)
                 VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![
                    token.token.expose(),
                    token.grant_id,
                    token.client,
                    to_sql_seconds(token.expires_at),
                    token.rotated
                ])?;
        }
        DurableChange::RefreshTokenDropped { token } => {
            // Its grant goes with its last token, as the sweep would take it.
            transaction
                .prepare_cached(
                    "DELETE FROM grants
                     WHERE grant_id = (SELECT grant_id FROM refresh_tokens WHERE token = ?1)
                     AND NOT EXISTS (SELECT 1 FROM refresh_tokens AS other
                                     WHERE other.grant_id = grants.grant_id AND other.token <> ?1)",
                )?
                .execute(params![token.expose()])?;
            transaction
                .prepare_cached("DELETE FROM refresh_tokens WHERE token = ?1")?
                .execute(params![token.expose()])?;
        }
        DurableChange::RefreshTokenRotated { token } => {
            transaction
                .prepare_cached("UPDATE refresh_tokens SET rotated = 1 WHERE token = ?1")?
                .execute(params![token.expose()])?;
        }
        DurableChange::Expired { now } => {
            // Only the grants of the expired tokens are looked at (through the expiry index),
            // never every grant: a grant has no token only once its last one expired.
            transaction
                .prepare_cached(
                    "DELETE FROM grants
                     WHERE grant_id IN (SELECT grant_id FROM refresh_tokens WHERE expires_at <= ?1)
                     AND NOT EXISTS (SELECT 1 FROM refresh_tokens AS live
                                     WHERE live.grant_id = grants.grant_id
                                     AND live.expires_at > ?1)",
                )?
                .execute(params![to_sql_seconds(*now)])?;
            transaction
                .prepare_cached("DELETE FROM refresh_tokens WHERE expires_at <= ?1")?
                .execute(params![to_sql_seconds(*now)])?;
            transaction
                .prepare_cached("DELETE FROM redeemed_assertions WHERE expires_at <= ?1")?
                .execute(params![to_sql_seconds(*now)])?;
        }
        DurableChange::Reset => {
            transaction.execute_batch(
                "DELETE FROM refresh_tokens; DELETE FROM grants; DELETE FROM consents;
                 DELETE FROM organizations; DELETE FROM users; DELETE FROM clients;
                 DELETE FROM agents; DELETE FROM idp_users; DELETE FROM redeemed_assertions;",
            )?;
        }
    }
    Ok(())
}

/// SQLite integers are signed; unix seconds fit until the year 292 billion.
fn to_sql_seconds(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

fn from_sql_seconds(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap_or(0)
}

fn query<T>(
    connection: &Connection,
    sql: &str,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map([], map)?;
    rows.collect()
}

/// The database holds the signing keys and refresh tokens: readable by its owner only.
#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), %error, "cannot restrict the state database's permissions");
    }
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}

#[cfg(test)]
mod tests;
