"""Scrub secrets out of free text: log messages, exception text, URLs, headers, bodies.

Each secret class has its own precompiled pattern and pass; a pass runs only when a cheap
substring test says it can match. Every pattern is linear in the text: each match starts at a
boundary its own runs cannot contain (a lookbehind), and the runs are possessive, so a failed
attempt never rescans what an earlier attempt covered. A 1 MB adversarial string costs a few
linear scans, not a quadratic search.

Only the secret part becomes `[REDACTED]`; names, schemes, hosts and paths stay readable:
`https://idp.example/cb?code=[REDACTED]&x=1`, `Authorization: Bearer [REDACTED]`,
`"client_secret": "[REDACTED]"`, and a PEM private key keeps its BEGIN and END lines only.
Where a secret's end cannot be found (a PEM block with no END line, an unterminated quoted
value) everything up to the end of the text is redacted: failing closed costs readability only.
So, too, an unquoted value of a secret field runs on to the next `name=`/`name:` on its line,
or to the line's end (`password=correct horse battery staple user=bob` keeps `user=bob`
only): a password may hold spaces and `;`. `code` and `state`, which name many harmless
things, end at a space. Only a line feed ends a line (a lone `\r` may be part of a password);
any other whitespace (a no-break space, an ideographic space) may stand around the separator;
and a name with nothing after it on its line takes the next line that holds anything as its
value (`password:\n  hunter2`, YAML), unless that line starts with a field of its own; a
YAML block scalar (`password: |` and the indented lines below it) goes whole, header and all.
A name/value structure (`{"name": "X-Api-Key", "value": "..."}`) is read as the field it
names when its value field comes after its name field with no bracket and at most a few other
fields between them (SSM writes `Name`, `Type`, `Value`; sorted keys put `name` first); one
written value first, or with a nested structure between, is not recognised. A pair written as
text (`[('Authorization', '...')]`, `[["X-Api-Key", "..."]]`) is one field, as `redact` reads it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping

from strongroom.redaction.keys import (
    CONDITIONAL_NAMES,
    CREDENTIAL_FIELD_NAMES,
    DEFAULT_IGNORABLE,
    GROUP_SECRET_NAMES,
    HEADER_NAMES,
    NAME_FIELDS,
    REDACTED,
    SECRET_NAMES,
    SECRET_SUFFIXES,
    VALUE_FIELDS,
    is_secret_key,
    looks_like_enum_word,
    normalise_key,
)

# The label every PEM private key block carries (`RSA PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`...).
_PRIVATE_KEY_LABEL = "PRIVATE KEY"
_PEM_PRIVATE_KEY = re.compile(
    r"(-----BEGIN [A-Z0-9 ]{0,40}" + _PRIVATE_KEY_LABEL + r"(?: BLOCK)?-----)"
    r".*?"
    r"(-----END [A-Z0-9 ]{0,40}-----|\Z)",
    re.ASCII | re.DOTALL,
)

# Base64 DER private keys without PEM armour: a SEQUENCE whose first member is the version
# INTEGER 0 or 1 (PKCS#8, PKCS#1, SEC1), for every length form of the SEQUENCE header.
# Certificates and public keys start with a nested SEQUENCE instead, so they do not match.
_DER_PRIVATE_KEY = re.compile(
    r"(?<![A-Za-z0-9+/])"
    r"(?:MII[A-Za-z0-9+/]{2}[AQgw]IBA[AD]|MI[GH][A-Za-z0-9+/]AgE[AB]|M[A-Za-z0-9+/]{2}CAQ[AE])"
    r"(?:[A-Za-z0-9+/=\r\n]|\\[rn])*+",
    re.ASCII,
)
_DER_MIN_LENGTH = 64

# JWS (three segments) and JWE (five); the header always starts with base64url('{"').
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]++(?:\.[A-Za-z0-9_-]*+){2,4}+", re.ASCII)

# Secrets recognisable by a vendor prefix; the prefix is kept so a reader knows what leaked.
_PREFIXED_SECRET = re.compile(
    r"(?<![A-Za-z0-9_+/-])"
    r"((?:sk|rk)_(?:live|test)_|whsec_|gh[pousr]_|github_pat_|xox[abposr]-|glpat-"
    r"|IQoJb3JpZ2lu|FwoGZXIvYXdz|FQoGZXIvYXdz)"  # AWS STS session tokens
    r"([A-Za-z0-9_+/=-]{8,}+)",
    re.ASCII,
)
_SPACE = r"((?:[ \t]|%20|\+)++)"

_BEARER = re.compile(
    r"(?<![A-Za-z0-9_-])(bearer|ssws)" + _SPACE + r"(?!\[REDACTED\])([^\s\"'<>,;\\)\]}]++)",
    re.ASCII | re.IGNORECASE,
)
# Words that follow "bearer" in prose or in a WWW-Authenticate challenge and are no credential.
_NOT_A_CREDENTIAL = frozenset(
    {
        "token",
        "tokens",
        "auth",
        "authentication",
        "authorization",
        "scheme",
        "header",
        "realm",
        "scope",
        "error",
        "error_description",
        "error_uri",
    }
)

_BASIC = re.compile(
    r"(?<![A-Za-z0-9_-])(basic)" + _SPACE + r"([A-Za-z0-9+/_-]{4,}+={0,2}+)(?![A-Za-z0-9+/=_-])",
    re.ASCII | re.IGNORECASE,
)

_URL_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s/?#@:\"'<>]*+:)([^\s/?#@\"'<>]++)@",
    re.ASCII,
)

# A parameter in URL or form context: after `?`, `&`, `#`, `;` (also percent-encoded once or
# twice, for a URL inside another URL's query) or at the start of a form body (text without
# whitespace: form encoding has none, prose always has some). Only the
# name and separator are matched, so a URL-valued parameter (`redirect_uri=...%3Fcode%3D...`)
# does not hide the parameters encoded inside it.
_URL_PARAMETER_NAME = re.compile(
    r"(?:(?<=[?&#;])|(?<=%3f)|(?<=%26)|(?<=%23)|(?<=%253f)|(?<=%2526)|(?<=%2523)|\A)"
    r"([A-Za-z][A-Za-z0-9_.-]*+)(?:=|%3d|%253d)",
    re.ASCII | re.IGNORECASE,
)
# The value ends at `&` or `#`, raw or percent-encoded (once or twice).
_URL_PARAMETER_VALUE = re.compile(
    r"(?:[^&#%\s\"'<>]|%(?!(?:25)?(?:26|23)))++", re.ASCII | re.IGNORECASE
)
_WHITESPACE = re.compile(r"\s")
# Query parameters that are capabilities: presigned URL signatures and session tokens.
URL_CAPABILITY_NAMES = frozenset({"sig", "signature", "xamzsignature", "xamzsecuritytoken"})

# A field name in free text is made of word characters in any script (fullwidth or mathematical
# letters among them), `_`, `.`, `-` and their compatibility forms, and invisible characters
# (`keys.DEFAULT_IGNORABLE`); it is judged by its normal form (`keys.normalise_key`) but kept as
# written, so no offset ever moves. `=` and `:` count in their compatibility forms too.
_NAME_SYMBOLS = "_\ufe33\ufe34\ufe4d-\ufe4f\uff3f" + DEFAULT_IGNORABLE  # `_` and invisibles
# Symbols whose normal form is letters, which `\w` does not take: circled and squared Latin
# letters (`ⓟⓐⓢⓢ`), letter-like signs (`№`, `™`) and CJK squared units.
_LETTER_SYMBOLS = (
    "\u20a8\u2116\u2120-\u2122\u213b\u24b6-\u24e9\u3250\u32cc-\u32cf\u3371-\u33ff"
    "\U0001f12b-\U0001f12e\U0001f130-\U0001f14f\U0001f16a-\U0001f16c\U0001f190"
)
_NAME_CHAR = f"[\\w.\\-\u2024\ufe52\uff0e\ufe63\uff0d{_NAME_SYMBOLS}{_LETTER_SYMBOLS}]"
_NAME_START = f"(?:[^\\W\\d]|[{_NAME_SYMBOLS}{_LETTER_SYMBOLS}])"
_EQUALS = "=\u207c\u208c\ufe66\uff1d"
_COLON = ":\ufe13\ufe55\uff1a"
_QUOTE = "\"'\uff02\uff07"

# `name: value` / `name=value` in free text, JSON, Python reprs, logfmt and headers. Only the
# name and separator are matched here; the value is parsed by `_value_span`. A name right after
# a colon is an ARN or URN part (`...:secret:name`), not a field.
_KEY_VALUE_NAME = re.compile(
    f"(?<!{_NAME_CHAR})(?<![{_COLON}])(\\\\?[{_QUOTE}]|)({_NAME_START}{_NAME_CHAR}*+)\\1"
    f"[^\\S\\n]*+([{_EQUALS}](?![{_EQUALS}])|[{_COLON}](?![{_COLON}]|//))"
)
# Any whitespace but a line feed: a no-break space, an ideographic space or a carriage return
# between a name and its value is no end of the value.
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]*+")
# A line feed and whatever whitespace follows it: a value may start on the next line (YAML).
_LINE_BREAK_AND_SPACE = re.compile(r"\n\s*+")
_STRING_PREFIX = re.compile(r"[bBrRuU]{1,2}(?=[\"'])")
_DOUBLE_QUOTED = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_SINGLE_QUOTED = re.compile(r"'(?:[^'\\]++|\\.)*+'", re.DOTALL)
_UNQUOTED_VALUE = re.compile(r"[^\s,;&\"'<>)\]}]++")
# Only a line feed ends a line: a lone carriage return may be part of a password, and `\r\n`
# ends at its `\n` (the `\r` then goes with the tail below).
_LINE_END = re.compile(r"\n")
# What may end a run-on value without being part of it (the `&` or `,` before the next field,
# any whitespace: every character `str.isspace` accepts lies below U+3001).
# Written out: computed at import, it cost 1.5 ms of every cold start (a test checks it).
_RUN_ON_TAIL = (
    ",;&\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# What may follow a quoted or bracketed value that ends there (`"x", `, `'x')`, `{...}}`).
_CLOSING = ",;&)]}>:"
# A YAML block scalar's header: `|` or `>`, its chomping and indentation indicators, perhaps a
# short comment, and the end of its line. The comment is bounded: an unbounded one would scan
# the rest of the line from each of many headers on it.
_BLOCK_SCALAR_HEADER = re.compile(r"[|>][-+1-9]{0,2}+[^\S\n]*+(?:#[^\n]{0,200}+)?\n")
_BLANK_LINE = re.compile(r"[^\S\n]*+(?:\n|\Z)")
_INDENT = re.compile(r"[ \t]*+")
_UNQUOTED_HEADER_VALUE = re.compile(r"[^\n\"'<>]++")
_ALREADY_REDACTED = re.compile(r"(?:[A-Za-z][A-Za-z0-9_-]{0,20}[ \t]+)?\[REDACTED\]", re.ASCII)
_STRUCTURAL = re.compile(r"[\[\]{}\"'\\]")

_JWK_PRIVATE_MEMBER = re.compile(
    r"([\"'])(d|p|q|dp|dq|qi|k)\1([ \t]*+:[ \t]*+)([\"'])[A-Za-z0-9_+/=-]*+\4", re.ASCII
)


def _pem_private_key(match: re.Match[str]) -> str:
    return match[1] + REDACTED + match[2]


def _der_private_key(match: re.Match[str]) -> str:
    return REDACTED if len(match[0]) >= _DER_MIN_LENGTH else match[0]


def _prefixed_secret(match: re.Match[str]) -> str:
    return match[1] + REDACTED


def _bearer(match: re.Match[str]) -> str:
    if match[3].lower().rstrip("=") in _NOT_A_CREDENTIAL:
        return match[0]
    return match[1] + match[2] + REDACTED


def _basic(match: re.Match[str]) -> str:
    # Outside a header, "Basic" is an English word: redact only what decodes as user:password.
    # (`Authorization: Basic ...` is redacted whole by the key-value pass.)
    token = match[3].rstrip("=").replace("-", "+").replace("_", "/")
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match[0]
    return match[1] + match[2] + REDACTED if b":" in decoded else match[0]


def _url_userinfo(match: re.Match[str]) -> str:
    return match[1] + REDACTED + "@"


def _is_secret_parameter(name: str) -> bool:
    name = normalise_key(name)
    return (
        name in CONDITIONAL_NAMES
        or name in URL_CAPABILITY_NAMES
        or name in SECRET_NAMES
        or name.endswith(SECRET_SUFFIXES)
    )


def _jwk_private_member(match: re.Match[str]) -> str:
    quote = match[4]
    return f"{match[1]}{match[2]}{match[1]}{match[3]}{quote}{REDACTED}{quote}"


def _bracket_end(text: str, start: int) -> int:
    """Index after the bracket that closes the one at `start`; the text's end if none does."""
    depth = 0
    quote = ""
    escaped_at = -1
    for match in _STRUCTURAL.finditer(text, start):
        position = match.start()
        char = match[0]
        if position == escaped_at:
            continue
        if char == "\\":
            escaped_at = position + 1
        elif quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return position + 1
    return len(text)


