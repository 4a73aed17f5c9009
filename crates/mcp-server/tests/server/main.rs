//! Integration tests of the reference MCP server against a fake environment that serves `/keys`.

mod challenges;
mod facts;
mod helpers;
mod hosts;
mod jwks;
mod mcp;
mod metadata;
mod mistakes;
mod origin;
mod router;
