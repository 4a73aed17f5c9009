// Drives the official Scalekit Node SDK (@scalekit-sdk/node) against the emulator.
//
//   node sdk.mjs update-user '<json>'     {envUrl, clientId, clientSecret, connectionId, loginRequestId, user}
//   node sdk.mjs validate-token '<json>'  {envUrl, clientId, clientSecret, accessToken, issuer, audience, requiredScopes}
//
// `update-user` calls `scalekit.auth.updateLoginUserDetails` over gRPC (h2c for an http:// URL).
// The SDK fetches its management token lazily: the first call goes without one, the emulator
// answers UNAUTHENTICATED (16), the SDK fetches a token by client credentials and retries.
// `validate-token` runs `validateToken` and `validateAccessToken` on an emulator-issued MCP
// access token, with the right options and with wrong ones.
//
// Prints one JSON line on stdout: {"ok": true, ...} or {"ok": false, "error": ...}.

import { Scalekit } from '@scalekit-sdk/node';

const [command, input] = process.argv.slice(2);

async function updateUser(args) {
  const scalekit = new Scalekit(args.envUrl, args.clientId, args.clientSecret);
  const tokenBefore = Boolean(scalekit.coreClient.accessToken);
  const response = await scalekit.auth.updateLoginUserDetails(
    args.connectionId,
    args.loginRequestId,
    args.user,
  );
  return {
    authRequestId: response.authRequestId,
    tokenBefore,
    tokenAfter: Boolean(scalekit.coreClient.accessToken),
  };
}

async function rejection(promise) {
  try {
    await promise;
    return null;
  } catch (error) {
    return error?.message ?? String(error);
  }
}

async function validateToken(args) {
  const scalekit = new Scalekit(args.envUrl, args.clientId, args.clientSecret);
  const options = {
    issuer: args.issuer,
    audience: args.audience,
    requiredScopes: args.requiredScopes,
  };
  const payload = await scalekit.validateToken(args.accessToken, options);
  return {
    payload,
    valid: await scalekit.validateAccessToken(args.accessToken, options),
    wrongAudience: await scalekit.validateAccessToken(args.accessToken, {
      ...options,
      audience: ['res_not_this_one'],
    }),
    wrongIssuer: await scalekit.validateAccessToken(args.accessToken, {
      ...options,
      issuer: 'https://other.scalekit.dev',
    }),
    missingScope: await scalekit.validateAccessToken(args.accessToken, {
      ...options,
      requiredScopes: [...args.requiredScopes, 'mcp:admin'],
    }),
    tamperedRejected:
      (await rejection(scalekit.validateToken(`${args.accessToken}x`, options))) !== null,
  };
}

try {
  const args = JSON.parse(input ?? '{}');
  let result;
  if (command === 'update-user') {
    result = await updateUser(args);
  } else if (command === 'validate-token') {
    result = await validateToken(args);
  } else {
    throw new Error(`unknown command ${command}: use update-user or validate-token`);
  }
  console.log(JSON.stringify({ ok: true, ...result }));
} catch (error) {
  console.log(
    JSON.stringify({
      ok: false,
      error: error?.message ?? String(error),
      name: error?.name,
      code: error?.grpcStatus ?? error?.code,
    }),
  );
  process.exitCode = 1;
}
