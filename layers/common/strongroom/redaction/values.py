"""Redact structures: a JSON-shaped deep copy in which no secret survives.

Field names give the context free text lacks: any value under a secret name (see `keys.py`) is
replaced whole, whatever its type, and every other string goes through `redact_text`.

`code` and `state` (OAuth's authorization code and state, but also our error code and many
status fields) are redacted when the mapping that holds them looks like an OAuth message (it
holds both, or a `grant_type`, `redirect_uri`, `code_verifier`, `code_challenge`,
`session_state`, `response_type` or `error_description`), and otherwise unless their value has
the shape of an enumeration word. So `{"error": {"code": "not_found"}}` and
`{"state": "pending"}` stay readable while `{"code": "SplxlOBeZQQ..."}`, an MFA `{"code":
123456}` and a callback query `{"code": ..., "state": ...}` do not.

`credential` and `credentials` also name groups of fields (AWS's `Credentials`, our API's list
of credential fingerprints): a mapping under them is walked, and any single value in it, or in
a list under it, is replaced.

A name/value structure (`{"name": "password", "value": ...}`, a header list's `{"Name":
"Authorization", "Value": ...}`, `{"key": "client_secret", "value": ...}`) is read as the field
it describes: its `value`/`values` go when the name it holds is a secret one; a list of them is
read as one mapping, `code` and `state` rules included.

A mapping with `kty` is a JWK: its private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`) go.
A pair (a 2-item tuple or list whose first item is text, such as a header pair) is read as a
one-field mapping, and a list or tuple made only of pairs (`parse_qsl`'s output, a header list,
either after a JSON round trip) as a mapping of them all, `code` and `state` rules included;
two of our credential field names (`["client_secret", "refresh_token"]`, exactly) are a list of
names, not a pair.
Bytes are never shown (they are key material more often than not). Anything else (dates,
exceptions, dataclasses) is rendered to text and scrubbed, as the JSON serialiser would render
it. Cycles and nesting deeper than 64 levels become `[REDACTED]`: a log line must never fail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from strongroom.redaction.keys import (
    CONDITIONAL_NAMES,
    CREDENTIAL_FIELD_NAMES,
    GROUP_SECRET_NAMES,
    NAME_FIELDS,
    REDACTED,
    SECRET_NAMES,
    SECRET_SUFFIXES,
    VALUE_FIELDS,
    looks_like_enum_word,
    normalise_key,
)
from strongroom.redaction.text import redact_text

_MAX_DEPTH = 64
_JWK_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})
_OAUTH_MARKERS = frozenset(
    {
        "granttype",
        "redirecturi",
        "codeverifier",
        "codechallenge",
        "sessionstate",
        "responsetype",
        "errordescription",
    }
)

Render = Callable[[Any], Any]


def redact(value: Any) -> Any:
    """A deep copy of `value` with every secret replaced by `[REDACTED]`; `value` is untouched.

    Dicts (and other mappings) come back as dicts, lists as lists, tuples as tuples, sets as
    lists; str, int, float, bool and None keep their type; anything else comes back as text.
    """
    return scrub(value, render=str)


def scrub(value: Any, *, render: Render) -> Any:
    """`redact`, rendering unknown objects with `render` (a JSON serialiser's `default`)."""
    return _walk(value, render, 0, set())


def _walk(value: Any, render: Render, depth: int, active: set[int]) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if (
        isinstance(value, bytes | bytearray | memoryview)
        or depth >= _MAX_DEPTH
        or id(value) in active
    ):
        return REDACTED
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        active.add(id(value))
        try:
            return _walk_container(value, render, depth + 1, active)
        finally:
            active.discard(id(value))
    return _walk_rendered(value, render, depth, active)


def _walk_container(value: Any, render: Render, depth: int, active: set[int]) -> Any:
    if isinstance(value, Mapping):
        return _walk_mapping(value, render, depth, active)
    if _is_pair(value):
        return _walk_pairs([value], render, depth, active)[0]
    if isinstance(value, list | tuple) and value and all(_describes_a_field(i) for i in value):
        items = _walk_described_fields(value, render, depth, active)
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, list | tuple) and value and all(_is_pair(item) for item in value):
        walked = _walk_pairs(value, render, depth, active)
        return tuple(walked) if isinstance(value, tuple) else walked
    items = [_walk(item, render, depth, active) for item in value]
    return tuple(items) if isinstance(value, tuple) else items


