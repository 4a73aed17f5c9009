//! HTTP tests of the emulator: one binary, the emulator spawned on `127.0.0.1:0` per test.

mod helpers;

mod client_credentials;
mod consent;
mod dcr;
mod errors;
mod flow;
mod metadata;
