//! HTTP tests of the emulator: one binary, the emulator spawned on `127.0.0.1:0` per test.

mod helpers;

mod cimd;
mod client_credentials;
mod consent;
mod consents;
mod control;
mod dcr;
mod errors;
mod flow;
mod grpc;
mod inspector;
mod keys;
mod metadata;
mod mint;
mod pending;
mod properties;
mod restart;
mod routes;
mod tls;
