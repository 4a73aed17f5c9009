//! End-to-end: the MCP client driver runs the whole BYOA flow against the stack, over HTTP only.

#[path = "../support/env_files.rs"]
mod env_files;
#[path = "../support/mod.rs"]
mod support;

mod agents;
mod cli;
mod emulator;
mod flow;
mod harness;
mod parity;
mod server_check;
mod up;
mod url_target;
