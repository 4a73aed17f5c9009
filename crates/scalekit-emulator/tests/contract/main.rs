//! Contract snapshots (insta): the claim sets, discovery documents, JWKS, DCR answers and every
//! error body the emulator produces, on a deterministic stack (manual clock, sequential ids, the
//! test-only signing key in `signing_key.pem`, `public_url = http://emulator.test`).
//!
//! Accept changed snapshots with `INSTA_UPDATE=always cargo test -p scalekit-emulator --test
//! contract`, then read every changed `.snap` file before keeping it. Under `CI=true` a missing
//! snapshot fails.

mod stack;

mod claims;
mod dcr;
mod management_errors;
mod metadata;
mod oauth_errors;
