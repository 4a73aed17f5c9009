//! Integration tests: the driver against a fake authorization and resource server on loopback.

mod agent;
mod fake;
mod flow;
mod session;
