// Your MCP server's token check: is this bearer token one Scalekit issued for this server?
import { pathToFileURL } from 'node:url';

import { Scalekit } from '@scalekit-sdk/node';

const scalekit = new Scalekit(
  process.env.SCALEKIT_ENVIRONMENT_URL,
  process.env.SCALEKIT_CLIENT_ID,
  process.env.SCALEKIT_CLIENT_SECRET,
);
const options = {
  issuer: process.env.SCALEKIT_ENVIRONMENT_URL,
  audience: [process.env.MCP_SERVER_URL],
  requiredScopes: ['mcp:read'],
};

// The token's claims; throws (answer 401) when it is not for this server.
export async function claimsOf(accessToken) {
  return scalekit.validateToken(accessToken, options);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify(await claimsOf(process.argv[2])));
}
