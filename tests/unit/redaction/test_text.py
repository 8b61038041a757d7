"""redact_text: every secret class is scrubbed, the text around it stays readable."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from strongroom.redaction import REDACTED, redact_text, safe_exception_text
from strongroom.redaction.keys import (
    CONDITIONAL_NAMES,
    GROUP_SECRET_NAMES,
    SECRET_NAMES,
    SECRET_SUFFIXES,
)
from strongroom.redaction.text import FIELD_NAME_STEMS, URL_CAPABILITY_NAMES
from tests.support.keys import ec_public_key_pem
from tests.unit.redaction.helpers import (
    alphanumeric_canary,
    assert_not_leaked,
    canary,
    fullwidth,
    math_bold,
    pem_body_lines,
    private_key_ders,
    private_key_pems,
)

# A case builds (text, secrets that must go, context that must stay) from fresh canaries.
Case = tuple[str, list[str], list[str]]


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _jwt_segments() -> tuple[str, list[str]]:
    token = jwt.encode(
        {"sub": canary(), "nonce": canary()}, secrets.token_bytes(32), algorithm="HS256"
    )
    return token, token.split(".")


def _case_basic_header() -> Case:
    password = canary()
    credential = _basic("client-id", password)
    return f"Authorization: Basic {credential}", [credential, password], ["Authorization: Basic"]


def _case_basic_bare() -> Case:
    credential = _basic("cid", canary())
    return f"sent Basic {credential} to token endpoint", [credential], ["to token endpoint"]


def _case_jwt_bare() -> Case:
    token, segments = _jwt_segments()
    return f"verifying {token} for org_01ABC", segments, ["verifying", "for org_01ABC"]


def _case_jwt_fragment() -> Case:
    token, segments = _jwt_segments()
    return (
        f"https://app.example/cb#id_token={token}&token_type=Bearer",
        segments,
        ["https://app.example/cb#id_token=", "&token_type=Bearer"],
    )


def _case_jwk_text() -> Case:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk_text = jwt.algorithms.ECAlgorithm.to_jwk(key)
    private = json.loads(jwk_text)["d"]
    return f"loaded key {jwk_text}", [private], ['"kty": "EC"', '"crv": "P-256"']


def _case_presigned_url() -> Case:
    signature = secrets.token_hex(32)
    session_token = canary()
    url = (
        "https://strongroom-backups.s3.amazonaws.com/org_1/bk_1/users.json"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=ASIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
        f"&X-Amz-Security-Token={session_token}&X-Amz-Expires=300&X-Amz-Signature={signature}"
    )
    return (
        url,
        [signature, session_token],
        ["strongroom-backups.s3.amazonaws.com/org_1/bk_1/users.json", "X-Amz-Expires=300"],
    )


def _prefixed(prefix: str, secret: str) -> Case:
    return f"{prefix}{secret} set", [secret], [prefix, " set"]


def _two(build: Callable[[str, str], Case]) -> Callable[[], Case]:
    return lambda: build(canary(), canary())


def _one(build: Callable[[str], Case]) -> Callable[[], Case]:
    return lambda: build(canary())


CASES: dict[str, Callable[[], Case]] = {
    "authorization-bearer": _one(lambda s: (f"Authorization: Bearer {s}", [s], ["Authorization"])),
    "authorization-bearer-lowercase": _one(
        lambda s: (f"authorization: bearer {s}", [s], ["authorization: bearer"])
    ),
    "bare-bearer": _one(
        lambda s: (f"retrying with Bearer {s} after 401", [s], ["retrying with", "after 401"])
    ),
    "bearer-in-json": _one(
        lambda s: (
            json.dumps({"headers": {"Authorization": f"Bearer {s}"}}),
            [s],
            ['{"headers": {'],
        )
    ),
    "bearer-in-python-repr": _one(
        lambda s: (f"{{'authorization': 'Bearer {s}', 'accept': '*/*'}}", [s], ["'accept': '*/*'"])
    ),
    "ssws-header": _one(lambda s: (f"Authorization: SSWS {s}", [s], ["Authorization"])),
    "ssws-bare": _one(
        lambda s: (f"okta refused SSWS {s} (401) for acme", [s], ["okta refused", "for acme"])
    ),
    "basic-header": _case_basic_header,
    "basic-bare": _case_basic_bare,
    "json-client-secret": _one(
        lambda s: (
            f'{{"client_id": "cid-123", "client_secret": "{s}", "scope": "okta.users.read"}}',
            [s],
            ['"client_id": "cid-123"', '"scope": "okta.users.read"'],
        )
    ),
    "compact-json-client-secret": _one(
        lambda s: (f'{{"clientSecret":"{s}","org":"org_1"}}', [s], ['"org":"org_1"'])
    ),
    "escaped-json-client-secret": _one(
        lambda s: (f'body={{\\"client_secret\\": \\"{s}\\", \\"x\\": 1}}', [s], ['\\"x\\": 1'])
    ),
    "repr-client-secret": _one(
        lambda s: (f"{{'client_secret': '{s}', 'client_id': 'cid'}}", [s], ["'client_id': 'cid'"])
    ),
    "dataclass-repr-client-secret": _one(
        lambda s: (f"Auth(client_id='cid', client_secret='{s}')", [s], ["Auth(client_id='cid'"])
    ),
    "form-client-secret": _one(
        lambda s: (
            f"grant_type=client_credentials&client_id=cid&client_secret={s}&scope=a.b",
            [s],
            ["grant_type=client_credentials&client_id=cid&client_secret=", "&scope=a.b"],
        )
    ),
    "logfmt-client-secret": _one(
        lambda s: (f"client_secret={s} org_id=org_1", [s], ["org_id=org_1"])
    ),
    "yaml-client-secret": _one(
        lambda s: (f"client-secret: {s}\norg_id: org_1", [s], ["\norg_id: org_1"])
    ),
    "password-logfmt": _one(
        lambda s: (f"login failed password={s} user=alice", [s], ["user=alice"])
    ),
    "password-quoted-with-spaces": _two(
        lambda s, t: (f'password="{s} {t}" user=alice', [s, t], ["user=alice"])
    ),
    "aws-env-secret-access-key": _one(
        lambda s: (f"AWS_SECRET_ACCESS_KEY={s} AWS_REGION=us-east-1", [s], ["AWS_REGION=us-east-1"])
    ),
    "aws-credentials-file": _two(
        lambda s, t: (
            f"aws_secret_access_key = {s}\naws_session_token = {t}\nregion = eu-west-1",
            [s, t],
            ["region = eu-west-1"],
        )
    ),
    "aws-sts-json": _two(
        lambda s, t: (
            f'{{"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "{s}", "SessionToken": "{t}"}}',
            [s, t],
            ['"AccessKeyId": "ASIAEXAMPLE"'],
        )
    ),
    "aws-session-token-bare": _one(
        lambda s: (f"using IQoJb3JpZ2lu{s}{s} now", [s], ["using IQoJb3JpZ2lu", "now"])
    ),
    "jwt-bare": _case_jwt_bare,
    "jwt-fragment": _case_jwt_fragment,
    "stripe-secret-key": lambda: _prefixed("stripe key sk_live_", alphanumeric_canary()),
    "stripe-restricted-key": lambda: _prefixed("rk_test_", alphanumeric_canary()),
    "webhook-signing-secret": lambda: _prefixed(
        "secret whsec_", base64.b64encode(secrets.token_bytes(24)).decode()
    ),
    "github-token": lambda: _prefixed("ghp_", alphanumeric_canary(36)),
    "slack-token": lambda: _prefixed("xoxb-", "1234567890-" + alphanumeric_canary(24)),
    "url-userinfo": _one(
        lambda s: (
            f"postgres://admin:{s}@db.internal:5432/app",
            [s],
            ["postgres://admin:", "@db.internal:5432/app"],
        )
    ),
    "cookie-header": _two(
        lambda s, t: (f"Cookie: session={s}; csrf={t}\nnext", [s, t], ["Cookie:", "\nnext"])
    ),
    "set-cookie-header": _one(
        lambda s: (f"Set-Cookie: sid={s}; Path=/; HttpOnly", [s], ["Set-Cookie:"])
    ),
    "x-api-key-header": _one(lambda s: (f"X-Api-Key: {s}", [s], ["X-Api-Key:"])),
    "presigned-url": _case_presigned_url,
    "jwk-text": _case_jwk_text,
}


@pytest.mark.parametrize("build", CASES.values(), ids=CASES.keys())
def test_each_secret_class_is_scrubbed_and_context_kept(build: Callable[[], Case]) -> None:
    text, secret_values, kept = build()
    redacted = redact_text(text)
    assert_not_leaked(redacted, *secret_values)
    assert REDACTED in redacted
    for context in kept:
        assert context in redacted


URL_PARAMETERS = (
    "code",
    "state",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "code_verifier",
    "password",
    "api_key",
    "X-Amz-Signature",
)

# Where a parameter may sit: {name} and {value} are filled in; the rest must stay.
URL_PLACES = {
    "query-first": "https://acme.okta.com/oauth2/v1/callback?{name}={value}&x=1",
    "query-middle": "GET https://acme.okta.com/cb?a=1&{name}={value}&b=2 -> 302",
    "query-last": "redirecting to https://app.example/cb?a=1&{name}={value}",
    "fragment": "https://app.example/cb#{name}={value}&expires_in=3600",
    "form-body": "{name}={value}&grant_type=authorization_code",
    "percent-encoded": "redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3F{name}%3D{value}%26x%3D1",
    "double-encoded": "u=https%253A%252F%252Fapp%252Fcb%253Fa%253D1%2526{name}%253D{value}%2526z",
    "upper-case-name": "https://app.example/cb?{upper}={value}&x=1",
}


@pytest.mark.parametrize("name", URL_PARAMETERS)
@pytest.mark.parametrize("place", URL_PLACES.values(), ids=URL_PLACES.keys())
def test_url_and_form_parameters_are_scrubbed(name: str, place: str) -> None:
    value = canary()
    text = place.format(name=name, upper=name.upper(), value=value)
    redacted = redact_text(text)
    assert_not_leaked(redacted, value)
    expected = place.format(name=name, upper=name.upper(), value=REDACTED)
    assert redacted == expected


def test_url_context_code_and_state_go_even_when_they_look_like_words() -> None:
    assert (
        redact_text("https://app.example/cb?code=abcdef&state=pending")
        == "https://app.example/cb?code=[REDACTED]&state=[REDACTED]"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "https://idp.example/cb?code=SplxlOBeZQQYbYS6WxSbIA&x=1",
            "https://idp.example/cb?code=[REDACTED]&x=1",
        ),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [REDACTED]"),
        ("Authorization: Digest username=x, response=y", "Authorization: [REDACTED]"),
        (
            '{"client_secret": "s3cr3t-value", "client_id": "cid"}',
            '{"client_secret": "[REDACTED]", "client_id": "cid"}',
        ),
        ("{'dek': b'\\x01\\x02\\x03'}", "{'dek': b'[REDACTED]'}"),
        ('{"private_key": {"kty": "EC", "d": "abc"}}', '{"private_key": [REDACTED]}'),
        ('{"tokens": ["t1-abcdef", "t2-abcdef"], "n": 2}', '{"tokens": [REDACTED], "n": 2}'),
        ("postgres://app:pa55word@db:5432/x", "postgres://app:[REDACTED]@db:5432/x"),
        ("client_secret=&scope=x", "client_secret=&scope=x"),
        # An unquoted value runs on to the next field or the line's end: where a password with
        # spaces or `;` ends cannot be told (the next field's word and the next line stay).
        ("password=correct horse battery staple", "password=[REDACTED]"),
        ("password: Tr0ub4dor;&3x", "password: [REDACTED]"),
        ("password=a b c user=bob\nnext line", "password=[REDACTED] user=bob\nnext line"),
        ("client_secret=S1 cb?code=C&x=1", "client_secret=[REDACTED] cb?code=[REDACTED]&x=1"),
        ("token=abc&user=bob", "token=[REDACTED]&user=bob"),
        ("{token=abc, user=bob}", "{token=[REDACTED], user=bob}"),
        # The next field glued to a separator; a value that starts with a delimiter, or goes on
        # past its closing quote or bracket.
        ("password=correct horse;user=bob", "password=[REDACTED];user=bob"),
        ("password=correct horse,user=bob", "password=[REDACTED],user=bob"),
        ("password=)Abc def", "password=[REDACTED]"),
        ("password='ab'cd ef", "password=[REDACTED]"),
        ("password={ab}cd ef x=1", "password=[REDACTED] x=1"),
        ('{"password":123,"user":"bob"}', '{"password":[REDACTED],"user":"bob"}'),
        # `code`/`state` name many harmless things: their value still ends at a space.
        ("state=active since today", "state=active since today"),
    ],
)
def test_readable_output(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_readable_output_of_an_okta_api_token() -> None:
    token = "00" + alphanumeric_canary(40)  # shaped like an Okta API token, made fresh
    assert redact_text(f"Authorization: SSWS {token}") == "Authorization: SSWS [REDACTED]"


NOT_SECRETS = [
    "backup finished for org_01HZX connection con_01HZY in 1234 ms",
    "GET /orgs/org_01HZX/connections?limit=10&cursor=abc123 -> 200",
    "https://acme.okta.com/api/v1/users?limit=200&after=00u1abcdef",
    '{"error": {"code": "not_found", "message": "Not found."}}',
    "error code=not_found state=running",
    "state: pending, code: AccessDenied",
    '{"code": "invalid_grant", "state": "LOCKED_OUT"}',
    "HTTP status code: 404 returned",
    "missing bearer token",
    'WWW-Authenticate: Bearer realm="strongroom", error="invalid_token"',
    "Basic validation failed for the request",
    "token_endpoint=https://acme.okta.com/oauth2/v1/token expires_in=3600",
    '{"token_type": "Bearer", "expires_in": 3600, "scope": "okta.users.read"}',
    "secret_arn=arn:aws:secretsmanager:us-east-1:123456789012:secret:strongroom/webhooks-AbCd",
    "key=org_1/bk_1/users.json key_id=kid-2025 kid=kid-2025",
    "client_secret_expires_at=0 private_key_id=pk-1 secret_last4=9f3a",
    "alias/strongroom-dev/org/org_01HZX",
    ec_public_key_pem(),  # a public key is not a secret
    "level=INFO location=handler:12 timestamp=2026-11-23T10:00:00Z",
    "",
]


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "template",
    [
        '{{"code": "{value}"}}',
        "error code={value}",
        "state: {value}",
        "'state': '{value}'",
    ],
)
def test_code_and_state_pairs_go_unless_they_look_like_enumeration_words(template: str) -> None:
    value = canary()
    assert_not_leaked(redact_text(template.format(value=value)), value)
    for word in ("not_found", "AccessDenied", "ACTIVE", "pending", "404"):
        text = template.format(value=word)
        assert redact_text(text) == text


def _every_field_name() -> list[str]:
    names = sorted(SECRET_NAMES | GROUP_SECRET_NAMES)
    return names + [f"my_{suffix}" for suffix in SECRET_SUFFIXES]


@pytest.mark.parametrize("name", _every_field_name())
@pytest.mark.parametrize("template", ['"{name}": "{value}"', "{name}={value}", "{name}: {value}"])
def test_every_secret_field_name_is_recognised_in_text(name: str, template: str) -> None:
    value = canary()
    redacted = redact_text(template.format(name=name, value=value))
    assert_not_leaked(redacted, value)
    assert name in redacted


def test_field_name_stems_cover_the_vocabulary() -> None:
    # The key-value and URL passes are skipped for text without a stem: a name without one
    # would never be redacted in free text.
    names = SECRET_NAMES | set(SECRET_SUFFIXES) | CONDITIONAL_NAMES | URL_CAPABILITY_NAMES
    names |= GROUP_SECRET_NAMES
    assert [name for name in names if FIELD_NAME_STEMS.search(name) is None] == []


@pytest.fixture(scope="module")
def pems() -> dict[str, str]:
    return private_key_pems()


PEM_FLAVOURS = [
    "rsa-pkcs8",
    "rsa-traditional",
    "ec-pkcs8",
    "ec-traditional",
    "ed25519-pkcs8",
    "ec-openssh",
    "rsa-pkcs8-encrypted",
]


@pytest.mark.parametrize("flavour", PEM_FLAVOURS)
def test_pem_private_key_in_a_message(pems: dict[str, str], flavour: str) -> None:
    pem = pems[flavour]
    header = pem.splitlines()[0]
    redacted = redact_text(f"loaded key\n{pem}for connection con_1")
    assert_not_leaked(redacted, *pem_body_lines(pem))
    assert f"{header}{REDACTED}-----END" in redacted
    assert redacted.startswith("loaded key\n")
    assert redacted.endswith(f"{pem.splitlines()[-1]}\nfor connection con_1")


@pytest.mark.parametrize("flavour", PEM_FLAVOURS)
def test_pem_private_key_in_json_text(pems: dict[str, str], flavour: str) -> None:
    pem = pems[flavour]
    # Whole key in a JSON body (escaped newlines), as an API request would carry it.
    text = json.dumps({"auth": {"method": "private_key_jwt", "key_id": "kid-1", "pem": pem}})
    redacted = redact_text(text)
    assert_not_leaked(redacted, *pem_body_lines(pem))
    assert '"key_id": "kid-1"' in redacted


@pytest.mark.parametrize("flavour", PEM_FLAVOURS)
def test_truncated_pem_private_key_is_redacted_to_the_end(
    pems: dict[str, str], flavour: str
) -> None:
    pem = pems[flavour]
    truncated = pem[: len(pem) // 2]
    redacted = redact_text(f"bad key: {truncated}")
    assert_not_leaked(redacted, *pem_body_lines(truncated))
    assert redacted == f"bad key: {pem.splitlines()[0]}{REDACTED}"


@pytest.fixture(scope="module")
def ders() -> dict[str, bytes]:
    return private_key_ders()


@pytest.mark.parametrize(
    "flavour", ["rsa-pkcs8", "rsa-traditional", "ec-pkcs8", "ec-traditional", "ed25519-pkcs8"]
)
@pytest.mark.parametrize("wrapped", [False, True], ids=["one-line", "wrapped"])
def test_base64_der_private_key_without_armour(
    ders: dict[str, bytes], flavour: str, wrapped: bool
) -> None:
    der = base64.b64encode(ders[flavour]).decode()
    body = "\n".join(der[i : i + 64] for i in range(0, len(der), 64)) if wrapped else der
    redacted = redact_text(f"key for con_1: {body} (uploaded)")
    assert_not_leaked(redacted, *body.splitlines())
    assert redacted.startswith("key for con_1: ")


def test_output_is_stable_when_redacted_again() -> None:
    for build in CASES.values():
        once = redact_text(build()[0])
        assert redact_text(once) == once


def test_a_whole_text_without_whitespace_is_read_as_a_form_body() -> None:
    # Form encoding has no raw whitespace, prose always has some: `code`/`state` at the start of
    # a body are OAuth's whatever they look like; in prose they are judged by shape.
    assert redact_text("state=running") == "state=[REDACTED]"
    assert redact_text("code=abc&state=def") == "code=[REDACTED]&state=[REDACTED]"
    assert redact_text("state=running for con_1") == "state=running for con_1"


# --- safe_exception_text ----------------------------------------------------------------------


def test_exception_text_is_scrubbed_and_has_no_traceback() -> None:
    token = canary()
    try:
        raise ValueError(f"token exchange failed: refresh_token={token}")
    except ValueError as exc:
        text = safe_exception_text(exc)
    assert text == "ValueError: token exchange failed: refresh_token=[REDACTED]"


def test_exception_chains_are_followed_and_each_link_scrubbed(pems: dict[str, str]) -> None:
    cause_token, context_secret, pem = canary(), canary(), pems["ec-pkcs8"]
    try:
        try:
            try:
                raise KeyError(f"client_secret={context_secret}")
            except KeyError:
                raise ConnectionError(f"Bearer {cause_token} refused, key {pem[:80]}") from None
        except ConnectionError as exc:
            raise RuntimeError("refresh failed") from exc
    except RuntimeError as exc:
        text = safe_exception_text(exc)
    assert_not_leaked(text, cause_token, context_secret, *pem_body_lines(pem[:80]))
    # `from None` ends the chain: the KeyError is not shown at all.
    assert text == (
        "RuntimeError: refresh failed; caused by: ConnectionError: Bearer [REDACTED] refused, "
        f"key {pem.splitlines()[0]}[REDACTED]"
    )


def test_implicit_context_is_followed() -> None:
    secret = canary()
    try:
        try:
            raise ValueError(f'{{"client_secret": "{secret}"}}')
        except ValueError:
            raise TypeError("while handling")  # noqa: B904 - the implicit context is the point
    except TypeError as exc:
        text = safe_exception_text(exc)
    assert (
        text == 'TypeError: while handling; caused by: ValueError: {"client_secret": "[REDACTED]"}'
    )


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("broken")


def test_unprintable_empty_and_long_exceptions() -> None:
    assert safe_exception_text(_Unprintable()) == "_Unprintable: <unprintable>"
    assert safe_exception_text(ValueError()) == "ValueError"
    long = safe_exception_text(ValueError("x" * 5000), max_length=100)
    assert len(long) == 100
    assert long.endswith("...")


# --- line breaks and Unicode whitespace around a value ------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # A value on the line after its name (YAML style), perhaps after blank lines.
        ("password:\n  {s}", "password:\n  [REDACTED]"),
        ("password=\n{s}", "password=\n[REDACTED]"),
        ("client_secret:\n  {s} {t}\norg_id: org_1", "client_secret:\n  [REDACTED]\norg_id: org_1"),
        ("password:\r\n\r\n  {s}\r\nuser: bob", "password:\r\n\r\n  [REDACTED]\r\nuser: bob"),
        (
            '"password":\n  "{s} {t}",\n  "user": "bob"',
            '"password":\n  "[REDACTED]",\n  "user": "bob"',
        ),
        ("error code:\n  {s}", "error code:\n  [REDACTED]"),
        # A no-break space, an ideographic space or an em space around the separator.
        ("password=\u00a0{s}", "password=\u00a0[REDACTED]"),
        ("password\u00a0=\u00a0{s} {t}", "password\u00a0=\u00a0[REDACTED]"),
        ("password:\u3000{s}\nuser: bob", "password:\u3000[REDACTED]\nuser: bob"),
        (
            '"client_secret":\u2003"{s} {t}", "org": "org_1"',
            '"client_secret":\u2003"[REDACTED]", "org": "org_1"',
        ),
        ("code=\u00a0{s}", "code=\u00a0[REDACTED]"),
        # A lone carriage return is no line end: the run-on value goes on past it.
        ("password={s} {t}\r{s} {t}", "password=[REDACTED]"),
        ("password={s}\r\nuser=bob", "password=[REDACTED]\r\nuser=bob"),
        ("Authorization: Digest {s}\r{t}", "Authorization: [REDACTED]"),
    ],
)
def test_values_after_line_breaks_and_unicode_spaces(template: str, expected: str) -> None:
    s, t = canary(), canary()
    redacted = redact_text(template.format(s=s, t=t))
    assert_not_leaked(redacted, s, t)
    assert redacted == expected


@pytest.mark.parametrize(
    "text",
    [
        # An empty value: the next line is a field of its own, not the value.
        "client_secret=\nscope=x",
        "password:\n  user: bob",
        "aws_secret_access_key =\r\nregion = eu-west-1",
        # A status word after a line break under `code`/`state` is still a status word.
        "state:\n  pending",
    ],
)
def test_a_field_on_the_next_line_is_not_taken_for_a_value(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # A YAML block scalar: its header ends the name's line, its indented lines are the value.
        ("password: |\n  {s}\n  {t}\nuser: bob", "password: [REDACTED]\nuser: bob"),
        (
            "config:\n  client_secret: >-\n    {s}\n\n    {t}\n  org_id: org_1",
            "config:\n  client_secret: [REDACTED]\n  org_id: org_1",
        ),
        ("private_key: |+ # PEM body\n  {s}\n  {t}\n", "private_key: [REDACTED]\n"),
        ("token: |2\r\n  {s}\r\n  {t}\r\nscope: x", "token: [REDACTED]\r\nscope: x"),
        ("Authorization: >\n  Digest {s}\n   {t}", "Authorization: [REDACTED]"),
        # No indented line below: the header is all there is, and it goes.
        ("password: |\nuser: bob", "password: [REDACTED]\nuser: bob"),
    ],
)
def test_yaml_block_scalars_are_redacted_whole(template: str, expected: str) -> None:
    s, t = canary(), canary()
    redacted = redact_text(template.format(s=s, t=t))
    assert_not_leaked(redacted, s, t)
    assert redacted == expected


# --- long field names ---------------------------------------------------------------------------

_LONG_PREFIX = "my_service_account_primary_production_eu_west_1_backup_integration_okta_9_"


@pytest.mark.parametrize("extra", [0, 1, 37, 200, 5000], ids=lambda n: f"prefix+{n}")
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{name}={s} {t} user=bob", "{name}=[REDACTED] user=bob"),
        ('{{"{name}": "{s}", "org": "org_1"}}', '{{"{name}": "[REDACTED]", "org": "org_1"}}'),
        (
            "https://app.example/cb?x=1&{name}={s}&y=2",
            "https://app.example/cb?x=1&{name}=[REDACTED]&y=2",
        ),
    ],
    ids=["logfmt", "json", "query"],
)
def test_field_names_of_any_length_are_recognised(template: str, expected: str, extra: int) -> None:
    s, t = canary(), canary()
    name = _LONG_PREFIX + "9-x." * extra + "client_secret"
    redacted = redact_text(template.format(name=name, s=s, t=t))
    assert_not_leaked(redacted, s, t)
    assert redacted == expected.format(name=name)


# --- compatibility forms of names ---------------------------------------------------------------


def _circled(text: str) -> str:
    """`text` with each ASCII letter in its CIRCLED LATIN form (a symbol, not a letter)."""
    return "".join(
        chr(0x24B6 + ord(char) - ord("A"))
        if "A" <= char <= "Z"
        else chr(0x24D0 + ord(char) - ord("a"))
        if "a" <= char <= "z"
        else char
        for char in text
    )


def _squared(text: str) -> str:
    """`text` (capital ASCII letters) in its SQUARED LATIN CAPITAL form."""
    return "".join(chr(0x1F130 + ord(char) - ord("A")) for char in text)


# Characters whose normal form (NFKC) is longer than they are: a square kilogram and a ligature.
_EXPANDING = "\u338f\ufb03"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (fullwidth("password") + "=hunter2 {s}", fullwidth("password") + "=[REDACTED]"),
        (
            fullwidth("CLIENT_SECRET=") + "{s} user=bob",
            fullwidth("CLIENT_SECRET=") + "[REDACTED] user=bob",
        ),
        (
            '{{"' + math_bold("password") + '": "{s}", "org": "org_1"}}',
            '{"' + math_bold("password") + '": "[REDACTED]", "org": "org_1"}',
        ),
        ("client_secret\uff1a{s}\nnext", "client_secret\uff1a[REDACTED]\nnext"),
        ("\uff30assword\ufe55 {s}", "\uff30assword\ufe55 [REDACTED]"),
        ("client_\u017fecret={s}", "client_\u017fecret=[REDACTED]"),
        # Invisible characters inside a name (soft hyphen, zero-width space) are dropped.
        ("pass\u00adword={s}", "pass\u00adword=[REDACTED]"),
        ("api\u200b_key: {s}", "api\u200b_key: [REDACTED]"),
        (fullwidth("API-KEY=") + "{s}", fullwidth("API-KEY=") + "[REDACTED]"),
        # Characters whose normal form is longer than they are, before and after: the
        # original text is kept, and only the value's own span is replaced.
        (
            f"{_EXPANDING} {fullwidth('password=')}{{s}} {_EXPANDING} {fullwidth('user=')}\ufb03",
            f"{_EXPANDING} {fullwidth('password=')}[REDACTED] {fullwidth('user=')}\ufb03",
        ),
        (fullwidth("code") + "={s}", fullwidth("code") + "=[REDACTED]"),
        # Letters that are symbols (circled, squared): NFKC gives the letters back.
        (_circled("password") + "={s}", _circled("password") + "=[REDACTED]"),
        (_squared("CLIENT") + "_" + _circled("secret") + ": {s}", None),
    ],
)
def test_compatibility_forms_of_secret_names_are_recognised(
    template: str, expected: str | None
) -> None:
    s = canary()
    redacted = redact_text(template.format(s=s))
    assert_not_leaked(redacted, s, "hunter2")
    assert redacted == (expected or template.format(s=REDACTED))


@pytest.mark.parametrize(
    "text",
    [
        fullwidth("token_endpoint=") + "https://acme.okta.com/oauth2/v1/token",
        fullwidth("Name") + ": \u5c71\u7530, " + fullwidth("state") + ": pending",
        fullwidth("secret_arn=") + f"arn:aws:secretsmanager:us-east-1:1:secret:x {_EXPANDING}",
        fullwidth("key_id=") + "kid-1 " + fullwidth("credential_id=") + "cred_1",
    ],
)
def test_compatibility_forms_of_harmless_names_stay(text: str) -> None:
    assert redact_text(text) == text


# --- more secret names, and the project's own metadata --------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("pwd={s} user=bob", "pwd=[REDACTED] user=bob"),
        # Without whitespace, read as a form body: a `;`-separated value runs on to its end.
        ("Server=db;Uid=sa;Pwd={s};Database=app", "Server=db;Uid=sa;Pwd=[REDACTED]"),
        (
            "Server=db; Uid=sa; Pwd={s}; Database=app",
            "Server=db; Uid=sa; Pwd=[REDACTED]; Database=app",
        ),
        ('{{"db_pwd": "{s}", "db_user": "app"}}', '{"db_pwd": "[REDACTED]", "db_user": "app"}'),
        ("passwd: {s}", "passwd: [REDACTED]"),
        ("mfa_passcode={s}", "mfa_passcode=[REDACTED]"),
        ("aws_secret_key={s}", "aws_secret_key=[REDACTED]"),
        # `credential(s)` holding one value is a secret; holding fields, its fields decide.
        ("credentials={s} for org_1", "credentials=[REDACTED]"),
        (
            '{{"credential": "{s}", "kind": "basic"}}',
            '{"credential": "[REDACTED]", "kind": "basic"}',
        ),
        ("Credentials: ['{s}']", "Credentials: [REDACTED]"),
        (
            '{{"credentials": {{"password": "{s}", "provider": "OKTA"}}}}',
            '{"credentials": {"password": "[REDACTED]", "provider": "OKTA"}}',
        ),
    ],
)
def test_more_secret_names_are_recognised(template: str, expected: str) -> None:
    s = canary()
    redacted = redact_text(template.format(s=s))
    assert_not_leaked(redacted, s)
    assert redacted == expected


@pytest.mark.parametrize(
    "text",
    [
        # Metadata the project logs or returns, and names that only look like secret ones.
        "credential_id=cred_1 key_id=kid-1 credentials_updated_at=2026-01-01T00:00:00Z",
        "private_key_id=pk-1 secret_key_id=sk-1 pwd_changed=true",
        '{"credentials": [{"field": "token", "value": "[REDACTED]", "fingerprint": "9f3a"}]}',
        "Connection(credentials=[Credential(field='token', fingerprint='9f3a')], status='active')",
        "X-Amz-Credential=ASIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Expires=300",
        "credentials_replaced for con_1; credentials: []",
    ],
)
def test_metadata_next_to_secret_names_stays(text: str) -> None:
    assert redact_text(text) == text


# --- name/value structures in text --------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            '[{{"name": "Accept", "value": "*/*"}}, {{"name": "X-Api-Key", "value": "{s}"}}]',
            '[{"name": "Accept", "value": "*/*"}, {"name": "X-Api-Key", "value": "[REDACTED]"}]',
        ),
        (
            "{{'Name': 'Authorization', 'Value': 'Digest {s}, {t}'}}",
            "{'Name': 'Authorization', 'Value': '[REDACTED]'}",
        ),
        (
            '{{"key":"client_secret","value":"{s} {t}"}}',
            '{"key":"client_secret","value":"[REDACTED]"}',
        ),
        ("name=password value={s} {t} user=bob", "name=password value=[REDACTED] user=bob"),
        (
            'body={{\\"field\\": \\"password\\", \\"values\\": [\\"{s}\\"]}}',
            'body={\\"field\\": \\"password\\", \\"values\\": [REDACTED]}',
        ),
        ('{{"name": "code", "value": "{s}"}}', '{"name": "code", "value": "[REDACTED]"}'),
    ],
)
def test_name_value_structures_in_text_lose_their_secret_values(
    template: str, expected: str
) -> None:
    s, t = canary(), canary()
    redacted = redact_text(template.format(s=s, t=t))
    assert_not_leaked(redacted, s, t)
    assert redacted == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # SSM's GetParameter answer (Name, Type, Value), as json.dumps and as a repr.
        (
            '{{"Parameter": {{"Name": "/strongroom/prod/db_password", "Type": "SecureString", '
            '"Value": "{s}", "Version": 1}}}}',
            '{"Parameter": {"Name": "/strongroom/prod/db_password", "Type": "SecureString", '
            '"Value": "[REDACTED]", "Version": 1}}',
        ),
        (
            '{{\n  "name": "X-Api-Key",\n  "comment": "",\n  "value": "{s} {t}"\n}}',
            '{\n  "name": "X-Api-Key",\n  "comment": "",\n  "value": "[REDACTED]"\n}',
        ),
        (
            "{{'key': 'client_secret', 'type': 'text', 'version': 2, 'value': '{s}'}}",
            "{'key': 'client_secret', 'type': 'text', 'version': 2, 'value': '[REDACTED]'}",
        ),
        ("name=password type=text value={s} {t}", "name=password type=text value=[REDACTED]"),
    ],
)
def test_a_value_field_after_other_fields_of_its_structure_is_judged_by_its_name(
    template: str, expected: str
) -> None:
    s, t = canary(), canary()
    redacted = redact_text(template.format(s=s, t=t))
    assert_not_leaked(redacted, s, t)
    assert redacted == expected


@pytest.mark.parametrize(
    "text",
    [
        '[{"Key": "team", "Value": "identity"}, {"name": "Acme Okta", "value": 3}]',
        '{"name": "code", "value": "not_found"}',
        # The value is not the next field of the structure.
        '{"name": "password", "message": "too short", "value_kind": "text"}',
        '{"key": "org_1/bk_1/users.json", "value": "etag-1"}',
        # The value field of another structure, or of one nested in this one.
        '[{"name": "password", "hint": "long"}, {"name": "user", "value": "bob"}]',
        '{"name": "password", "rules": {"min": 8}, "value_count": 1} {"value": "bob"}',
    ],
)
def test_name_value_structures_without_secrets_stay(text: str) -> None:
    assert redact_text(text) == text


# --- pairs in text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # A header list as a repr of tuples, as JSON after a round trip, as ASGI's bytes.
        (
            "[('Authorization', 'Digest {s}, {t}'), ('Accept', '*/*')]",
            "[('Authorization', '[REDACTED]'), ('Accept', '*/*')]",
        ),
        (
            '[["X-Api-Key", "{s}"], ["Accept", "*/*"]]',
            '[["X-Api-Key", "[REDACTED]"], ["Accept", "*/*"]]',
        ),
        ("headers=[(b'cookie', b'session={s}')]", "headers=[(b'cookie', b'[REDACTED]')]"),
        ("('password', '{s} {t}')", "('password', '[REDACTED]')"),
        (
            "[('credentials', '{s}'), ('code', '{t}')]",
            "[('credentials', '[REDACTED]'), ('code', '[REDACTED]')]",
        ),
        ("('otp', 123456)", "('otp', [REDACTED])"),
    ],
)
def test_pairs_in_text_lose_their_secret_values(template: str, expected: str) -> None:
    s, t = canary(), canary()
    redacted = redact_text(template.format(s=s, t=t))
    assert_not_leaked(redacted, s, t, "123456")
    assert redacted == expected


@pytest.mark.parametrize(
    "text",
    [
        # Two of our credential field names are a list of names (an audit entry's fields).
        "{'method': 'oauth2', 'fields': ['client_secret', 'refresh_token']}",
        "[('token_endpoint', 'https://acme.okta.com/oauth2/v1/token'), ('scope', 'a.read')]",
        "[('code', 'not_found'), ('state', 'pending')]",
        "[('Accept', '*/*'), ('X-Request-Id', 'req-1')]",
    ],
)
def test_pairs_in_text_without_secrets_stay(text: str) -> None:
    assert redact_text(text) == text


def test_a_run_on_value_may_end_at_every_whitespace_character_python_knows() -> None:
    """The whitespace that may end a run-on value is written out (computing it cost every cold
    start 1.5 ms): it must be exactly what `str.isspace` accepts, in this Python's Unicode."""
    from strongroom.redaction import text

    every_space = {char for char in map(chr, range(0x110000)) if char.isspace()}
    assert set(text._RUN_ON_TAIL) == every_space | set(",;&")
