"""The emulated JWT authorizer: what it accepts, everything it refuses, what it passes on."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from strongroom_local.authorizer import JwtAuthorizer, format_claim, token_scopes
from strongroom_local.exceptions import InsufficientScope, Unauthorized, UnsafeStateDir
from strongroom_local.issuer import KEY_FILE, DevIssuer, IssuerConfig
from strongroom_local.stack import LOCK_FILE

NOW = 1_795_000_000.0
CONFIG = IssuerConfig(issuer="https://127.0.0.1/dev-issuer", audience=("strongroom",))
# API Gateway refuses request headers above 10 KB: the longest token the authorizer takes.
TOKEN_CAP = 10 * 1024
# Algorithms PyJWT verifies with the issuer's RSA key, were they allowed: only RS256 is.
OTHER_RSA_ALGORITHMS = ("RS384", "RS512", "PS256")


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    return DevIssuer.load_or_create(tmp_path_factory.mktemp("issuer"))


@pytest.fixture
def authorizer(issuer: DevIssuer) -> JwtAuthorizer:
    return JwtAuthorizer(
        issuer.jwks(),
        issuer=CONFIG.issuer,
        audiences=["strongroom", "other-app"],
        clock=lambda: NOW,
    )


def mint(issuer: DevIssuer, **kwargs: Any) -> str:
    now = kwargs.pop("now", NOW)
    return issuer.mint("alice", config=CONFIG, now=now, **kwargs)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64(signature)}"


def valid_claims(issuer: DevIssuer) -> dict[str, Any]:
    return jwt.decode(mint(issuer), options={"verify_signature": False})


def issuer_signed(issuer: DevIssuer, claims: dict[str, Any], *, kid: str | None = None) -> str:
    """`claims` exactly as given (NaN, no exp...), RS256-signed with the issuer's own key."""
    header = {"alg": "RS256", "typ": "JWT", "kid": issuer.kid if kid is None else kid}
    key = issuer_private_key(issuer)
    return forged(header, claims, lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256()))


def tokens_around_the_cap(issuer: DevIssuer) -> tuple[str, str]:
    """Two valid dev tokens padded by a claim: the longest within TOKEN_CAP, the next past it."""

    def padded(length: int) -> str:
        return mint(issuer, extra_claims={"pad": "x" * length})

    # Each padding byte adds 4/3 of a character: start just short of the cap, then step.
    pad = (TOKEN_CAP - len(padded(0))) * 3 // 4 - 8
    assert len(padded(pad)) <= TOKEN_CAP
    while len(padded(pad + 1)) <= TOKEN_CAP:
        pad += 1
    return padded(pad), padded(pad + 1)


def test_a_dev_token_is_accepted_and_its_claims_passed_as_strings(
    issuer: DevIssuer, authorizer: JwtAuthorizer
) -> None:
    token = mint(issuer, email="alice@example.com", auth_age_seconds=120)
    context = authorizer.authorize(f"Bearer {token}")
    claims = context.claims
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["iss"] == CONFIG.issuer
    assert claims["aud"] == "strongroom"
    assert claims["iat"] == str(int(NOW))
    assert claims["nbf"] == str(int(NOW))
    assert claims["exp"] == str(int(NOW) + 3600)
    assert claims["auth_time"] == str(int(NOW) - 120)
    assert claims["jti"]
    assert all(isinstance(value, str) for value in claims.values())
    # Routes without authorization scopes get `scopes: null`, as on API Gateway.
    assert context.as_event_value() == {"jwt": {"claims": claims, "scopes": None}}


def test_the_scheme_is_case_insensitive(issuer: DevIssuer, authorizer: JwtAuthorizer) -> None:
    assert authorizer.authorize(f"bearer {mint(issuer)}").claims["sub"] == "alice"


def test_the_token_alone_is_accepted_as_api_gateway_accepts_it(
    issuer: DevIssuer, authorizer: JwtAuthorizer
) -> None:
    # "The identitySource can include only the token, or the token prefixed with Bearer."
    assert authorizer.authorize(mint(issuer)).claims["sub"] == "alice"
    assert authorizer.authorize(f"  {mint(issuer)}  ").claims["sub"] == "alice"