def _value_span(
    text: str, position: int, *, header: bool, run_on: bool = False
) -> tuple[int, int] | None:
    """The span of the value starting at `position` (inside its quotes, if quoted).

    With `run_on`, an unquoted value runs on to the next `name=`/`name:` on its line, or to the
    line's end: a password may hold spaces or `;` (`password=correct horse battery staple`), and
    where it ends cannot be told from where a logfmt value would. So does one that starts with
    a delimiter (`password=)x y`), or a quoted or bracketed one that goes on past its closing
    quote or bracket (`password='ab'cd ef`), quotes and all.
    """
    found = _value_start(text, position)
    if found is None:
        return None
    position = found
    block = _block_scalar_end(text, position)
    if block is not None:
        return position, block
    prefix = _STRING_PREFIX.match(text, position)
    if prefix is not None:
        position = prefix.end()
    enclosed = _enclosed_span(text, position, run_on=run_on)
    if enclosed is not None:
        return enclosed
    pattern = _UNQUOTED_HEADER_VALUE if header else _UNQUOTED_VALUE
    unquoted = pattern.match(text, position)
    end = position if unquoted is None else position + len(unquoted[0].rstrip())
    if run_on:
        end = _run_on_end(text, position, end)
    return (position, end) if end > position else None


def _value_start(text: str, position: int) -> int | None:
    """Where the value after a separator at `position` starts; None if there is none."""
    position = _HORIZONTAL_SPACE.match(text, position).end()  # type: ignore[union-attr]
    if text.startswith("\n", position):
        # Nothing on the name's line: the value is on the next line that holds anything,
        # unless that line starts with a field of its own (`client_secret=\nscope=x`).
        position = _LINE_BREAK_AND_SPACE.match(text, position).end()  # type: ignore[union-attr]
        if _KEY_VALUE_NAME.match(text, position) is not None:
            return None
    return position if position < len(text) else None


