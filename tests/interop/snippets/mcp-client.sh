# An MCP client against `testbed up … --auto-login ada`: the repository's own driver registers,
# signs ada in, lists the MCP server's tools and calls the first.
cargo run -q -p mcp-driver -- --call-tool "$MCP_SERVER_URL"
