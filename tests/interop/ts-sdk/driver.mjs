// Drives the official TypeScript MCP SDK client (@modelcontextprotocol/sdk) through the test bed's OAuth
// flow headlessly, the way mcp-authorization.md §3.1 describes: the provider's redirectToAuthorization follows
// the authorize redirect chain with a cookie-keeping user agent until the client's redirect_uri appears, then
// finishAuth(code) runs on the same transport and a fresh transport connects with the tokens.
//
// Usage: node driver.mjs <mcp server url>
// Prints one JSON line on stdout: {"ok":true,"whoami":{...},"scope":"...","hasRefreshToken":bool}
// or {"ok":false,"error":"..."} and exits 1.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const REDIRECT_URI = "http://127.0.0.1:33419/callback";
const MAX_HOPS = 20;

class HeadlessProvider {
  constructor() {
    this._clientInformation = undefined;
    this._tokens = undefined;
    this._codeVerifier = undefined;
    this._state = crypto.randomUUID();
    this.authorizationCode = undefined;
  }
  get redirectUrl() { return REDIRECT_URI; }
  get clientMetadata() {
    return {
      client_name: "testbed interop (TypeScript SDK)",
      redirect_uris: [REDIRECT_URI],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() { return this._state; }
  clientInformation() { return this._clientInformation; }
  saveClientInformation(info) { this._clientInformation = info; }
  tokens() { return this._tokens; }
  saveTokens(tokens) { this._tokens = tokens; }
  saveCodeVerifier(verifier) { this._codeVerifier = verifier; }
  codeVerifier() { return this._codeVerifier; }

  // The user agent: GET with redirects off, keep cookies per origin, follow Locations until the
  // redirect_uri shows up; every page on the way must be a redirect (auto-login and auto-consent).
  async redirectToAuthorization(authorizationUrl) {
    const cookies = new Map();
    let url = new URL(authorizationUrl);
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      if (url.href.startsWith(REDIRECT_URI)) {
        const error = url.searchParams.get("error");
        if (error) throw new Error(`authorization failed: ${error}: ${url.searchParams.get("error_description")}`);
        if (url.searchParams.get("state") !== this._state) throw new Error("state mismatch on the callback");
        this.authorizationCode = url.searchParams.get("code");
        return;
      }
      const jar = cookies.get(url.origin) ?? [];
      const response = await fetch(url, { redirect: "manual", headers: jar.length ? { cookie: jar.join("; ") } : {} });
      for (const setCookie of response.headers.getSetCookie()) {
        const pair = setCookie.split(";")[0];
        const name = pair.split("=")[0];
        cookies.set(url.origin, [...jar.filter((c) => !c.startsWith(`${name}=`)), pair]);
      }
      const location = response.headers.get("location");
      if (response.status < 300 || response.status >= 400 || !location) {
        const body = (await response.text()).slice(0, 300);
        throw new Error(`redirect chain stopped at ${url.href} with ${response.status}: ${body}`);
      }
      url = new URL(location, url);
    }
    throw new Error(`more than ${MAX_HOPS} redirects`);
  }
}

async function main() {
  const serverUrl = new URL(process.argv[process.argv.length - 1]);
  const provider = new HeadlessProvider();

  const first = new StreamableHTTPClientTransport(serverUrl, { authProvider: provider });
  const probe = new Client({ name: "testbed-interop", version: "0.1.0" });
  try {
    await probe.connect(first);
    throw new Error("the MCP server accepted a request without a token");
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
  }
  if (!provider.authorizationCode) throw new Error("no authorization code was obtained");
  await first.finishAuth(provider.authorizationCode);

  const transport = new StreamableHTTPClientTransport(serverUrl, { authProvider: provider });
  const client = new Client({ name: "testbed-interop", version: "0.1.0" });
  await client.connect(transport);
  const result = await client.callTool({ name: "whoami", arguments: {} });
  const whoami = result.structuredContent ?? JSON.parse(result.content.find((c) => c.type === "text").text);
  await client.close();
  const tokens = provider.tokens();
  console.log(JSON.stringify({ ok: true, whoami, scope: tokens.scope ?? null, hasRefreshToken: Boolean(tokens.refresh_token) }));
}

main().catch((error) => {
  console.log(JSON.stringify({ ok: false, error: String(error?.stack ?? error) }));
  process.exit(1);
});
