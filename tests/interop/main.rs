//! Interop: official clients and SDKs against the stack, each driven by a small Node script.
//!
//! - `mcp_conformance`, `mcp_authorization`: the official MCP conformance suite against the
//!   `mcp-driver` binary (client mode) and against the emulator (authorization-server mode).
//! - `node_sdk`: the Scalekit Node SDK posts the user over gRPC (h2c) and validates the token.
//! - `ts_sdk`: the official TypeScript MCP SDK client (`@modelcontextprotocol/sdk`) completes the
//!   whole flow, driven headlessly by `ts-sdk/driver.mjs`.
//!
//! Each Node package folder needs `npm ci` (`.ci/run` and `cargo xtask ci` do it). Without it a
//! test says why and passes outside CI; under `CI=true` it fails instead.

#[path = "../support/mod.rs"]
mod support;

mod mcp_authorization;
mod mcp_conformance;
mod node;
mod node_sdk;
mod ts_sdk;
mod ts_server;
