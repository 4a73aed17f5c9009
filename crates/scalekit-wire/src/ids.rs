//! Scalekit's id prefixes (reference: scalekit.md §7, "Id formats seen").

/// The prefix each kind of Scalekit id carries.
pub mod prefix {
    /// A BYOA connection.
    pub const CONNECTION: &str = "conn_";
    /// A login request handed to "Your App".
    pub const LOGIN_REQUEST: &str = "lri_";
    /// An auth request, answered by the user-details call.
    pub const AUTH_REQUEST: &str = "req_";
    /// An MCP server resource.
    pub const RESOURCE: &str = "res_";
    /// A DCR or CIMD client of an MCP server.
    pub const MCP_CLIENT: &str = "m2m_";
    /// An environment API client (client credentials).
    pub const API_CLIENT: &str = "skc_";
    /// A signing key id (`kid`).
    pub const SIGNING_KEY: &str = "snk_";
    /// A token id (`jti`).
    pub const TOKEN: &str = "tkn_";
    /// A session (`sid`).
    pub const SESSION: &str = "ses_";
    /// A user.
    pub const USER: &str = "usr_";
    /// An organization.
    pub const ORGANIZATION: &str = "org_";
    /// A remembered consent.
    pub const CONSENT: &str = "usrcnst_";
    /// A hosted error page.
    pub const ERROR: &str = "err_";
}