def _block_scalar_end(text: str, position: int) -> int | None:
    """The end of a YAML block scalar whose header (`|`, `>-`, `|2`...) is at `position`: its
    lines are the ones below indented as its first is, blank lines among them. The header goes
    with the value (`password: |` may also be a one-character password). None if no header."""
    header = _BLOCK_SCALAR_HEADER.match(text, position)
    if header is None:
        return None
    end = position + 1
    line = header.end()
    indent = ""
    while line < len(text):
        blank = _BLANK_LINE.match(text, line)
        if blank is not None:
            line = blank.end()
            continue
        if not indent:
            indent = _INDENT.match(text, line)[0]  # type: ignore[index]
        if not indent or not text.startswith(indent, line):
            break
        stop = text.find("\n", line)
        stop = len(text) if stop < 0 else stop
        end = line + len(text[line:stop].rstrip())
        line = stop + 1
    return end


def _enclosed_span(text: str, position: int, *, run_on: bool) -> tuple[int, int] | None:
    """The span of a quoted or bracketed value at `position` (see _value_span); None if the
    value there is neither."""
    if text.startswith('\\"', position):
        end = text.find('\\"', position + 2)
        return position + 2, len(text) if end < 0 else end
    first = text[position]
    if first in "\"'":
        quoted = (_DOUBLE_QUOTED if first == '"' else _SINGLE_QUOTED).match(text, position)
        # An unterminated quote hides the rest of the text: the secret's end is unknown.
        if quoted is None:
            return position + 1, len(text)
        end, inside = quoted.end(), (position + 1, quoted.end() - 1)
    elif first in "[{":
        end = _bracket_end(text, position)
        inside = (position, end)
    else:
        return None
    if run_on and _goes_on(text, end):
        return position, _run_on_end(text, position, end)
    return inside


