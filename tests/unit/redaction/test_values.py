"""redact: field names give context; the copy keeps its shape and the original is untouched."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import urllib.parse
from types import MappingProxyType
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from strongroom.redaction import REDACTED, redact
from strongroom.redaction.keys import GROUP_SECRET_NAMES, SECRET_NAMES, SECRET_SUFFIXES
from tests.unit.redaction.helpers import assert_not_leaked, canary, fullwidth, math_bold


@pytest.mark.parametrize(
    "name",
    [
        "client_secret",
        "Client-Secret",
        "clientSecret",
        "CLIENT_SECRET",
        "client.secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "private_key",
        "privateKey",
        "password",
        "secret",
        "api_key",
        "apikey",
        "x-api-key",
        "Authorization",
        "cookie",
        "Set-Cookie",
        "code_verifier",
        "client_assertion",
        "assertion",
        "wrapped_dek",
        "dek",
        "Plaintext",
        "CiphertextBlob",
        "signing_secret",
        "webhook_secret",
        "signing_secrets",
        "aws_secret_access_key",
        "SecretAccessKey",
        "SessionToken",
        "SecretString",
        "okta_api_token",
        "X-Amz-Security-Token",
    ],
)
def test_values_under_secret_names_are_replaced_whole(name: str) -> None:
    for value in (canary(), 123456, {"nested": canary()}, [canary()], None):
        assert redact({name: value, "org_id": "org_1"}) == {name: REDACTED, "org_id": "org_1"}


@pytest.mark.parametrize(
    "name", sorted(SECRET_NAMES | GROUP_SECRET_NAMES) + [f"my_{s}" for s in SECRET_SUFFIXES]
)
def test_every_name_of_the_vocabulary_is_secret(name: str) -> None:
    assert redact({name: canary()}) == {name: REDACTED}


@pytest.mark.parametrize(
    "name",
    [
        "token_endpoint",
        "token_type",
        "expires_in",
        "secret_arn",
        "secret_last4",
        "secret_fingerprint",
        "client_id",
        "client_secret_expires_at",
        "private_key_id",
        "key_id",
        "kid",
        "key",
        "method",
        "scope",
        "authorization_endpoint",
        "code_challenge_method",
        "credential_id",
        "credentials_updated_at",
        "secret_key_id",
        "pwd_changed_at",
    ],
)
def test_near_miss_names_stay_readable(name: str) -> None:
    assert redact({name: "kept-value"}) == {name: "kept-value"}


@pytest.mark.parametrize(
    "name",
    [
        fullwidth("password"),
        fullwidth("CLIENT_SECRET"),
        math_bold("Authorization"),
        "pass\u00adword",
        "api\u200bkey",
    ],
)
def test_compatibility_forms_of_secret_names_are_secret_and_kept_as_written(name: str) -> None:
    assert redact({name: canary(), "org_id": "org_1"}) == {name: REDACTED, "org_id": "org_1"}
    assert redact([(name, canary())]) == [(name, REDACTED)]


@pytest.mark.parametrize(
    "name", ["pwd", "DB_PWD", "passwd", "passcode", "secret_key", "credential"]
)
def test_more_secret_names_are_secret(name: str) -> None:
    assert redact({name: canary(), "org_id": "org_1"}) == {name: REDACTED, "org_id": "org_1"}


def test_credentials_holding_fields_are_walked_and_holding_values_are_replaced() -> None:
    password, token, other = canary(), canary(), canary()
    listed = [
        {"field": "client_secret", "value": REDACTED, "fingerprint": "9f3a", "created_at": "t"}
    ]
    assert redact(
        {
            "connection": {"credentials": listed, "status": "active"},
            "okta_user": {"credentials": {"password": {"value": password}, "provider": "OKTA"}},
            "sts": {"Credentials": {"AccessKeyId": "ASIAEXAMPLE", "SessionToken": token}},
            "single": {"credentials": other},
            "several": {"Credentials": [other, 123456, ["nested", other]]},
            "names": [("credential", other)],
        }
    ) == {
        "connection": {"credentials": listed, "status": "active"},
        "okta_user": {"credentials": {"password": REDACTED, "provider": "OKTA"}},
        "sts": {"Credentials": {"AccessKeyId": "ASIAEXAMPLE", "SessionToken": REDACTED}},
        "single": {"credentials": REDACTED},
        "several": {"Credentials": [REDACTED, REDACTED, [REDACTED, REDACTED]]},
        "names": [("credential", REDACTED)],
    }


def test_nested_structures_keep_their_shape() -> None:
    secret, other = canary(), canary()
    value = {
        "org_id": "org_1",
        "items": [
            {"auth": {"method": "client_credentials", "client_id": "cid", "client_secret": secret}},
            ("tuple", {"password": other}),
        ],
        "tags": {"a"},
        "count": 3,
        "ratio": 0.5,
        "ok": True,
        "none": None,
    }
    assert redact(value) == {
        "org_id": "org_1",
        "items": [
            {
                "auth": {
                    "method": "client_credentials",
                    "client_id": "cid",
                    "client_secret": REDACTED,
                }
            },
            ("tuple", {"password": REDACTED}),
        ],
        "tags": ["a"],
        "count": 3,
        "ratio": 0.5,
        "ok": True,
        "none": None,
    }


def test_strings_anywhere_are_scrubbed_as_text() -> None:
    code, token = canary(), canary()
    value = {"url": f"https://acme.okta.com/cb?code={code}&x=1", "notes": [f"Bearer {token}"]}
    result = redact(value)
    assert result == {
        "url": "https://acme.okta.com/cb?code=[REDACTED]&x=1",
        "notes": ["Bearer [REDACTED]"],
    }


def test_keys_are_scrubbed_too() -> None:
    code = canary()
    assert redact({f"https://app.example/cb?code={code}": 1}) == {
        "https://app.example/cb?code=[REDACTED]": 1
    }


@pytest.mark.parametrize("raw", [b"\x00key", bytearray(b"key"), memoryview(b"key")])
def test_bytes_are_never_shown(raw: Any) -> None:
    assert redact({"blob": raw}) == {"blob": REDACTED}
    assert redact([raw]) == [REDACTED]


def test_the_input_is_not_changed() -> None:
    value = {"headers": {"authorization": f"Bearer {canary()}"}, "body": [{"token": canary()}]}
    before = copy.deepcopy(value)
    redact(value)
    assert value == before


# --- code and state -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"error": {"code": "not_found", "message": "Not found."}},
        {"error": {"code": "reauth_required", "message": "Sign in again to do this."}},
        {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}},
        {"backup": {"state": "running"}},
        {"status": "ACTIVE", "state": "LOCKED_OUT"},
        {"code": 404},
        {"code": None},
    ],
    ids=["error", "reauth", "aws-error", "status", "okta-status", "http-status", "none"],
)
def test_error_codes_and_status_words_stay(value: dict[str, Any]) -> None:
    assert redact(value) == value


@pytest.mark.parametrize(
    "build",
    [
        lambda: {"code": canary(), "state": canary()},
        lambda: {"code": "abcdef", "state": "xyzxyz"},  # word-shaped, but a callback query
        lambda: {
            "grant_type": "authorization_code",
            "code": "word",
            "redirect_uri": "https://a/cb",
        },
        lambda: {"error": "access_denied", "error_description": "no", "state": "pending"},
        lambda: {"code": canary()},  # random: never an error code
        lambda: {"state": canary()},
        lambda: {"code": 123456},  # an MFA code
        lambda: {"code": {"value": "x"}},
    ],
    ids=[
        "callback",
        "callback-word-shaped",
        "token-request",
        "error-callback",
        "random-code",
        "random-state",
        "mfa",
        "structure",
    ],
)
def test_oauth_codes_and_states_go(build: Any) -> None:
    value = build()
    result = redact(value)
    for name in ("code", "state"):
        if name in value:
            assert result[name] == REDACTED
    kept = {k: v for k, v in value.items() if k not in ("code", "state")}
    assert {k: v for k, v in result.items() if k not in ("code", "state")} == kept


def test_api_gateway_callback_event(event_loader: Any) -> None:
    code, state, session = canary(), canary(), canary()
    event = event_loader("http_api_v2_base")
    event["rawPath"] = "/oauth/callback"
    event["rawQueryString"] = f"code={code}&state={state}"
    event["queryStringParameters"] = {"code": code, "state": state}
    event["cookies"] = [f"session={session}"]
    event["headers"]["cookie"] = f"session={session}"
    result = redact(event)
    assert_not_leaked(json.dumps(result), code, state, session)
    assert result["rawPath"] == "/oauth/callback"
    assert result["rawQueryString"] == "code=[REDACTED]&state=[REDACTED]"
    assert result["requestContext"]["http"]["method"] == "GET"
    assert result["headers"]["host"] == "api.strongroom.example"


# --- special shapes ---------------------------------------------------------------------------


def test_private_jwk_members_go() -> None:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))
    result = redact({"key": jwk})
    assert result["key"]["d"] == REDACTED
    assert {k: v for k, v in result["key"].items() if k != "d"} == {
        k: v for k, v in jwk.items() if k != "d"
    }
    assert redact({"d": "2026-01-01", "p": "page"}) == {"d": "2026-01-01", "p": "page"}


def test_header_pairs_lose_their_value() -> None:
    token = canary()
    headers = [("Authorization", f"Token {token}"), ("Accept", "application/json")]
    assert redact(headers) == [("Authorization", REDACTED), ("Accept", "application/json")]


def test_pairs_are_read_as_fields_after_a_json_round_trip_and_from_parse_qsl() -> None:
    token, code, state = canary(), "SplxlOBeZQQYbYS6WxSbIA", "af0ifjsldkj4Kq2xZ"
    # Header pairs as lists (what JSON makes of tuples), keeping their type.
    headers = json.loads(json.dumps([("Authorization", f"Token {token}"), ("Accept", "*/*")]))
    assert redact({"headers": headers}) == {
        "headers": [["Authorization", REDACTED], ["Accept", "*/*"]]
    }
    # A callback query as urllib.parse.parse_qsl returns it: an OAuth message, as its dict is.
    query = urllib.parse.parse_qsl(f"code={code}&state={state}")
    assert redact(query) == [("code", REDACTED), ("state", REDACTED)]
    assert redact(tuple(query)) == (("code", REDACTED), ("state", REDACTED))
    assert redact(["code", code]) == ["code", REDACTED]
    # Enumeration words under code/state stay readable, as in a mapping; so do field names.
    assert redact([("code", "not_found"), ("message", "no such org")]) == [
        ("code", "not_found"),
        ("message", "no such org"),
    ]
    assert redact(("state", "pending")) == ("state", "pending")
    assert redact(["code", "state"]) == ["code", "state"]
    # A list that is not only pairs is walked item by item.
    mixed = [("Authorization", f"Bearer {token}"), "note", 3]
    assert redact(mixed) == [("Authorization", REDACTED), "note", 3]


def test_name_value_structures_are_read_as_the_field_they_describe() -> None:
    password, token, key, secret, api_key, code = (canary() for _ in range(6))
    value = {
        "form": {"name": "password", "value": password},
        "header": {"Name": "Authorization", "Value": f"Digest response={token}"},
        "setting": {"key": "client_secret", "value": {"current": key, "previous": key}},
        "field": {"field": "okta_api_token", "values": [secret]},
        # An HTTP header list (HAR, API Gateway v1's multiValue shapes, fetch logs).
        "headers": [
            {"name": "Accept", "value": "application/json"},
            {"name": "X-Api-Key", "value": api_key},
        ],
        "environment": [{"Name": "REGION", "Value": "eu-west-1"}],
        "tags": [{"Key": "team", "Value": "identity"}],
        "parameter": {"Name": "/strongroom/prod/db_password", "Type": "SecureString", "Value": key},
        "status": {"name": "code", "value": "not_found"},
        "mfa": {"name": "code", "value": code},
    }
    assert redact(value) == {
        "form": {"name": "password", "value": REDACTED},
        "header": {"Name": "Authorization", "Value": REDACTED},
        "setting": {"key": "client_secret", "value": REDACTED},
        "field": {"field": "okta_api_token", "values": REDACTED},
        "headers": [
            {"name": "Accept", "value": "application/json"},
            {"name": "X-Api-Key", "value": REDACTED},
        ],
        "environment": [{"Name": "REGION", "Value": "eu-west-1"}],
        "tags": [{"Key": "team", "Value": "identity"}],
        "parameter": {
            "Name": "/strongroom/prod/db_password",
            "Type": "SecureString",
            "Value": REDACTED,
        },
        "status": {"name": "code", "value": "not_found"},
        "mfa": {"name": "code", "value": REDACTED},
    }


def test_a_name_value_structure_as_pairs_is_read_as_the_field_it_describes() -> None:
    # `list(structure.items())`, or `parse_qsl` of a form with `name` and `value` fields.
    secret = canary()
    assert redact([("name", "password"), ("value", secret)]) == [
        ("name", "password"),
        ("value", REDACTED),
    ]
    assert redact([["Key", "client_secret"], ["Type", "text"], ["Value", [secret]]]) == [
        ["Key", "client_secret"],
        ["Type", "text"],
        ["Value", REDACTED],
    ]
    kept = [("name", "Accept"), ("value", "*/*")]
    assert redact(kept) == kept


def test_a_list_of_name_value_structures_is_one_message() -> None:
    # A callback query as a list of name/value structures: an OAuth message, as its dict is.
    query = [{"name": "code", "value": "abcdef"}, {"name": "state", "value": "pending"}]
    assert redact(query) == [
        {"name": "code", "value": REDACTED},
        {"name": "state", "value": REDACTED},
    ]
    statuses = [{"name": "code", "value": "not_found"}, {"name": "scope", "value": "a.read"}]
    assert redact(statuses) == statuses
    # The metadata our API lists for a connection names a field but holds no secret value.
    listed = [{"field": "client_secret", "value": REDACTED, "fingerprint": "9f3a"}]
    assert redact({"credentials": listed}) == {"credentials": listed}


def test_two_credential_field_names_are_a_list_of_names_not_a_pair() -> None:
    # What an audit detail holds: names of sealed fields, which are not secrets.
    assert redact({"fields": ["client_secret", "refresh_token"]}) == {
        "fields": ["client_secret", "refresh_token"]
    }
    assert redact(("access_token", "refresh_token")) == ("access_token", "refresh_token")
    assert redact([["client_secret", "token"]]) == [["client_secret", "token"]]
    # Only those exact names: anything else under a secret name is still its value.
    for value in ("hunter2", "password", "Password", "TopSecret", "refresh token", "Refresh_Token"):
        assert redact(["password", value]) == ["password", REDACTED], value
    assert redact(("client_secret", "api_token")) == ("client_secret", REDACTED)
    token = "gAAAAABlZ3xQ9yTkP2vW8mN4rL1cD7sF0hJ6Dek"  # ends like a secret field name
    assert redact([("refresh_token", token)]) == [("refresh_token", REDACTED)]
    assert redact({"headers": [["X-Api-Key", token]]}) == {"headers": [["X-Api-Key", REDACTED]]}
    form = [("username", "bob"), ("password", "TopSecret")]
    assert redact({"form": form}) == {"form": [("username", "bob"), ("password", REDACTED)]}
    # A token request stays one OAuth message, so an enumeration-shaped code still goes.
    body = "grant_type=authorization_code&code=splxlobezqqybys&redirect_uri=https%3A%2F%2Fa.example"
    assert dict(redact(urllib.parse.parse_qsl(body)))["code"] == REDACTED


def test_cycles_and_deep_nesting_do_not_fail() -> None:
    loop: dict[str, Any] = {"org_id": "org_1"}
    loop["self"] = loop
    assert redact(loop) == {"org_id": "org_1", "self": REDACTED}
    items: list[Any] = []
    items.append(items)
    assert redact(items) == [REDACTED]
    secret = canary()
    deep: Any = secret
    for _ in range(500):
        deep = {"next": deep}
    result = redact(deep)
    assert secret not in json.dumps(result)
    depth = 0
    while isinstance(result, dict):
        result, depth = result["next"], depth + 1
    assert result == REDACTED
    assert depth == 64


def test_shared_references_are_not_cycles() -> None:
    shared = {"org_id": "org_1"}
    assert redact({"a": shared, "b": shared}) == {"a": shared, "b": shared}


@dataclasses.dataclass
class Credentials:
    client_id: str
    client_secret: str


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_other_objects_become_scrubbed_text() -> None:
    secret = canary()
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    result = redact(
        {
            "when": when,
            "credentials": Credentials("cid", secret),
            "error": ValueError(f"refresh_token={secret}"),
            "broken": Unprintable(),
            "proxy": MappingProxyType({"token": secret}),
            ("a", 1): "tuple key",
        }
    )
    assert_not_leaked(json.dumps(result), secret)
    assert result["when"] == str(when)
    assert result["credentials"] == "Credentials(client_id='cid', client_secret='[REDACTED]')"
    assert result["error"] == "refresh_token=[REDACTED]"
    assert result["broken"] == REDACTED
    assert result["proxy"] == {"token": REDACTED}
    assert result["('a', 1)"] == "tuple key"