def _walk_rendered(value: object, render: Render, depth: int, active: set[int]) -> Any:
    try:
        rendered = render(value)
    except Exception:  # noqa: BLE001 - a value whose rendering fails is not shown at all
        return REDACTED
    if isinstance(rendered, str):
        return redact_text(rendered)
    return _walk(rendered, render, depth + 1, active)


def _walk_key(key: Any) -> Any:
    if isinstance(key, str):
        return redact_text(key)
    if key is None or isinstance(key, bool | int | float):
        return key
    return redact_text(str(key))


def _walk_mapping(
    mapping: Mapping[Any, Any],
    render: Render,
    depth: int,
    active: set[int],
    *,
    in_oauth_message: bool = False,
) -> dict[Any, Any]:
    names = {normalise_key(key) for key in mapping if isinstance(key, str)}
    oauth_message = in_oauth_message or _is_oauth_message(names)
    jwk = "kty" in names
    # A value field is also judged under each name the structure's name fields hold.
    described = _Described.of(_described_names(mapping), jwk)
    result: dict[Any, Any] = {}
    for key, item in mapping.items():
        name = normalise_key(key) if isinstance(key, str) else None
        value_field = name in VALUE_FIELDS
        if (name is not None and _hides(name, item, oauth_message, jwk)) or (
            value_field and described.hides(item, oauth_message)
        ):
            result[_walk_key(key)] = REDACTED
        elif name in GROUP_SECRET_NAMES or (value_field and described.group):
            result[_walk_key(key)] = _walk_group(item, render, depth, active)
        else:
            result[_walk_key(key)] = _walk(item, render, depth, active)
    return result


def _is_oauth_message(names: set[str]) -> bool:
    return {"code", "state"} <= names or not names.isdisjoint(_OAUTH_MARKERS)


def _described_names(mapping: Mapping[Any, Any]) -> set[str]:
    """The normalised names that the name fields of a name/value structure hold."""
    return {
        normalise_key(item)
        for key, item in mapping.items()
        if isinstance(key, str) and isinstance(item, str) and normalise_key(key) in NAME_FIELDS
    }


def _describes_a_field(value: Any) -> bool:
    """Whether `value` is a name/value structure (a name field holding text, a value field)."""
    if not isinstance(value, Mapping):
        return False
    names = {normalise_key(key) for key in value if isinstance(key, str)}
    return not names.isdisjoint(VALUE_FIELDS) and bool(_described_names(value))


def _walk_described_fields(
    structures: list[Any] | tuple[Any, ...], render: Render, depth: int, active: set[int]
) -> list[Any]:
    """A list of name/value structures, read as the fields of one mapping: a callback query
    listed as `[{"name": "code", ...}, {"name": "state", ...}]` is an OAuth message."""
    described = set().union(*(_described_names(item) for item in structures))
    if not _is_oauth_message(described):
        return [_walk(item, render, depth, active) for item in structures]
    walked: list[Any] = []
    for item in structures:
        if depth >= _MAX_DEPTH or id(item) in active:
            walked.append(REDACTED)
            continue
        active.add(id(item))
        try:
            walked.append(_walk_mapping(item, render, depth + 1, active, in_oauth_message=True))
        finally:
            active.discard(id(item))
    return walked