def _goes_on(text: str, end: int) -> bool:
    """Whether a quoted or bracketed value is followed at once by more of a word."""
    return end < len(text) and not text[end].isspace() and text[end] not in _CLOSING


def _run_on_end(text: str, start: int, end: int) -> int:
    """The end of a run-on value `text[start:end]...`: the next `name=`/`name:` on its line, or
    the line's end, less the separator before it. Each search stops at the next field, which
    the caller visits next: linear overall."""
    following = _KEY_VALUE_NAME.search(text, end)
    limit = len(text) if following is None else following.start()
    line = _LINE_END.search(text, end, limit)
    if line is not None or following is None:
        stop = limit if line is None else line.start()
    elif text[limit - 1] in _RUN_ON_TAIL:
        stop = limit  # `...;user=` or `..., user=`: the separator goes with the tail
    else:
        # A name glued to a word (`cb?code=`): that word starts after the last space before it.
        between = text[end:limit]
        space = max(between.rfind(" "), between.rfind("\t"))
        stop = end + space if space >= 0 else limit
    return max(end, start + len(text[start:stop].rstrip(_RUN_ON_TAIL)))


# A field name and separator at the very end of a text, perhaps with the start of its value
# (`password=`, `password: '`, `password=%`, a YAML block scalar's `password: |` and indent):
# what a `%s` placeholder then adds is its value.
# Only the last FIELD_NAME_WINDOW characters of the text are read: a longer name is cut, and may
# then start with any character of a name, but its end (where a secret name's ending is) stays.
FIELD_NAME_WINDOW = 80
_FIELD_AT_END = re.compile(
    f"(?<!{_NAME_CHAR})(?<![{_COLON}])({_NAME_CHAR}++)[{_QUOTE}]?[^\\S\\n]*+[{_EQUALS}{_COLON}]\\s*+"
    f"(?:[|>][-+1-9]{{0,2}}+[^\\S\\n]*+\\n\\s*+)?[^\\s{_EQUALS}{_COLON}]*+\\Z"
)


