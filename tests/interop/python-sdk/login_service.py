# Your login service, once it has signed the user in: hand the user to Scalekit, then send the
# browser back. Scalekit sent the browser here with ?login_request_id=…&state=….
import os
import sys
from urllib.parse import urlencode

from scalekit import ScalekitClient

env_url = os.environ["SCALEKIT_ENVIRONMENT_URL"]
connection_id = os.environ["SCALEKIT_CONNECTION_ID"]
scalekit = ScalekitClient(
    env_url, os.environ["SCALEKIT_CLIENT_ID"], os.environ["SCALEKIT_CLIENT_SECRET"]
)


def hand_off(login_request_id: str, state: str) -> str:
    """Posts the signed-in user; returns where to redirect the browser."""
    scalekit.auth.update_login_user_details(
        connection_id=connection_id,
        login_request_id=login_request_id,
        user={"sub": "user-1042", "email": "ada@example.com", "name": "Ada Lovelace"},
    )
    query = urlencode({"state": state})
    return f"{env_url}/sso/v1/connections/{connection_id}/partner:callback?{query}"


if __name__ == "__main__":
    print(hand_off(login_request_id=sys.argv[1], state=sys.argv[2]))
