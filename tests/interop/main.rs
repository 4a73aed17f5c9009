//! Interop: official clients and SDKs against the stack, each driven by a small Node script.
//!
//! - `mcp_conformance`, `mcp_authorization`: the official MCP conformance suite against the
//!   `mcp-driver` binary (client mode) and against the emulator (authorization-server mode).
//! - `node_sdk`: the Scalekit Node SDK posts the user over gRPC (h2c) and validates the token.
//! - `snippets`: the README's "Use it from your stack" snippets against `testbed up --tls`: the
//!   Scalekit Python and Node SDKs post the user over gRPC with TLS and check the issued token, and
//!   an MCP client lists the tools; the README shows each snippet byte for byte.
//! - `ts_sdk`: the official TypeScript MCP SDK client (`@modelcontextprotocol/sdk`) completes the
//!   whole flow, driven headlessly by `ts-sdk/driver.mjs`.
//! - `ts_xaa`: the TypeScript SDK v2 client (`@modelcontextprotocol/client`) completes cross-app
//!   access with its `CrossAppAccessProvider` (`ts-client-v2/xaa-driver.mjs`): the emulator's
//!   identity provider's token exchange, then `jwt-bearer`, without a consent page.
//!
//! Each Node package folder needs `npm ci` (`.ci/run` and `cargo xtask ci` do it). Without it a
//! test says why and passes outside CI; under `CI=true` it fails instead.

#[path = "../support/env_files.rs"]
mod env_files;
#[path = "../support/mod.rs"]
mod support;

mod mcp_authorization;
mod mcp_conformance;
mod node;
mod node_sdk;
mod snippets;
mod ts_sdk;
mod ts_server;
mod ts_xaa;
