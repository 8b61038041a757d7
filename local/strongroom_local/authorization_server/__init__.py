"""A local OAuth 2.0 authorization server for tests (RFC 6749, 7636, 7523, 7009).

It enforces what real servers enforce (exact redirect URIs, S256 PKCE, single-use codes,
rotating refresh tokens with reuse detection, strict client authentication) and injects the
faults real servers show (errors, HTML, hangs, oversized bodies, slow responses). See
`server.LocalAuthorizationServer`.
"""

from strongroom_local.authorization_server.client_auth import SeenAssertion
from strongroom_local.authorization_server.ledger import (
    AUTHORIZATION_CODE_TTL_SECONDS,
    COUNTER_NAMES,
)
from strongroom_local.authorization_server.server import (
    OVERSIZED_BODY_BYTES,
    FaultKind,
    LocalAuthorizationServer,
)

__all__ = [
    "AUTHORIZATION_CODE_TTL_SECONDS",
    "COUNTER_NAMES",
    "OVERSIZED_BODY_BYTES",
    "FaultKind",
    "LocalAuthorizationServer",
    "SeenAssertion",
]
