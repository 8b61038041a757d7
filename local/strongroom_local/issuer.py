"""The local dev issuer: one RSA key in the state directory, its JWKS, and dev tokens.

The key is generated once (file mode 0600, never committed: the state directory is
git-ignored) so tokens minted by `strongroom dev-token` stay valid across restarts of the stack.
The issuer and audience the stack was provisioned with are kept next to it, so a token minted
by another command carries exactly the `iss` and `aud` the running stack checks.

The state directory must be ours and private (0700; only one this code made, or one holding
nothing but the stack's files, is chmodded to it), and so must the key: one that another user
owns, that others may read, or that is a link is refused, never used.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from strongroom_local.exceptions import UnsafeStateDir

DEFAULT_ISSUER = "https://127.0.0.1/dev-issuer"
DEFAULT_AUDIENCE = "strongroom"
ALGORITHM = "RS256"
KEY_FILE = "dev-issuer-key.pem"
CONFIG_FILE = "dev-issuer.json"


# What the stack and its tools write in a state directory (stack.py's STACK_FILE and LOCK_FILE;
# the harness keeps the stack's stderr there): an existing directory holding nothing else is
# theirs to make 0700.
STATE_FILES = frozenset({KEY_FILE, CONFIG_FILE, "stack.json", "stack.lock", "stack.stderr.log"})


def _holds_only_state_files(state_dir: Path) -> bool:
    """Some of the stack's own files and nothing else (their leftover temporaries,
    `.<name>.<hex>`, from write_private_file or the key's creation, count as theirs): each a
    regular file of ours, not a link or a directory that only bears the name. An empty
    directory is not one the stack wrote to."""
    entries = os.listdir(state_dir)
    for entry in entries:
        name = entry
        if entry.startswith("."):
            name, _, suffix = entry[1:].rpartition(".")
            if len(suffix) != 8:
                return False
        if name not in STATE_FILES:
            return False
        status = os.lstat(state_dir / entry)
        if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid():
            return False
    return bool(entries)


def ensure_state_dir(state_dir: Path) -> Path:
    """The state directory, created 0700 if needed: it holds a private key. UnsafeStateDir if
    it is `/` or the home directory, another user's (they could swap the key or read the
    tokens), or open to others while it holds more than the stack's own files: a project root
    or a shared directory is never chmodded, nor the key written into it."""
    resolved = state_dir.resolve()
    try:
        home = Path.home().resolve()
    except RuntimeError:  # no home directory to protect
        home = Path("/")
    if resolved in (Path("/"), home):
        raise UnsafeStateDir(f"{state_dir} is {resolved}: give a directory of its own")
    try:
        state_dir.mkdir(mode=0o700, parents=True)
        created = True
    except FileExistsError:
        created = False
    status = _own_directory(state_dir)
    mode = stat.S_IMODE(status.st_mode)
    if mode != 0o700:
        # A sticky or setgid directory is shared by design: never ours to make private.
        shared = mode & (stat.S_ISVTX | stat.S_ISGID)
        if not created and (shared or not _holds_only_state_files(state_dir)):
            raise UnsafeStateDir(
                f"{state_dir} is not private (mode {mode:04o}, not 0700) and is not only the"
                " stack's: give a directory of its own, or make it private"
                f" (chmod 700 {state_dir})"
            )
        # mkdir's mode is masked by the umask; an existing one holds only what we wrote.
        state_dir.chmod(0o700)
    return state_dir


def _own_directory(state_dir: Path) -> os.stat_result:
    """Its status; UnsafeStateDir unless it is a directory of ours."""
    status = state_dir.stat()
    if not stat.S_ISDIR(status.st_mode):
        raise UnsafeStateDir(f"{state_dir} is not a directory")
    if status.st_uid != os.geteuid():
        raise UnsafeStateDir(f"{state_dir} belongs to another user (uid {status.st_uid})")
    return status


def check_private_dir(state_dir: Path) -> None:
    """UnsafeStateDir unless `state_dir` is ours and 0700, as the stack makes it: what is read
    from it (stack.json's URLs and token) is trusted only then. FileNotFoundError if missing."""
    mode = stat.S_IMODE(_own_directory(state_dir).st_mode)
    if mode != 0o700:
        raise UnsafeStateDir(
            f"{state_dir} is not private (mode {mode:04o}, not 0700): anyone could have written"
            f" its files; make it private (chmod 700 {state_dir}) and restart the stack"
        )


def read_private_file(path: Path) -> bytes:
    """The bytes of a file only we may read; UnsafeStateDir if it is a link, not a regular
    file, another user's, or readable or writable by anyone else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeStateDir(f"{path} is a symbolic link") from None
        raise
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise UnsafeStateDir(f"{path} is not a regular file")
        if status.st_uid != os.geteuid():
            raise UnsafeStateDir(f"{path} belongs to another user (uid {status.st_uid})")
        if status.st_mode & 0o077:
            mode = stat.S_IMODE(status.st_mode)
            raise UnsafeStateDir(f"{path} is open to other users (mode {mode:04o}, not 0600)")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def write_private_file(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, readable by the owner only from the first byte on."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class IssuerConfig:
    """What the stack's JWT authorizer checks: `iss` and the accepted `aud` values."""

    issuer: str = DEFAULT_ISSUER
    audience: tuple[str, ...] = (DEFAULT_AUDIENCE,)

    def save(self, state_dir: Path) -> None:
        document = {"issuer": self.issuer, "audience": list(self.audience)}
        ensure_state_dir(state_dir)
        write_private_file(state_dir / CONFIG_FILE, json.dumps(document).encode())

    @classmethod
    def load(cls, state_dir: Path) -> IssuerConfig:
        """The saved configuration, or the defaults when the stack never ran here."""
        try:
            document = json.loads((state_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        return cls(issuer=str(document["issuer"]), audience=tuple(document["audience"]))


class DevIssuer:
    """Signs dev tokens with the state directory's key and publishes its public JWKS."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self._private_key = private_key
        numbers = private_key.public_key().public_numbers()
        self._public_jwk = {
            "e": _b64url_uint(numbers.e),
            "kty": "RSA",
            "n": _b64url_uint(numbers.n),
        }
        # RFC 7638 thumbprint: the kid changes exactly when the key does.
        canonical = json.dumps(self._public_jwk, separators=(",", ":"), sort_keys=True)
        digest = hashlib.sha256(canonical.encode()).digest()
        self.kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    @classmethod
    def load_or_create(cls, state_dir: Path) -> DevIssuer:
        """The issuer whose key is in `state_dir`; the key is generated on first use."""
        ensure_state_dir(state_dir)
        path = state_dir / KEY_FILE
        if not path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            # Written whole to a private temporary file, then linked into place: when two
            # commands race, the first complete key wins and both use it.
            temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(pem)
                with contextlib.suppress(FileExistsError):
                    os.link(temporary, path)
            finally:
                temporary.unlink()
        loaded = serialization.load_pem_private_key(read_private_file(path), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise TypeError(f"{path} does not hold an RSA private key")
        return cls(loaded)

    def jwks(self) -> dict[str, Any]:
        """The public key set, as an identity provider publishes it."""
        key = {**self._public_jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}
        return {"keys": [key]}

    def mint(
        self,
        sub: str,
        *,
        config: IssuerConfig,
        now: float,
        ttl_seconds: int = 3600,
        auth_age_seconds: int = 0,
        email: str | None = None,
        scopes: Sequence[str] = (),
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token for `sub`, valid from `now` for `ttl_seconds`."""
        issued_at = int(now)
        claims: dict[str, Any] = {
            "iss": config.issuer,
            "aud": config.audience[0] if len(config.audience) == 1 else list(config.audience),
            "sub": sub,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + ttl_seconds,
            "auth_time": issued_at - auth_age_seconds,
            "jti": secrets.token_urlsafe(16),
        }
        if email is not None:
            claims["email"] = email
        if scopes:
            claims["scope"] = " ".join(scopes)
        claims.update(extra_claims or {})
        return jwt.encode(claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid})


def mint_dev_token(
    state_dir: Path,
    sub: str,
    *,
    now: float,
    ttl_seconds: int = 3600,
    auth_age_seconds: int = 0,
    email: str | None = None,
    scopes: Sequence[str] = (),
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A token the stack running on `state_dir` accepts (what `strongroom dev-token` prints)."""
    return DevIssuer.load_or_create(state_dir).mint(
        sub,
        config=IssuerConfig.load(state_dir),
        now=now,
        ttl_seconds=ttl_seconds,
        auth_age_seconds=auth_age_seconds,
        email=email,
        scopes=scopes,
        extra_claims=extra_claims,
    )