@pytest.fixture(scope="module")
def attacks(issuer: DevIssuer) -> dict[str, str | None]:
    claims = valid_claims(issuer)
    public_pem = issuer_public_pem(issuer)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    valid = mint(issuer)
    head, payload, signature = valid.split(".")
    tampered_claims = {**claims, "sub": "mallory"}

    # Python's json reads NaN and Infinity: signed by the issuer, they must still not pass.
    def signed_with(**times: float) -> str:
        return issuer_signed(issuer, {**claims, **times})

    # Signed by the issuer's own key with its kid: refused for the named algorithm alone.
    def other_rsa_algorithm(algorithm: str) -> str:
        return jwt.encode(
            claims, issuer_private_key(issuer), algorithm=algorithm, headers={"kid": issuer.kid}
        )

    return {
        "expired": mint(issuer, now=NOW - 7200),
        "expired exactly now": mint(issuer, now=NOW - 3600),
        "not yet valid": mint(issuer, now=NOW + 600),
        "nbf in the future": mint(issuer, extra_claims={"nbf": int(NOW) + 60}),
        "iat in the future": mint(issuer, extra_claims={"iat": int(NOW) + 60}),
        "no exp": issuer_signed(issuer, {k: v for k, v in claims.items() if k != "exp"}),
        "exp not a number": mint(issuer, extra_claims={"exp": str(int(NOW) + 60)}),
        "exp infinite": signed_with(exp=float("inf")),
        "exp NaN": signed_with(exp=float("nan")),
        "nbf NaN": signed_with(nbf=float("nan")),
        "iat NaN": signed_with(iat=float("nan")),
        "nbf minus infinity": signed_with(nbf=float("-inf")),
        "wrong aud": mint(issuer, extra_claims={"aud": "someone-else"}),
        "null aud": mint(issuer, extra_claims={"aud": None}),
        # Without aud the client_id stands in for it: with neither, nothing matches.
        "no aud and no client_id": issuer_signed(
            issuer, {k: v for k, v in claims.items() if k != "aud"}
        ),
        "no aud, client_id of another app": issuer_signed(
            issuer, {**{k: v for k, v in claims.items() if k != "aud"}, "client_id": "someone"}
        ),
        "wrong iss": mint(issuer, extra_claims={"iss": "https://evil.example/"}),
        "alg none": forged({"alg": "none", "typ": "JWT", "kid": issuer.kid}, claims),
        "alg none no kid": forged({"alg": "none"}, claims),
        "HS256 with the public key": forged(
            {"alg": "HS256", "typ": "JWT", "kid": issuer.kid},
            claims,
            lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
        ),
        **{f"{alg} with the right key": other_rsa_algorithm(alg) for alg in OTHER_RSA_ALGORITHMS},
        # The issuer's key and signature: only the kid, absent from the JWKS, is wrong.
        "unknown kid": issuer_signed(issuer, claims, kid="not-" + issuer.kid),
        "other key, same kid": jwt.encode(
            claims, other_key, algorithm="RS256", headers={"kid": issuer.kid}
        ),
        "no kid": jwt.encode(claims, issuer_private_key(issuer), algorithm="RS256"),
        "tampered payload": f"{head}.{b64(json.dumps(tampered_claims).encode())}.{signature}",
        "signature stripped": f"{head}.{payload}.",
        "garbage": "not.a.token",
        "missing header": None,
        "empty header": "",
        "bearer without token": "Bearer ",
        "wrong scheme": f"Basic {valid}",
        "unknown scheme": f"Token {valid}",
        "forged token alone": f"{head}.{b64(json.dumps(tampered_claims).encode())}.{signature}",
        # Signed and otherwise valid: refused for its length alone.
        "oversized": tokens_around_the_cap(issuer)[1],
    }


def issuer_private_key(issuer: DevIssuer) -> rsa.RSAPrivateKey:
    return issuer._private_key


def issuer_public_pem(issuer: DevIssuer) -> bytes:
    return issuer._private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


