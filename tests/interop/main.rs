//! Interop: official clients and SDKs against the stack, each driven by a small Node script.
//!
//! - `ts_sdk`: the official TypeScript MCP SDK client (`@modelcontextprotocol/sdk`) completes the
//!   whole flow, driven headlessly by `ts-sdk/driver.mjs`.
//!
//! Each Node package folder needs `npm ci` (`.ci/run` and `cargo xtask ci` do it). Without it a
//! test says why and passes outside CI; under `CI=true` it fails instead.

#[path = "../support/mod.rs"]
mod support;

mod node;
mod node_sdk;
mod ts_sdk;
