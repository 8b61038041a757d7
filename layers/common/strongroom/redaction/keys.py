"""Which field names hold secrets, shared by the structure walk and the free-text scrubber.

A name is compared after normalisation: NFKC, case-folded, with `-`, `_`, `.`, spaces and
invisible characters (soft hyphen, zero-width space...) dropped, so `client_secret`,
`Client-Secret`, `clientSecret`, `CLIENT.SECRET` and the same in fullwidth letters are one
name. Only the decision uses the normal form: what is shown is the name as written.

`code` and `state` are neither secret nor safe by name alone: they are OAuth's authorization
code and anti-CSRF state, and also our error-code field and many status fields. They are kept
only when their value has the shape of an enumeration word (`not_found`, `AccessDenied`,
`ACTIVE`, `pending`, or a 1-3 digit status), which a random OAuth value practically never has;
anything else under them is redacted. Context rules come on top: in a URL or form body they
always go (`text.py`), and so do they in a mapping that looks like an OAuth message (`values.py`).
"""

from __future__ import annotations

import functools
import re
import unicodedata

REDACTED = "[REDACTED]"

# Default-ignorable characters (Unicode's DerivedCoreProperties, as NFKC_Casefold drops them):
# invisible inside a name, so `pass\u00adword` is `password`.
DEFAULT_IGNORABLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
)
_DROPPED = str.maketrans("", "", "-_. ")

# Whole names (normalised) that hold a secret or key material.
SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxyauthorization",
        "cookie",
        "setcookie",
        "apikey",
        "xapikey",
        "bearer",
        "jwt",
        "assertion",
        "samlresponse",
        "codeverifier",
        "authcode",
        "authorizationcode",
        "devicecode",
        "otp",
        "totp",
        "hotp",
        "mfacode",
        "passwordhash",
        # Envelope encryption: plaintext and wrapped data keys, KMS responses.
        "dek",
        "plaintext",
        "ciphertextblob",
        "keymaterial",
        # Secrets Manager responses.
        "secretstring",
        "secretbinary",
        # Presigned S3 URLs: the signature is a bearer capability until it expires.
        "xamzsignature",
    }
)

# Name endings (normalised) that mark a secret: `okta_api_token`, `webhook_signing_secret`,
# `aws_secret_access_key`, `new_password`, `wrapped_dek`... Endings, not substrings, so that
# `token_endpoint`, `token_type`, `secret_arn` and `secret_last4` stay readable.
SECRET_SUFFIXES = (
    "token",
    "tokens",
    "secret",
    "secrets",
    "password",
    "passwords",
    "passwd",
    "pwd",  # `db_pwd`, ODBC's `Pwd=`
    "passphrase",
    "passcode",
    "privatekey",
    "privatekeys",
    "privatejwk",
    "apikey",
    "apikeys",
    "secretkey",
    "secretaccesskey",
    "cookie",
    "cookies",
    "authorization",
    "assertion",
    "codeverifier",
    "dek",
    "deks",
    "datakey",
    "wrappedkey",
    "signingkey",
    "hmackey",
    "encryptionkey",
    "masterkey",
    "sessionkey",
)

# The names of the credential fields a connection seals and a token response holds, exactly as
# our code writes them: two of them side by side are a list of names, not a name and its value.
CREDENTIAL_FIELD_NAMES = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "private_key",
        "code_verifier",
    }
)

# Names whose single value is a secret (`credentials=hunter2`, `{"credential": "u:p"}`), but
# which also name a group of fields: AWS's `Credentials`, our API's list of credential
# fingerprints, an Okta user's `credentials`. A mapping under them is walked (its own names
# decide); any single value in it, or in a list under it, is replaced.
GROUP_SECRET_NAMES = frozenset({"credential", "credentials"})

# A name/value structure describes one field: `{"name": "password", "value": ...}`, an HTTP
# header list's `{"Name": "Authorization", "Value": ...}`, `{"key": "client_secret", ...}`, an
# SSM parameter. Its value fields are judged under the name its name fields hold.
NAME_FIELDS = frozenset({"name", "key", "field", "header"})
VALUE_FIELDS = frozenset({"value", "values"})

# Names whose value is a secret only by shape (see the module docstring).
CONDITIONAL_NAMES = frozenset({"code", "state"})

# Names that may carry a whole credential line, such as `Authorization: Basic abc`; in free text
# their value runs to the end of the line rather than to the first space or comma.
HEADER_NAMES = frozenset({"authorization", "proxyauthorization", "cookie", "setcookie"})

_ENUM_WORD = re.compile(
    r"[a-z]+(?:[_.-][a-z]+)*"  # not_found, invalid_grant, pending
    r"|[A-Z]+(?:_[A-Z]+)*"  # ACTIVE, LOCKED_OUT
    r"|(?:[A-Z][a-z]+)+"  # AccessDenied, PendingDeletion
    r"|[0-9]{1,3}",  # 404, 500
    re.ASCII,
)
_ENUM_MAX_LENGTH = 64


@functools.cache
def _ignorable() -> re.Pattern[str]:
    # Compiled when first needed (a name that is not ASCII): 0.5 ms a cold start saves.
    return re.compile(f"[{DEFAULT_IGNORABLE}]")


def normalise_key(name: str) -> str:
    """`name` in NFKC, case-folded, without `-`, `_`, `.`, spaces and invisible characters."""
    if name.isascii():
        return name.lower().translate(_DROPPED)
    folded = unicodedata.normalize("NFKC", _ignorable().sub("", name)).casefold()
    # Case folding may leave text that is not in NFKC (`ǰ`): normalised again, as NFKC_Casefold.
    return unicodedata.normalize("NFKC", folded).translate(_DROPPED)


def is_secret_key(name: str) -> bool:
    """Whether a value under `name` is a secret whatever it looks like."""
    normalised = normalise_key(name)
    return normalised in SECRET_NAMES or normalised.endswith(SECRET_SUFFIXES)


def looks_like_enum_word(value: object) -> bool:
    """Whether a value under `code`/`state` has the shape of an error code or a status word."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return 0 <= value <= 999
    if isinstance(value, str):
        return len(value) <= _ENUM_MAX_LENGTH and _ENUM_WORD.fullmatch(value) is not None
    return False
