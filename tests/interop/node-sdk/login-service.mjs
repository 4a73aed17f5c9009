// Your login service, once it has signed the user in: hand the user to Scalekit, then send the
// browser back. Scalekit sent the browser here with ?login_request_id=…&state=….
import { pathToFileURL } from 'node:url';

import { Scalekit } from '@scalekit-sdk/node';

const envUrl = process.env.SCALEKIT_ENVIRONMENT_URL;
const connectionId = process.env.SCALEKIT_CONNECTION_ID;
const scalekit = new Scalekit(
  envUrl,
  process.env.SCALEKIT_CLIENT_ID,
  process.env.SCALEKIT_CLIENT_SECRET,
);

// Posts the signed-in user; returns where to redirect the browser.
export async function handOff(loginRequestId, state) {
  await scalekit.auth.updateLoginUserDetails(connectionId, loginRequestId, {
    sub: 'user-1042',
    email: 'ada@example.com',
    name: 'Ada Lovelace',
  });
  const callback = new URL(`${envUrl}/sso/v1/connections/${connectionId}/partner:callback`);
  callback.searchParams.set('state', state);
  return callback.href;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [loginRequestId, state] = process.argv.slice(2);
  console.log(await handOff(loginRequestId, state));
}
