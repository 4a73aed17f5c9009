# Your MCP server's token check: is this bearer token one Scalekit issued for this server?
import json
import os
import sys

from scalekit import ScalekitClient
from scalekit.common.scalekit import TokenValidationOptions

env_url = os.environ["SCALEKIT_ENVIRONMENT_URL"]
resource_id = os.environ["SCALEKIT_RESOURCE_ID"]
scalekit = ScalekitClient(
    env_url, os.environ["SCALEKIT_CLIENT_ID"], os.environ["SCALEKIT_CLIENT_SECRET"]
)
options = TokenValidationOptions(
    # Both issuers, while Scalekit moves tokens to the per-resource one.
    issuer=[env_url, f"{env_url}/resources/{resource_id}"],
    audience=[os.environ["MCP_SERVER_URL"]],
    required_scopes=["mcp:read"],
)


def claims_of(access_token: str) -> dict:
    """The token's claims; raises (answer 401) when it is not for this server."""
    return scalekit.validate_token(access_token, options=options)


if __name__ == "__main__":
    print(json.dumps(claims_of(sys.argv[1])))
