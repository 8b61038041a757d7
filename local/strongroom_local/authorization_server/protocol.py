"""Syntax of OAuth 2.0 messages: parameters, scopes, PKCE values, redirects (RFC 6749, 7636)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Collection
from urllib.parse import parse_qsl, urlencode, urlsplit

from strongroom_local.authorization_server.exceptions import InvalidRequest, InvalidScope

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 6749 §4.1.2.1: error = 1*( %x20-21 / %x23-5B / %x5D-7E )
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")
# RFC 7636 §4.1 and §4.2: 43 to 128 unreserved characters.
_PKCE_VALUE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def split_parameters(encoded: str) -> tuple[dict[str, str], set[str]]:
    """Form-urlencoded parameters with values, and the names that occur more than once.

    RFC 6749 §3.2: parameters sent without a value MUST be treated as if they were omitted.
    """
    try:
        pairs = parse_qsl(encoded, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest("parameters are not UTF-8") from None
    parameters: dict[str, str] = {}
    seen: set[str] = set()
    repeated: set[str] = set()
    for name, value in pairs:
        if name in seen:
            repeated.add(name)
        seen.add(name)
        if value:
            parameters[name] = value
    return parameters, repeated


def parse_parameters(encoded: str) -> dict[str, str]:
    """Form-urlencoded parameters; RFC 6749 §3.1: a repeated parameter is refused."""
    parameters, repeated = split_parameters(encoded)
    if repeated:
        raise InvalidRequest(f"repeated parameter {name_for_message(min(repeated))}")
    return parameters


_KNOWN_NAMES = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "grant_type",
        "code",
        "code_verifier",
        "refresh_token",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "token",
        "token_type_hint",
    }
)


def name_for_message(name: str) -> str:
    """A parameter name fit for an error description: only the protocol's own names."""
    return name if name in _KNOWN_NAMES else "(unknown parameter)"


def parse_scope(text: str | None) -> tuple[str, ...] | None:
    """The scope tokens of a `scope` parameter (None when absent), in order, without repeats."""
    if text is None:
        return None
    tokens = text.split(" ")
    if not all(_SCOPE_TOKEN.fullmatch(token) for token in tokens):
        raise InvalidScope("scope is not a space-separated list of scope tokens")
    return tuple(dict.fromkeys(tokens))


def check_scope_tokens(scopes: Collection[str]) -> None:
    """Refuse a registration whose scopes could never appear in a `scope` parameter."""
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE_TOKEN.fullmatch(scope):
            raise ValueError("every scope must be a non-empty RFC 6749 scope-token")


def format_scope(scopes: Collection[str]) -> str:
    return " ".join(scopes)


def is_error_code(text: str) -> bool:
    return _ERROR_CODE.fullmatch(text) is not None


def is_pkce_value(text: str) -> bool:
    """True for a syntactically valid code_verifier or code_challenge."""
    return _PKCE_VALUE.fullmatch(text) is not None


def s256_challenge(code_verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))), without padding."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_matches(code_verifier: str, code_challenge: str) -> bool:
    return hmac.compare_digest(s256_challenge(code_verifier), code_challenge)


def check_redirect_uri(uri: str) -> None:
    """RFC 6749 §3.1.2: an absolute URI without a fragment (checked at registration)."""
    if not isinstance(uri, str):
        raise ValueError("a redirect URI must be a string")
    parts = urlsplit(uri)
    if not parts.scheme or not parts.netloc:
        raise ValueError("a redirect URI must be absolute")
    if "#" in uri:
        raise ValueError("a redirect URI must not contain a fragment")


def redirect_with(redirect_uri: str, parameters: dict[str, str]) -> str:
    """`redirect_uri` with `parameters` added to its query, keeping the query it already has.

    RFC 6749 §3.1.2: the registered query component MUST be retained. The URI is extended as a
    string (no parsing and re-serialising), so it stays byte-for-byte what was registered.
    """
    if "?" not in redirect_uri:
        separator = "?"
    elif redirect_uri.endswith(("?", "&")):
        separator = ""
    else:
        separator = "&"
    return redirect_uri + separator + urlencode(parameters)
