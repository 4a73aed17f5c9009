// Drives the official TypeScript MCP SDK v2 client (@modelcontextprotocol/client) through cross-app access
// (enterprise-managed authorization): its CrossAppAccessProvider discovers the MCP server's authorization
// server from the 401, asks the assertion callback for an ID-JAG, which discoverAndRequestJwtAuthGrant gets
// from the company identity provider the test bed plays (RFC 8414 discovery of the identity provider, then
// RFC 8693 token exchange of the user's ID token), and exchanges the ID-JAG at the authorization server with
// the jwt-bearer grant (client_secret_basic). No browser, no consent page. Then it calls `whoami`, and
// presents the same ID-JAG once more with exchangeJwtAuthGrant, which must be refused (single use).
//
// Usage: XAA_CONFIG='{"mcpUrl":…,"idpUrl":…,"idToken":…,"idpClientId":…,"idpClientSecret":…,"clientId":…,
//        "clientSecret":…,"expectedIssuer":…,"tokenEndpoint":…}' node xaa-driver.mjs
// Prints one JSON line on stdout: {"ok":true,"whoami":{…},"scope":"…","hasRefreshToken":bool,"replay":"…"}
// or {"ok":false,"error":"…"} and exits 1.

import {
  Client,
  CrossAppAccessProvider,
  StreamableHTTPClientTransport,
  discoverAndRequestJwtAuthGrant,
  exchangeJwtAuthGrant,
} from "@modelcontextprotocol/client";

async function main() {
  const config = JSON.parse(process.env.XAA_CONFIG ?? "{}");
  let lastGrant;
  const provider = new CrossAppAccessProvider({
    assertion: async (ctx) => {
      const result = await discoverAndRequestJwtAuthGrant({
        idpUrl: config.idpUrl,
        audience: ctx.authorizationServerUrl,
        resource: ctx.resourceUrl,
        idToken: config.idToken,
        clientId: config.idpClientId,
        clientSecret: config.idpClientSecret,
        scope: ctx.scope,
        fetchFn: ctx.fetchFn,
      });
      lastGrant = result.jwtAuthGrant;
      return result.jwtAuthGrant;
    },
    clientId: config.clientId,
    clientSecret: config.clientSecret,
    clientName: "testbed interop (TypeScript SDK v2, cross-app access)",
    expectedIssuer: config.expectedIssuer,
  });

  const transport = new StreamableHTTPClientTransport(new URL(config.mcpUrl), { authProvider: provider });
  const client = new Client({ name: "testbed-interop-xaa", version: "0.1.0" });
  await client.connect(transport);
  const result = await client.callTool({ name: "whoami", arguments: {} });
  const whoami = result.structuredContent ?? JSON.parse(result.content.find((c) => c.type === "text").text);
  await client.close();
  const tokens = provider.tokens();
  if (!lastGrant) throw new Error("the assertion callback was never called");

  let replay;
  try {
    await exchangeJwtAuthGrant({
      tokenEndpoint: config.tokenEndpoint,
      jwtAuthGrant: lastGrant,
      clientId: config.clientId,
      clientSecret: config.clientSecret,
    });
    replay = "accepted";
  } catch (error) {
    replay = String(error?.message ?? error);
  }

  console.log(JSON.stringify({
    ok: true,
    whoami,
    scope: tokens.scope ?? null,
    hasRefreshToken: Boolean(tokens.refresh_token),
    replay,
  }));
}

main().catch((error) => {
  console.log(JSON.stringify({ ok: false, error: String(error?.stack ?? error) }));
  process.exit(1);
});