ATTACKS = [
    "expired",
    "expired exactly now",
    "not yet valid",
    "nbf in the future",
    "iat in the future",
    "no exp",
    "exp not a number",
    "exp infinite",
    "exp NaN",
    "nbf NaN",
    "iat NaN",
    "nbf minus infinity",
    "wrong aud",
    "null aud",
    "no aud and no client_id",
    "no aud, client_id of another app",
    "wrong iss",
    "alg none",
    "alg none no kid",
    "HS256 with the public key",
    "RS384 with the right key",
    "RS512 with the right key",
    "PS256 with the right key",
    "unknown kid",
    "other key, same kid",
    "no kid",
    "tampered payload",
    "signature stripped",
    "garbage",
    "missing header",
    "empty header",
    "bearer without token",
    "wrong scheme",
    "unknown scheme",
    "forged token alone",
    "oversized",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_bad_token_is_refused_with_one_opaque_error(
    attack: str, attacks: dict[str, str | None], authorizer: JwtAuthorizer
) -> None:
    value = attacks[attack]
    header = value if value is None or attack in _RAW_HEADERS else f"Bearer {value}"
    with pytest.raises(Unauthorized) as refused:
        authorizer.authorize(header)
    assert refused.type is Unauthorized
    assert str(refused.value) == ""


_RAW_HEADERS = {
    "empty header",
    "bearer without token",
    "wrong scheme",
    "unknown scheme",
    "forged token alone",
}


def test_the_attack_list_is_complete(attacks: dict[str, str | None]) -> None:
    assert sorted(attacks) == sorted(ATTACKS)


def test_an_issuer_signed_token_with_its_kid_and_every_claim_is_accepted(
    issuer: DevIssuer, authorizer: JwtAuthorizer
) -> None:
    # "no exp" and "unknown kid" are built the same way: the missing exp, the kid, refuses them.
    claims = valid_claims(issuer)
    assert authorizer.authorize(f"Bearer {issuer_signed(issuer, claims)}").claims["sub"] == "alice"


@pytest.mark.parametrize("algorithm", OTHER_RSA_ALGORITHMS)
def test_the_other_rsa_algorithms_verify_with_the_issuer_key(
    algorithm: str, issuer: DevIssuer, attacks: dict[str, str | None]
) -> None:
    # PyJWT takes these with the JWKS key: only the authorizer's RS256 allowlist refuses them.
    token = attacks[f"{algorithm} with the right key"]
    assert token is not None
    assert jwt.get_unverified_header(token) == {"alg": algorithm, "typ": "JWT", "kid": issuer.kid}
    (jwk,) = issuer.jwks()["keys"]
    public_key = jwt.PyJWK.from_dict(jwk).key
    claims = jwt.decode(
        token,
        public_key,
        algorithms=[algorithm],
        audience="strongroom",
        issuer=CONFIG.issuer,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert claims["sub"] == "alice"


def test_a_valid_token_up_to_the_length_cap_is_accepted_one_past_it_refused(
    issuer: DevIssuer, authorizer: JwtAuthorizer
) -> None:
    within, past = tokens_around_the_cap(issuer)
    assert len(within) <= TOKEN_CAP < len(past) <= TOKEN_CAP + 2
    assert authorizer.authorize(f"Bearer {within}").claims["sub"] == "alice"
    with pytest.raises(Unauthorized):
        authorizer.authorize(f"Bearer {past}")


def test_a_list_audience_or_client_id_may_match(
    issuer: DevIssuer, authorizer: JwtAuthorizer
) -> None:
    listed = mint(issuer, extra_claims={"aud": ["unrelated", "other-app"]})
    assert authorizer.authorize(f"Bearer {listed}").claims["aud"] == "[unrelated other-app]"
    client = mint(issuer, extra_claims={"aud": None, "client_id": "strongroom"})
    claims = jwt.decode(client, options={"verify_signature": False})
    claims.pop("aud")
    token = jwt.encode(
        claims, issuer_private_key(issuer), algorithm="RS256", headers={"kid": issuer.kid}
    )
    assert authorizer.authorize(f"Bearer {token}").claims["client_id"] == "strongroom"


def test_a_sub_or_jti_that_is_not_a_string_passes_as_api_gateway_passes_it(
    issuer: DevIssuer, authorizer: JwtAuthorizer
) -> None:
    # API Gateway checks neither claim's type: it renders them as strings like any other.
    token = mint(issuer, extra_claims={"sub": 123, "jti": 5})
    claims = authorizer.authorize(f"Bearer {token}").claims
    assert claims["sub"] == "123"
    assert claims["jti"] == "5"


def test_route_scopes_need_one_matching_token_scope(
    issuer: DevIssuer, authorizer: JwtAuthorizer
) -> None:
    token = mint(issuer, scopes=["orgs.read", "echo.read"])
    context = authorizer.authorize(f"Bearer {token}", required_scopes=["echo.read", "x"])
    assert context.scopes == ["orgs.read", "echo.read"]
    with pytest.raises(InsufficientScope):
        authorizer.authorize(f"Bearer {token}", required_scopes=["admin"])
    with pytest.raises(InsufficientScope):
        authorizer.authorize(f"Bearer {mint(issuer)}", required_scopes=["echo.read"])
    # Authentication comes first: a bad token on a scoped route is 401, never 403.
    with pytest.raises(Unauthorized):
        authorizer.authorize("Bearer x.y.z", required_scopes=["echo.read"])


def test_scopes_come_from_scp_before_scope() -> None:
    assert token_scopes({"scp": ["a", "b"], "scope": "c"}) == ["a", "b"]
    assert token_scopes({"scp": "a b"}) == ["a", "b"]
    assert token_scopes({"scope": "c d"}) == ["c", "d"]
    assert token_scopes({}) == []


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("text", "text"),
        (42, "42"),
        (1795000000, "1795000000"),
        (1.5, "1.5"),
        (2.0, "2"),
        (True, "true"),
        (False, "false"),
        (["a", "b"], "[a b]"),
        ([1, ["x", True]], "[1 [x true]]"),
        ({"b": 1, "a": "x"}, "map[a:x b:1]"),
        (None, "<nil>"),
    ],
)
def test_claims_are_rendered_as_api_gateway_renders_them(value: Any, rendered: str) -> None:
    assert format_claim(value) == rendered