def value_follows_secret_name(text: str, value: object) -> bool:
    """Whether `value`, placed right after `text` (`"password=%s"`), is a secret field's value:
    `text` ends in a secret field's name and separator (for `code`/`state`, unless the value
    looks like a status word)."""
    found = _FIELD_AT_END.search(text[-FIELD_NAME_WINDOW:])
    if found is None:
        return False
    name = normalise_key(found[1])
    if name in CONDITIONAL_NAMES:
        return not looks_like_enum_word(value)
    if name in GROUP_SECRET_NAMES:
        return not isinstance(value, Mapping)  # a mapping is scrubbed by its own field names
    return is_secret_key(found[1])


def _url_parameters(text: str) -> str:
    pieces: list[str] = []
    done = 0
    for match in _URL_PARAMETER_NAME.finditer(text):
        if match.start() < done or not _is_secret_parameter(match[1]):
            continue
        if match.start() == 0 and _WHITESPACE.search(text) is not None:
            continue  # prose, not a form body: the key-value pass judges it
        value = _URL_PARAMETER_VALUE.match(text, match.end())
        if value is None or value[0] == REDACTED:
            continue
        pieces += (text[done : match.end()], REDACTED)
        done = value.end()
    return _joined(pieces, text, done)


# The value of a name/value structure's name field (`"name": "password"`): one word, quoted or
# not. It cannot hold a separator, so no two of these scans overlap.
_DESCRIBED_NAME = re.compile(
    f"[^\\S\\n]*+(\\\\?[{_QUOTE}]?)([^\\s{_QUOTE}\\\\,;&{_EQUALS}{_COLON}{{}}\\[\\]()<>]++)\\1"
)
# A bracket between a name field and a value field: the value field is another structure's,
# or one nested in a field between them.
_STRUCTURE_BOUNDARY = re.compile(r"[{}\[\]()]")
# At most this many other fields between a name field and its value field (SSM's Name, Type,
# Value has one).
_FIELDS_BETWEEN_MAX = 8


