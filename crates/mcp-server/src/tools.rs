//! The MCP server behind the token check: one tool, `whoami`, that echoes the caller's claims.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use serde_json::Value;

use crate::auth::Claims;

/// The name this server reports in `initialize`.
pub const SERVER_NAME: &str = "testbed-mcp-server";

/// The MCP handler. A fresh one serves each session; it holds no per-user state, because the
/// claims arrive with every request.
#[derive(Debug, Clone)]
pub struct TestbedServer {
    tool_router: ToolRouter<Self>,
}

impl Default for TestbedServer {
    fn default() -> Self {
        TestbedServer {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl TestbedServer {
    /// The claims of the access token this very request carried, so a client can check who it is.
    #[tool(description = "Returns the claims of the access token this request was made with")]
    async fn whoami(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        // The middleware in `http.rs` refuses every request without valid claims, so their
        // absence here means the service was mounted without it.
        let claims = parts.extensions.get::<Claims>().ok_or_else(|| {
            ErrorData::internal_error("the request carries no validated token", None)
        })?;
        Ok(CallToolResult::structured(Value::Object(
            claims.all.clone(),
        )))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TestbedServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
            .with_instructions("Call whoami to see the claims of your access token.")
    }
}