def _walk_group(value: Any, render: Render, depth: int, active: set[int]) -> Any:
    """A value under one of GROUP_SECRET_NAMES (`credentials`): a single value (a string, a
    number, bytes) is a secret; a mapping is walked, its own field names decide, and so is an
    object's rendering (a dataclass shows its field names); a list, tuple or set is read item
    by item the same way."""
    if value is None or isinstance(value, str | int | float | bytes | bytearray | memoryview):
        return REDACTED
    if not isinstance(value, list | tuple | set | frozenset):
        return _walk(value, render, depth, active)
    if depth >= _MAX_DEPTH or id(value) in active:
        return REDACTED
    active.add(id(value))
    try:
        items = [_walk_group(item, render, depth + 1, active) for item in value]
    finally:
        active.discard(id(value))
    return tuple(items) if isinstance(value, tuple) else items


@dataclass(frozen=True)
class _Described:
    """What the names held by a structure's name fields say of its value fields, settled once
    per structure: judging each value field against each name held would be quadratic."""

    secret: bool
    conditional: bool
    group: bool

    @classmethod
    def of(cls, names: set[str], jwk: bool) -> _Described:
        return cls(
            secret=any(_secret_by_name(name, jwk) for name in names),
            conditional=not names.isdisjoint(CONDITIONAL_NAMES),
            group=not names.isdisjoint(GROUP_SECRET_NAMES),
        )

    def hides(self, item: Any, oauth_message: bool) -> bool:
        """Whether a value field holding `item` is replaced whole."""
        return self.secret or (self.conditional and _hides_conditional(item, oauth_message))


def _hides(name: str, item: Any, oauth_message: bool, jwk: bool) -> bool:
    """Whether the value `item` under the normalised field name `name` is replaced whole."""
    if _secret_by_name(name, jwk):
        return True
    return name in CONDITIONAL_NAMES and _hides_conditional(item, oauth_message)


def _secret_by_name(name: str, jwk: bool) -> bool:
    """Whether any value under the normalised field name `name` is replaced whole."""
    return (
        name in SECRET_NAMES
        or name.endswith(SECRET_SUFFIXES)
        or (jwk and name in _JWK_PRIVATE_MEMBERS)
    )


def _hides_conditional(item: Any, oauth_message: bool) -> bool:
    """Whether the value `item` under `code` or `state` is replaced whole."""
    return oauth_message or not looks_like_enum_word(item)


def _is_pair(value: Any) -> bool:
    if not (isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[0], str)):
        return False
    # Two of our credential field names (`["client_secret", "refresh_token"]`, an audit entry's
    # fields) are a list of names. Exact names from a closed set only: a suffix rule would let
    # `("password", "TopSecret")` or a token ending in `dek` through.
    return not (value[0] in CREDENTIAL_FIELD_NAMES and value[1] in CREDENTIAL_FIELD_NAMES)


def _walk_pairs(
    pairs: list[Any] | tuple[Any, ...], render: Render, depth: int, active: set[int]
) -> list[Any]:
    """Pairs as the fields of one mapping: each keeps its type (tuple or list), and value
    fields are judged under the names its name fields hold, as in a mapping."""
    names = {normalise_key(name) for name, _ in pairs}
    oauth_message = _is_oauth_message(names)
    jwk = "kty" in names
    described = _Described.of(
        {
            normalise_key(item)
            for name, item in pairs
            if isinstance(item, str) and normalise_key(name) in NAME_FIELDS
        },
        jwk,
    )
    walked: list[Any] = []
    for pair in pairs:
        name, item = pair
        normalised = normalise_key(name)
        value_field = normalised in VALUE_FIELDS
        if _hides(normalised, item, oauth_message, jwk) or (
            value_field and described.hides(item, oauth_message)
        ):
            second = REDACTED
        elif normalised in GROUP_SECRET_NAMES or (value_field and described.group):
            second = _walk_group(item, render, depth + 1, active)
        else:
            second = _walk(item, render, depth + 1, active)
        fields = (redact_text(name), second)
        walked.append(fields if isinstance(pair, tuple) else list(fields))
    return walked
