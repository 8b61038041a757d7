"""1 MB adversarial inputs: shapes that make backtracking regexes go quadratic or worse.

Each must come back correct; with linear patterns each takes well under a second (see the
module docstring of strongroom.redaction.text). Nothing here measures time: a pattern that
regresses to quadratic turns this module from seconds into hours, which no one misses.
"""

from __future__ import annotations

import itertools

import pytest

from strongroom.redaction import REDACTED, redact, redact_text
from tests.support.keys import pem_armour
from tests.unit.redaction.helpers import assert_not_leaked, canary, fullwidth

MB = 1_000_000


# A generated key's BEGIN line (PKCS#8): the opening of a private key block.
_BEGIN = pem_armour()[0]


def _repeat(unit: str) -> str:
    return unit * (MB // len(unit))


@pytest.mark.parametrize(
    "text",
    [
        _repeat("eyJ"),  # JWT starts with no dots
        _repeat("a="),  # a key-value pair at every other character
        _repeat("&code="),  # secret parameters with empty values
        _repeat("%26code%3D"),  # the same, percent-encoded
        _repeat("a://b:"),  # URL user-info openings with no `@`
        _repeat('"'),
        _repeat("\\"),
        _repeat("-----BEGIN "),  # PEM openings that never name a private key
        "Basic " + _repeat("QUJD"),  # base64 that is not user:password
        "a" * MB + ":",  # one enormous name
        "bearer" + " " * MB,  # a scheme followed by nothing but spaces
        "password:" + "\n" * MB,  # a name whose value never comes
        _repeat("password:\n"),  # each name's next line is a field of its own
        _repeat("a\u00a0=\u00a0"),  # no-break spaces around every separator
        fullwidth("a") * MB + fullwidth("="),  # one enormous fullwidth name
        _repeat(fullwidth("key_id=") + "\ufb03 "),  # fullwidth fields that are no secret
        _repeat('credentials={"'),  # groups of fields nested without end
        _repeat("credentials=[C("),
        _repeat("name=value="),  # name fields naming value fields
        _repeat('{"name": "'),  # name fields whose value never closes
        _repeat('"name": "password", "a": 1, '),  # name fields whose value field never comes
        _repeat("('password', 'a', "),  # pair openings that are longer tuples
    ],
    ids=[
        "jwt-starts",
        "pairs",
        "empty-parameters",
        "encoded-empty-parameters",
        "userinfo-openings",
        "quotes",
        "backslashes",
        "pem-openings",
        "basic-not-a-credential",
        "long-name",
        "bearer-spaces",
        "line-feeds-after-a-name",
        "names-on-every-line",
        "no-break-spaces",
        "long-fullwidth-name",
        "fullwidth-fields",
        "nested-credential-groups",
        "nested-credential-lists",
        "name-value-chain",
        "unclosed-name-fields",
        "name-fields-without-values",
        "pair-openings",
    ],
)
def test_adversarial_text_without_secrets_comes_back_unchanged(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token=" + "a" * MB, "token=[REDACTED]"),
        (_BEGIN + "\n" + "A" * MB, _BEGIN + REDACTED),
        (_repeat(_BEGIN), _BEGIN + REDACTED),
        ("token:" + "{" * MB, "token:" + REDACTED),
        ('token:"' + '\\"' * (MB // 2), 'token:"' + REDACTED),
        ("secret: '" + "\\" * MB, "secret: '" + REDACTED),
        (_repeat("MIIEvAIBAD"), REDACTED),
        ("password=" + _repeat("a "), "password=[REDACTED] "),
        (_repeat("password=a "), "password=[REDACTED] " * (MB // 11)),
        ("password=" + _repeat("a\r"), "password=[REDACTED]\r"),
        ("password:" + _repeat("\n ") + "x", "password:" + _repeat("\n ") + REDACTED),
        (_repeat("a_") + "secret=x y", _repeat("a_") + "secret=[REDACTED]"),
        ("cb?" + _repeat("a.") + "token=x&y=1", "cb?" + _repeat("a.") + "token=[REDACTED]&y=1"),
        (
            _repeat(fullwidth("password=") + "x "),
            (fullwidth("password=") + "[REDACTED] ") * (MB // 11),
        ),
        (_repeat("\u00ad") + "password=x", _repeat("\u00ad") + "password=[REDACTED]"),
        (
            _repeat('{"key": "token", "value": "x"}, '),
            '{"key": "token", "value": "[REDACTED]"}, ' * (MB // 32),
        ),
        ("password: |\n" + _repeat("  password: |\n"), "password: [REDACTED]\n"),
        (
            _repeat("token: | #"),  # block scalar headers whose comment never ends its line
            "token: [REDACTED] #" * (MB // 10 - 1) + "token: [REDACTED]",
        ),
        (_repeat("[('token', 'x'), "), "[('token', '[REDACTED]'), " * (MB // 17)),
    ],
    ids=[
        "long-value",
        "truncated-pem",
        "pem-headers",
        "unclosed-brackets",
        "unclosed-escaped-quote",
        "unclosed-quote-of-backslashes",
        "der-prefixes",
        "run-on-words",
        "run-on-fields",
        "carriage-returns",
        "blank-lines-before-a-value",
        "long-secret-name",
        "long-parameter-name",
        "fullwidth-run-on-fields",
        "invisible-name-start",
        "name-value-structures",
        "block-scalar-headers-inside-a-block",
        "block-scalar-comments",
        "pairs",
    ],
)
def test_adversarial_secrets_are_redacted_whole(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_repeated_secret_openings() -> None:
    assert set(redact_text(_repeat("Bearer ")).split()) == {"Bearer", REDACTED}
    redacted = redact_text(_repeat('token:"'))
    # Each quoted value goes on into the next word, so quotes and all are redacted.
    assert redacted.startswith("token:[REDACTED]token:[REDACTED]")
    assert 'token:"token' not in redacted
    assert "eyJ" not in redact_text(_repeat("eyJa."))  # dotted runs are JWT-shaped


@pytest.mark.parametrize(
    "noise",
    [_repeat("x"), _repeat("=:"), _repeat("a "), _repeat('"k": "v", '), _repeat("?a=1&")],
    ids=["letters", "separators", "words", "json", "query"],
)
def test_a_secret_after_a_megabyte_of_noise_is_still_found(noise: str) -> None:
    token, secret, code = canary(), canary(), canary()
    text = f"{noise}\nAuthorization: Bearer {token}\nclient_secret={secret} cb?code={code}&x=1"
    redacted = redact_text(text)
    assert_not_leaked(redacted, token, secret, code)
    assert redacted.endswith(
        "\nAuthorization: Bearer [REDACTED]\nclient_secret=[REDACTED] cb?code=[REDACTED]&x=1"
    )


def _spellings(word: str, count: int) -> list[str]:
    """`count` spellings of `word` that all normalise to it (`NaMe`, `n_a-m.e`, `N A M E`...)."""
    separators = ["", "_", "-", ".", " ", "__", "--", "..", "_-", "-_"]
    cases = itertools.product(*((char.lower(), char.upper()) for char in word))
    gaps = itertools.product(separators, repeat=len(word) - 1)
    spellings = (
        letters[0] + "".join(gap + letter for gap, letter in zip(between, letters[1:], strict=True))
        for letters, between in itertools.product(list(cases), list(gaps))
    )
    return list(itertools.islice(spellings, count))


def test_a_mapping_of_many_name_and_value_fields_is_walked_in_linear_time() -> None:
    # A name/value structure's value fields are judged under the names its name fields hold;
    # judging every value field against every name held would be quadratic (16,000 of each:
    # minutes, not a fraction of a second).
    count = 16_000
    fields = {name: f"field_{number}" for number, name in enumerate(_spellings("name", count))}
    values = dict.fromkeys(_spellings("value", count), "kept")
    assert redact({**fields, **values}) == {**fields, **values}
    secret = {**fields, "KEY": "client_secret", **values}
    assert redact(secret) == {**fields, "KEY": "client_secret", **dict.fromkeys(values, REDACTED)}
