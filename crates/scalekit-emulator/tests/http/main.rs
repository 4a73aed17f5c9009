//! HTTP tests of the emulator: one binary, the emulator spawned on `127.0.0.1:0` per test.

mod helpers;

mod agents;
mod browser_binding;
mod cimd;
mod client_credentials;
mod consent;
mod consents;
mod control;
mod cross_site;
mod dcr;
mod errors;
mod flow;
mod grpc;
mod inspector;
mod keys;
mod listener_guard;
mod metadata;
mod mint;
mod openapi;
mod pending;
mod properties;
mod restart;
mod routes;
mod scopes;
mod server_url;
mod tls;
mod xaa;
