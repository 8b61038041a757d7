"""Property-style checks with a seeded random loop (hypothesis is not available).

Random tokens, drawn from the alphabet each kind of secret really uses, are embedded in each
template and wrapped in random surroundings (prose, a JSON string, a Python repr); no fragment
of any token may survive. Seeds are fixed, so a failure reproduces exactly.
"""

from __future__ import annotations

import io
import json
import random
import string

import pytest

from strongroom.redaction import get_logger, redact, redact_text
from tests.support.keys import pem_armour
from tests.unit.redaction.helpers import assert_not_leaked

ITERATIONS = 150

BASE64URL = string.ascii_letters + string.digits + "-_"
BASE64 = string.ascii_letters + string.digits + "+/"
ALPHANUMERIC = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64TOKEN = BASE64URL + ".~+/"  # RFC 6750 bearer token characters
# What a client secret or password may hold inside quotes: anything but the quote and backslash.
QUOTABLE = "".join(c for c in string.printable if c not in "\"'\\\n\r\t\x0b\x0c")
URL_SAFE_PASSWORD = BASE64URL + ".~!$*+"

PARAMETERS = (
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
)

# PEM armour of keys generated in this process: traditional (EC) and PKCS#8.
_TRADITIONAL = pem_armour("traditional")
_PKCS8 = pem_armour("pkcs8")
# (template with {t0}, {t1}, ... placeholders, alphabet of the tokens)
TEMPLATES: list[tuple[str, str]] = [
    ("Authorization: Bearer {t0}", B64TOKEN),
    ("sent bearer {t0} upstream", B64TOKEN),
    ("Authorization: SSWS {t0}", BASE64URL),
    ('{{"client_secret": "{t0}", "client_id": "cid"}}', QUOTABLE),
    ("{{'client_secret': '{t0}', 'client_id': 'cid'}}", QUOTABLE),
    ('password="{t0}" user=alice', QUOTABLE),
    ("client_secret={t0} org=org_1", URL_SAFE_PASSWORD),
    ("password: {t0}", URL_SAFE_PASSWORD),
    ("aws_secret_access_key={t0}", BASE64),
    ('"SessionToken": "{t0}"', BASE64),
    (f"{_TRADITIONAL[0]}\n{{t0}}\n{{t1}}\n{_TRADITIONAL[1]}", BASE64),
    (f"{_PKCS8[0]}\n{{t0}}\n{{t1}}", BASE64),
    ("eyJ{t0}.{t1}.{t2}", BASE64URL),
    ("sk_live_{t0}", ALPHANUMERIC),
    ("whsec_{t0}", BASE64),
    ("ghp_{t0}", ALPHANUMERIC),
    ("postgres://app:{t0}@db.internal:5432/x", URL_SAFE_PASSWORD),
    ("Cookie: sid={t0}; csrf={t1}", BASE64URL),
    ("https://bucket.s3.amazonaws.com/k?X-Amz-Signature={t0}&X-Amz-Expires=60", HEX),
]
for _name in PARAMETERS:
    TEMPLATES += [
        (f"https://acme.okta.com/cb?{_name}={{t0}}&x=1", BASE64URL),
        (f"https://acme.okta.com/cb?a=1&{_name}={{t0}}", BASE64URL + "%"),
        (f"https://app.example/cb#{_name}={{t0}}", BASE64URL),
        (f"{_name}={{t0}}&grant_type=authorization_code", BASE64URL),
        (f"r=https%3A%2F%2Fapp%2Fcb%3F{_name}%3D{{t0}}%26x%3D1", BASE64URL),
    ]

PROSE = ["retrying", "after", "status", "org_01HZX", "connection", "failed:", "->", "(429)"]


def _seeded(seed: object) -> random.Random:
    return random.Random(str(seed))  # noqa: S311 - reproducible test data, not secrecy


def _token(rng: random.Random, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(12, 64)))


def _wrap(rng: random.Random, text: str) -> str:
    before = " ".join(rng.choices(PROSE, k=rng.randint(0, 3)))
    after = " ".join(rng.choices(PROSE, k=rng.randint(0, 3)))
    surrounding = rng.choice(
        [
            lambda t: t,
            lambda t: f"{before} {t}",
            lambda t: f"{t} {after}",
            lambda t: f"{before}\n{t}\n{after}",
            lambda t: json.dumps({"detail": t}),
            repr,
        ]
    )
    return surrounding(text)


@pytest.mark.parametrize(("template", "alphabet"), TEMPLATES, ids=[t for t, _ in TEMPLATES])
def test_random_tokens_in_each_template_are_always_scrubbed(template: str, alphabet: str) -> None:
    rng = _seeded(f"{template}|20261123")
    for _ in range(ITERATIONS):
        tokens = [_token(rng, alphabet) for _ in range(3)]
        text = _wrap(rng, template.format(t0=tokens[0], t1=tokens[1], t2=tokens[2]))
        redacted = redact_text(text)
        used = [token for index, token in enumerate(tokens) if f"{{t{index}}}" in template]
        assert_not_leaked(redacted, *used)
        assert redact_text(redacted) == redacted


SECRET_FIELDS = ("client_secret", "Authorization", "x-api-key", "refresh_token", "private_key")


def test_random_tokens_under_secret_fields_are_always_replaced() -> None:
    rng = _seeded(7)
    for _ in range(ITERATIONS):
        token = _token(rng, QUOTABLE)
        field = rng.choice(SECRET_FIELDS)
        value = {"org_id": "org_1", "items": [{"nested": {field: token}}], field: token}
        assert_not_leaked(json.dumps(redact(value)), token)


def test_random_tokens_logged_any_way_never_reach_the_stream() -> None:
    rng = _seeded(11)
    stream = io.StringIO()
    logger = get_logger(f"redaction-property-{rng.random()}", stream=stream)
    tokens = []
    for _ in range(ITERATIONS):
        template, alphabet = rng.choice(TEMPLATES)
        token = _token(rng, alphabet)
        tokens.append(token)
        text = template.format(t0=token, t1=token, t2=token)
        how = rng.randrange(4)
        if how == 0:
            logger.info("event %s", text)
        elif how == 1:
            logger.info("event", extra={"detail": [{"text": text}]})
        elif how == 2:
            logger.append_keys(context=text)
            logger.info("event")
            logger.remove_keys(["context"])
        else:
            try:
                raise ValueError(text)
            except ValueError:
                logger.exception("event")
    assert_not_leaked(stream.getvalue(), *tokens)
    assert len(stream.getvalue().splitlines()) == ITERATIONS


SAFE_WORDS = [
    "backup",
    "finished",
    "org_01HZX",
    "con_01HZY",
    "users",
    "groups",
    "200",
    "1234",
    "ms",
    "GET",
    "/orgs/org_1/connections",
    "limit=10",
    "cursor=abc123",
    "status=ok",
    "page",
    "next",
    "acme.okta.com",
    "https://acme.okta.com/api/v1/users?limit=200",
    "error.code=not_found",
    "state=running",
    "reason:",
    "rate-limited",
]


def test_random_text_without_secrets_is_unchanged() -> None:
    rng = _seeded(3)
    for _ in range(ITERATIONS * 4):
        # Two words at least: a lone `state=running` is a one-field form body, and goes.
        text = " ".join(rng.choices(SAFE_WORDS, k=rng.randint(2, 12)))
        assert redact_text(text) == text