def test_the_dev_issuer_key_is_private_stable_and_identified_by_its_thumbprint(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    first = DevIssuer.load_or_create(state)
    key_file = state / "dev-issuer-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700
    again = DevIssuer.load_or_create(state)
    assert again.kid == first.kid
    (jwk,) = first.jwks()["keys"]
    assert jwk["kid"] == first.kid
    assert jwk["alg"] == "RS256"
    assert "d" not in jwk  # public only
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    assert first.kid == b64(hashlib.sha256(canonical.encode()).digest())
    other = DevIssuer.load_or_create(tmp_path / "elsewhere")
    assert other.kid != first.kid


@pytest.mark.parametrize("mode", [0o755, 0o777, 0o500])
def test_an_existing_state_dir_of_ours_is_made_private(tmp_path: Path, mode: int) -> None:
    # mkdir's mode applies only to a directory it creates: an existing one that holds only the
    # stack's own files is chmod-ed (tests/local/test_cli.py: which ones are not).
    state = tmp_path / "state"
    state.mkdir()
    (state / LOCK_FILE).write_text("")
    state.chmod(mode)
    DevIssuer.load_or_create(state)
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / KEY_FILE).stat().st_mode & 0o777 == 0o600


# Files of another user: only root can make them.
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
OTHER_UID = 65534


@needs_root
def test_a_state_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, OTHER_UID, -1)
    with pytest.raises(UnsafeStateDir, match="another user"):
        DevIssuer.load_or_create(state)
    assert list(state.iterdir()) == []
    assert state.stat().st_mode & 0o777 == 0o700


def unsafe_key(state: Path, how: str) -> None:
    """Leave `state`'s dev issuer key (made by the issuer) unsafe in the way `how` names."""
    key = state / KEY_FILE
    if how == "readable by others":
        key.chmod(0o644)
    elif how == "writable by the group":
        key.chmod(0o620)
    elif how == "another user's":
        os.chown(key, OTHER_UID, -1)
    elif how == "a link to a key of ours":
        elsewhere = state.parent / "elsewhere.pem"
        key.rename(elsewhere)
        key.symlink_to(elsewhere)
    elif how == "a directory":
        key.unlink()
        key.mkdir(mode=0o700)


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("readable by others", "mode 0644"),
        ("writable by the group", "mode 0620"),
        pytest.param("another user's", "another user", marks=needs_root),
        ("a link to a key of ours", "symbolic link"),
        ("a directory", "not a regular file"),
    ],
)
def test_a_key_that_is_not_ours_alone_is_refused_not_used(
    tmp_path: Path, how: str, said: str
) -> None:
    state = tmp_path / "state"
    DevIssuer.load_or_create(state)
    unsafe_key(state, how)
    with pytest.raises(UnsafeStateDir, match=said):
        DevIssuer.load_or_create(state)


def test_an_integer_time_too_large_for_a_float_is_compared_not_crashed_on(
    issuer: DevIssuer, authorizer: JwtAuthorizer
) -> None:
    claims = valid_claims(issuer)
    header = {"alg": "RS256", "typ": "JWT", "kid": issuer.kid}

    def signed_with(**times: int) -> str:
        return forged(
            header,
            {**claims, **times},
            lambda data: issuer_private_key(issuer).sign(data, padding.PKCS1v15(), hashes.SHA256()),
        )

    # Far in the future is a valid exp; a not-before that far off is not yet valid.
    assert authorizer.authorize(f"Bearer {signed_with(exp=10**400)}").claims["sub"] == "alice"
    with pytest.raises(Unauthorized):
        authorizer.authorize(f"Bearer {signed_with(nbf=10**400)}")
