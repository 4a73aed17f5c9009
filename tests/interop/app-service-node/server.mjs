// A login service for Scalekit's bring-your-own-auth: Scalekit sends the browser to
// GET /login?login_request_id=…&state=…; once the user has signed in, the service posts the user
// to Scalekit and only then sends the browser to partner:callback with the state unchanged.
//
//   SCALEKIT_ENVIRONMENT_URL=… SCALEKIT_CLIENT_ID=… SCALEKIT_CLIENT_SECRET=… \
//   SCALEKIT_CONNECTION_ID=… DEMO_PASSWORD=… PORT=3000 node server.mjs
import { createServer } from 'node:http';

import { Scalekit } from '@scalekit-sdk/node';

const envUrl = process.env.SCALEKIT_ENVIRONMENT_URL;
const connectionId = process.env.SCALEKIT_CONNECTION_ID;
const scalekit = new Scalekit(
  envUrl,
  process.env.SCALEKIT_CLIENT_ID,
  process.env.SCALEKIT_CLIENT_SECRET,
);
// For the test bed's own tests; leave unset. `drop-state` redirects without the state;
// `phone-not-e164` posts a phone number Scalekit refuses and redirects anyway.
const mistake = process.env.SAMPLE_MISTAKE;

const escape = (text) => String(text ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function send(response, status, body) {
  response.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
  response.end(`<!doctype html><meta charset="utf-8"><title>Sign in</title>${body}`);
}

const loginForm = (loginRequestId, state, error) => `<h1>Sign in</h1>
${error ? `<p role="alert">${escape(error)}</p>` : ''}<form method="post" action="/login">
  <input type="hidden" name="login_request_id" value="${escape(loginRequestId)}">
  <input type="hidden" name="state" value="${escape(state)}">
  <label>Email <input name="username" type="email" autocomplete="username" required></label>
  <label>Password <input name="password" type="password" required></label>
  <button type="submit">Sign in</button></form>`;

const failed = (error) => `<h1>Sign-in failed</h1><p>${escape(error?.message ?? error)}</p>`;

async function handle(request, response) {
  const url = new URL(request.url, 'http://localhost');
  if (url.pathname !== '/login') return send(response, 404, '<p>Not found</p>');
  if (request.method === 'GET') {
    const query = url.searchParams;
    return send(response, 200, loginForm(query.get('login_request_id'), query.get('state')));
  }
  if (request.method !== 'POST') return send(response, 405, '<p>Method not allowed</p>');
  let body = '';
  // Read to the end (leaving early would cut the answer off), keeping at most 64 KiB.
  for await (const chunk of request) if (body.length <= 65536) body += chunk;
  if (body.length > 65536) return send(response, 413, '<p>Form too large</p>');
  const form = new URLSearchParams(body);
  const [loginRequestId, state] = [form.get('login_request_id'), form.get('state')];
  const signedIn = form.get('username') === 'ada@example.com'
    && form.get('password') === process.env.DEMO_PASSWORD;
  if (!signedIn) {
    return send(response, 401, loginForm(loginRequestId, state, 'Wrong email or password.'));
  }
  const user = { sub: 'user-1042', email: 'ada@example.com', name: 'Ada Lovelace' };
  if (mistake === 'phone-not-e164') user.phoneNumber = '555-0101';
  try {
    await scalekit.auth.updateLoginUserDetails(connectionId, loginRequestId, user);
  } catch (error) {
    // Scalekit refused the user, was not reached (gRPC, TLS: e.g. its CA untrusted), or a bug:
    // never send the browser on, Scalekit has no user for it.
    if (mistake !== 'phone-not-e164') return send(response, 502, failed(error));
  }
  const callback = new URL(`${envUrl}/sso/v1/connections/${connectionId}/partner:callback`);
  if (mistake !== 'drop-state') callback.searchParams.set('state', state);
  response.writeHead(302, { location: callback.href }).end();
}

// Anything thrown outside the Scalekit call still gets the browser an answer, not a crash.
createServer((request, response) => handle(request, response).catch((error) => {
  if (!response.headersSent) send(response, 500, failed(error));
  else response.destroy();
})).listen(Number(process.env.PORT ?? 3000), '127.0.0.1');
