"""A login service for Scalekit's bring-your-own-auth: Scalekit sends the browser to
GET /login?login_request_id=…&state=…; once the user has signed in, the service posts the user
to Scalekit and only then sends the browser to partner:callback with the state unchanged.

    SCALEKIT_ENVIRONMENT_URL=… SCALEKIT_CLIENT_ID=… SCALEKIT_CLIENT_SECRET=… \\
    SCALEKIT_CONNECTION_ID=… DEMO_PASSWORD=… PORT=3000 python server.py
"""

import functools
import html
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

from scalekit import ScalekitClient
from scalekit.common.exceptions import ScalekitServerException

env_url = os.environ["SCALEKIT_ENVIRONMENT_URL"]
connection_id = os.environ["SCALEKIT_CONNECTION_ID"]
# For the test bed's own tests; leave unset. `drop-state` redirects without the state;
# `phone-not-e164` posts a phone number Scalekit refuses and redirects anyway.
mistake = os.environ.get("SAMPLE_MISTAKE")


@functools.cache
def scalekit() -> ScalekitClient:
    """Made on first use: the client fetches its management token when it is made."""
    return ScalekitClient(
        env_url, os.environ["SCALEKIT_CLIENT_ID"], os.environ["SCALEKIT_CLIENT_SECRET"]
    )


def login_form(login_request_id: str, state: str, error: str = "") -> str:
    alert = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<h1>Sign in</h1>{alert}<form method="post" action="/login">
  <input type="hidden" name="login_request_id" value="{html.escape(login_request_id)}">
  <input type="hidden" name="state" value="{html.escape(state)}">
  <label>Email <input name="username" type="email" autocomplete="username" required></label>
  <label>Password <input name="password" type="password" required></label>
  <button type="submit">Sign in</button></form>"""


class LoginHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/login":
            return self.page(404, "<p>Not found</p>")
        query = dict(parse_qsl(url.query))
        self.page(200, login_form(query.get("login_request_id", ""), query.get("state", "")))

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/login":
            return self.page(404, "<p>Not found</p>")
        length = int(self.headers.get("Content-Length") or 0)
        if length > 64 * 1024:
            return self.page(413, "<p>Form too large</p>")
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        login_request_id, state = form.get("login_request_id", ""), form.get("state", "")
        signed_in = (form.get("username"), form.get("password"))
        if signed_in != ("ada@example.com", os.environ["DEMO_PASSWORD"]):
            return self.page(401, login_form(login_request_id, state, "Wrong email or password."))
        user = {"sub": "user-1042", "email": "ada@example.com", "name": "Ada Lovelace"}
        if mistake == "phone-not-e164":
            user["phone_number"] = "555-0101"
        try:
            scalekit().auth.update_login_user_details(
                connection_id=connection_id, login_request_id=login_request_id, user=user
            )
        except Exception as error:
            # Scalekit refused the user (ScalekitServerException), was not reached (grpc.RpcError,
            # e.g. its CA untrusted), or a bug: never send the browser on, Scalekit has no user.
            refused = isinstance(error, ScalekitServerException)
            if not (refused and mistake == "phone-not-e164"):
                return self.page(502, f"<h1>Sign-in failed</h1><p>{html.escape(str(error))}</p>")
        callback = f"{env_url}/sso/v1/connections/{connection_id}/partner:callback"
        if mistake != "drop-state":
            callback += "?" + urlencode({"state": state})
        self.send_response(302)
        self.send_header("Location", callback)
        self.end_headers()

    def page(self, status: int, body: str) -> None:
        data = f'<!doctype html><meta charset="utf-8"><title>Sign in</title>{body}'.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


port = int(os.environ.get("PORT", "3000"))
ThreadingHTTPServer(("127.0.0.1", port), LoginHandler).serve_forever()