def _key_values(text: str) -> str:
    pieces: list[str] = []
    done = 0
    # The name a name/value structure's name field holds, where the last field read since
    # ends, and how many fields stood between: a value field after it in the same structure is
    # judged under that name (`{"name": "password", "value": ...}`, `{"Name": ..., "Type":
    # ..., "Value": ...}`). Each stretch between two fields is searched once: linear.
    described: tuple[str, int, int] | None = None
    for match in _KEY_VALUE_NAME.finditer(text):
        if match.start() < done:
            continue  # inside a value already redacted
        name = normalise_key(match[2])
        if described is not None and (
            described[2] > _FIELDS_BETWEEN_MAX
            or _STRUCTURE_BOUNDARY.search(text, described[1], match.start()) is not None
        ):
            described = None
        if described is not None and name in VALUE_FIELDS:
            name, described = described[0], None
        elif described is not None:
            described = (described[0], match.end(), described[2] + 1)
        if name in NAME_FIELDS:
            held = _DESCRIBED_NAME.match(text, match.end())
            if held is not None:
                described = (normalise_key(held[2]), held.end(), 0)
            continue
        conditional = name in CONDITIONAL_NAMES
        group = name in GROUP_SECRET_NAMES
        if not (conditional or group or name in SECRET_NAMES or name.endswith(SECRET_SUFFIXES)):
            continue
        if group and _holds_fields(text, match.end()):
            continue  # `credentials: {"password": ...}`: the fields inside are judged next
        header = name in HEADER_NAMES
        span = _value_span(text, match.end(), header=header, run_on=not conditional and not header)
        if span is None:
            continue
        start, end = span
        value = text[start:end]
        if _ALREADY_REDACTED.fullmatch(value) or (conditional and looks_like_enum_word(value)):
            continue
        pieces += (text[done:start], REDACTED)
        done = end
    return _joined(pieces, text, done)


# The first item of a pair written as text (`('Authorization', ...`, `["X-Api-Key", ...`,
# `(b'cookie', ...`): a quoted name right after an opening bracket, then a comma. The name is
# bounded (a header or parameter name), so no two of these scans overlap by much.
_PAIR_NAME = re.compile(r"[\[(][^\S\n]*+[bB]?([\"'])([^\"'\\\n]{1,256}+)\1,[^\S\n]*+")
# What closes a pair after its value.
_PAIR_CLOSE = re.compile(r"[^\S\n]*+[)\]]")


def _pairs(text: str) -> str:
    """A pair written as text is read as one field, as `redact` reads a pair: its second item
    goes when its first names a secret. Two of our credential field names are a list of names
    (`['client_secret', 'refresh_token']`), as in `values.py`."""
    pieces: list[str] = []
    done = 0
    for match in _PAIR_NAME.finditer(text):
        if match.start() < done:
            continue
        name = normalise_key(match[2])
        conditional = name in CONDITIONAL_NAMES
        if not (conditional or name in GROUP_SECRET_NAMES or is_secret_key(match[2])):
            continue
        span = _value_span(text, match.end(), header=False)
        if span is None:
            continue
        start, end = span
        closing = end + 1 if text.startswith(("'", '"'), end) else end
        if end < len(text) and _PAIR_CLOSE.match(text, closing) is None:
            continue  # not a pair: a longer list or tuple
        value = text[start:end]
        if (
            _ALREADY_REDACTED.fullmatch(value)
            or (conditional and looks_like_enum_word(value))
            or (match[2] in CREDENTIAL_FIELD_NAMES and value in CREDENTIAL_FIELD_NAMES)
        ):
            continue
        pieces += (text[done:start], REDACTED)
        done = end
    return _joined(pieces, text, done)


# The opening of a group of fields: a mapping (`{"password": ...`, `{password=...`, `{}`), a
# list of mappings or of object reprs (`[{...`, `[Credential(...`), or an empty list.
_FIELDS_OPENING = re.compile(
    r"(?:\{|\[\s*+\{)\s*+(?:[\"'}]|[A-Za-z_][\w.-]*+\s*+[:=])|\[\s*+(?:[A-Za-z_]\w*+\(|\])"
)


def _holds_fields(text: str, separator_end: int) -> bool:
    """Whether the value after a separator opens a group of fields. Judged by its opening only:
    finding its closing bracket here, for each of many nested groups, would be quadratic."""
    start = _value_start(text, separator_end)
    return start is not None and _FIELDS_OPENING.match(text, start) is not None


def _joined(pieces: list[str], text: str, done: int) -> str:
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


# Every name the key-value and URL passes act on contains one of these words (the first word
# of a compound name), so text without any of them skips those passes.
FIELD_NAME_STEMS = re.compile(
    r"token|secret|pass|key|cookie|auth|assertion|verifier|dek|code|state|otp|jwt|bearer"
    r"|plain|cipher|private|saml|sig|pwd|cred",
    re.ASCII,
)


def _names_a_field(text: str, lowered: str) -> bool:
    if not text.isascii():
        return True  # a name may be written in compatibility forms (fullwidth letters)
    return ("=" in text or ":" in text or "%3d" in lowered) and (
        FIELD_NAME_STEMS.search(lowered) is not None
    )


