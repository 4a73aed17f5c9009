//! The web plumbing every piece of the test bed shares (the emulator, Your App, the MCP server and
//! the conformance reports), so that each defence is written once: the listener guard ([`host`]:
//! which `Host` a piece answers for, against DNS rebinding), browser origins ([`origin`]), HTML
//! escaping ([`html`]), binding a listener with the base URL a piece names itself by ([`bind`]),
//! how every binary logs ([`logging`]), and writing a file whole ([`files`]: env files, trust
//! bundles, the signing key file). It depends on none of the pieces.

pub mod bind;
pub mod files;
pub mod host;
pub mod html;
pub mod logging;
pub mod origin;

pub use bind::{BindError, Bound, serve};
pub use host::{
    AllowedHost, AllowedHostError, AllowedHosts, HostGuard, HostGuardLayer, HostRefusal,
    LOOPBACK_HOSTS,
};
pub use html::escape;
pub use origin::Origin;
