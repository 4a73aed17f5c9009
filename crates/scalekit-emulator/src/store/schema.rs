//! The state database's schema and its migrations, versioned with `PRAGMA user_version`.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// The schema version this emulator writes. Bump it with a new entry in [`MIGRATIONS`].
pub const SCHEMA_VERSION: i64 = 6;

/// `MIGRATIONS[n]` takes a database from version `n` to `n + 1`.
pub(super) const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    r"
CREATE TABLE signing_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pem TEXT NOT NULL
);
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    client_name TEXT,
    redirect_uris TEXT NOT NULL, -- JSON array of strings
    resource_id TEXT NOT NULL
);
CREATE TABLE users (
    connection_id TEXT NOT NULL,
    external_sub TEXT NOT NULL,
    user_id TEXT NOT NULL UNIQUE,
    PRIMARY KEY (connection_id, external_sub)
);
CREATE TABLE organizations (
    connection_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    organization_id TEXT NOT NULL UNIQUE,
    PRIMARY KEY (connection_id, external_id)
);
CREATE TABLE consents (
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    scopes TEXT NOT NULL, -- space-separated
    PRIMARY KEY (user_id, client_id, resource_id)
);
CREATE TABLE grants (
    grant_id TEXT PRIMARY KEY,
    sign_in TEXT NOT NULL -- JSON: flow::StoredSignIn
);
CREATE TABLE refresh_tokens (
    token TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL, -- unix seconds
    rotated INTEGER NOT NULL -- 0 or 1
);
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_id);
",
    r"
-- Version 2: remembered consents get their `usrcnst_…` id and creation time (the consent API).
-- Consents remembered by version 1 get a fresh id and a creation time of 0.
ALTER TABLE consents ADD COLUMN consent_id TEXT;
ALTER TABLE consents ADD COLUMN create_time INTEGER NOT NULL DEFAULT 0; -- unix seconds
UPDATE consents
SET consent_id = 'usrcnst_' || (abs(random() % 900000000000000000) + 100000000000000000)
WHERE consent_id IS NULL;
CREATE UNIQUE INDEX consents_by_id ON consents (consent_id);
",
    r"
-- Version 3: the sweep finds expired refresh tokens through an index instead of reading every
-- row, so its cost (under the state lock, every 30 seconds and at start) does not grow with the
-- grants kept. Grants are deleted with their last token, so none is left without one.
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
DELETE FROM grants WHERE grant_id NOT IN (SELECT grant_id FROM refresh_tokens);
",
    r"
-- Version 4: signing keys rotate (Decisions §10). The key ring is kept in JWKS order, the
-- signing key at position 0. The one key of version 3 becomes position 0 with a NULL kid: the
-- kid is derived from the public key, which SQL cannot do, and the emulator fills it in when it
-- starts. The old table is dropped rather than left unused, so that no row holds a private key
-- that retiring the key would not remove (SQLite may keep deleted bytes in free pages until
-- they are reused; the keys are a test bed's).
CREATE TABLE signing_keys (
    position INTEGER PRIMARY KEY CHECK (position >= 0),
    kid TEXT UNIQUE, -- snk_…
    pem TEXT NOT NULL -- PKCS#8 PEM
);
INSERT INTO signing_keys (position, kid, pem) SELECT 0, NULL, pem FROM signing_key WHERE id = 1;
DROP TABLE signing_key;
",
    r"
-- Version 5: agents (M2M clients of an MCP server) created through the control API. Of a secret
-- only its SHA-256 is kept; the fixtures' agents come from the configuration each start.
CREATE TABLE agents (
    client_id TEXT PRIMARY KEY, -- m2m_…
    resource_id TEXT NOT NULL,
    name TEXT,
    scopes TEXT NOT NULL, -- JSON array of strings
    token_lifetime_secs INTEGER NOT NULL,
    secret_sha256 TEXT NOT NULL, -- lowercase hex
    create_time INTEGER NOT NULL -- unix seconds
);
",
    r"
-- Version 6: cross-app access. The emulated identity providers' signing keys (one each, made on
-- first use and kept, as a real identity provider keeps its keys); their users (`usr_…` per
-- identity provider and assertion `sub`); and the identity assertions redeemed, by the digest
-- of their issuer and `jti` only, until their `exp` (the sweep deletes them then).
CREATE TABLE idp_signing_keys (
    idp_id TEXT PRIMARY KEY,
    kid TEXT NOT NULL,
    pem TEXT NOT NULL -- PKCS#8 PEM
);
CREATE TABLE idp_users (
    idp_id TEXT NOT NULL,
    external_sub TEXT NOT NULL,
    user_id TEXT NOT NULL UNIQUE,
    PRIMARY KEY (idp_id, external_sub)
);
CREATE TABLE redeemed_assertions (
    digest TEXT PRIMARY KEY, -- lowercase hex of SHA-256(iss NUL jti), first 16 bytes
    expires_at INTEGER NOT NULL -- unix seconds
);
CREATE INDEX redeemed_assertions_by_expiry ON redeemed_assertions (expires_at);
",
];

/// Brings the database to [`SCHEMA_VERSION`], each step in its own transaction.
pub(super) fn migrate(connection: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sqlite = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    // WAL with `synchronous = NORMAL`: a commit survives the process being killed (what a
    // restart is), without an fsync per transition under the state lock.
    // A page cache of 1 MiB (SQLite's default is 2 MiB): enough for the interior pages of a
    // database of a few hundred thousand grants, while leaf pages of random keys miss either way
    // and come from the OS page cache; the emulator's RSS stays flat (docs/performance.md).
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -1024;",
        )
        .map_err(sqlite)?;
    let found: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sqlite)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let applied = usize::try_from(found).unwrap_or(0);
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let transaction = connection.transaction().map_err(sqlite)?;
        transaction.execute_batch(migration).map_err(sqlite)?;
        transaction
            .execute_batch(&format!("PRAGMA user_version = {}", from + 1))
            .map_err(sqlite)?;
        transaction.commit().map_err(sqlite)?;
    }
    Ok(())
}