def _may_hold_pairs(text: str, lowered: str) -> bool:
    return ("'," in text or '",' in text) and (
        not text.isascii() or FIELD_NAME_STEMS.search(lowered) is not None
    )


def _may_hold_secret(text: str) -> bool:
    """False only for text no pass can change: every pass needs one of these substrings."""
    return (
        not text.isascii()
        or ":" in text
        or "=" in text
        or "%" in text
        or "_" in text  # vendor prefixes
        or "-" in text  # PEM armour, vendor prefixes
        or "'," in text  # pairs
        or '",' in text
        or "eyJ" in text
        or "IBA" in text
        or "AgE" in text
        or "CAQ" in text
        or "IQoJ" in text
        or "FwoG" in text
        or "FQoG" in text
        or _SCHEME_WORD.search(text) is not None
    )


_SCHEME_WORD = re.compile(r"bearer|ssws|basic", re.ASCII | re.IGNORECASE)

_Pass = Callable[[str], str]
_Trigger = Callable[[str, str], bool]


def _substitute(pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str]) -> _Pass:
    return lambda text: pattern.sub(replace, text)


# (trigger, pass) in order; a trigger sees the text and its lower-case form. Armoured keys go
# first so that no later pass reads their bodies.
_PASSES: tuple[tuple[_Trigger, _Pass], ...] = (
    (lambda t, _: _PRIVATE_KEY_LABEL in t, _substitute(_PEM_PRIVATE_KEY, _pem_private_key)),
    (
        lambda t, _: "IBA" in t or "AgE" in t or "CAQ" in t,
        _substitute(_DER_PRIVATE_KEY, _der_private_key),
    ),
    (lambda t, _: "eyJ" in t, lambda text: _JWT.sub(REDACTED, text)),
    (lambda _, __: True, _substitute(_PREFIXED_SECRET, _prefixed_secret)),
    (lambda _, low: "bearer" in low or "ssws" in low, _substitute(_BEARER, _bearer)),
    (lambda _, low: "basic" in low, _substitute(_BASIC, _basic)),
    (lambda t, _: "://" in t and "@" in t, _substitute(_URL_USERINFO, _url_userinfo)),
    (_names_a_field, _url_parameters),
    (_names_a_field, _key_values),
    (_may_hold_pairs, _pairs),
    (lambda t, _: "kty" in t, _substitute(_JWK_PRIVATE_MEMBER, _jwk_private_member)),
)


def redact_text(text: str) -> str:
    """`text` with every recognised secret replaced by `[REDACTED]`.

    Recognised: bearer, SSWS and Basic credentials; secret URL, query and form parameters
    (`code`, `state`, `token`, `access_token`, `client_secret`, ... also percent-encoded);
    `name: value` / `name=value` pairs whose name is a secret field name (JSON, reprs, logfmt,
    headers), name/value structures naming one (`"name": "password", "value": ...`) and pairs
    whose first item names one (`('Authorization', '...')`); PEM
    and bare DER private keys; JWTs; vendor-prefixed keys (`sk_live_`, `whsec_`, `ghp_`, AWS
    session tokens); passwords in URLs; private JWK members.
    A bare random string with no context around it cannot be recognised: pass structures to
    `redact`, whose field names give that context.
    """
    if not _may_hold_secret(text):
        return str(text)
    lowered = text.lower()
    for triggered, scrub in _PASSES:
        if triggered(text, lowered):
            text = scrub(text)
    return str(text)


_MAX_CHAIN = 8


def safe_exception_text(exc: BaseException, *, max_length: int = 2000) -> str:
    """`Type: message; caused by: Type: message` for `exc` and its chain, scrubbed, no traceback.

    For error fields that are stored or logged (a failed backup's reason, an audit note). Each
    message is scrubbed on its own, so a truncated key in one cannot hide the others; a message
    whose `str()` fails shows as `<unprintable>`. Never for API responses: callers get the fixed
    text of `strongroom.error_responses`.
    """
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < _MAX_CHAIN:
        seen.add(id(current))
        try:
            message = str(current)
        except Exception:  # noqa: BLE001 - a broken __str__ must not break error handling
            message = "<unprintable>"
        name = type(current).__qualname__
        parts.append(f"{name}: {redact_text(message)}" if message else name)
        if current.__cause__ is not None or current.__suppress_context__:
            current = current.__cause__
        else:
            current = current.__context__
    text = "; caused by: ".join(parts)
    return text if len(text) <= max_length else text[: max(max_length - 3, 0)] + "..."
