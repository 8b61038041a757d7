"""Orgs and members through the real local stack over HTTP: flows, roles, isolation, attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from strongroom_local.issuer import KEY_FILE
from tests.e2e.conftest import LocalStackClient, call, new_user

pytestmark = pytest.mark.e2e
TIMEOUT = 30
# API Gateway's own 401, whatever the reason: byte for byte.
UNAUTHORIZED_BODY = b'{"message":"Unauthorized"}'


def _new_org(stack: LocalStackClient, owner: str) -> str:
    status, body = call(stack, "POST", "/orgs", owner, json={"name": "Acme"})
    assert status == 201, body
    return str(body["org_id"])


def test_a_user_creates_at_most_their_allowance_of_orgs(local_stack: LocalStackClient) -> None:
    # The stack runs with the template's MaxOrgsPerUser (10): each org is a KMS key.
    alice, bob = new_user("alice"), new_user("bob")
    orgs = [_new_org(local_stack, alice) for _ in range(10)]
    status, body = call(local_stack, "POST", "/orgs", alice, json={"name": "One more"})
    assert status == 429
    assert body == {
        "error": {"code": "rate_limited", "message": "A user can create at most 10 orgs."}
    }
    # Joining orgs is not creating them; the orgs alice made all still answer.
    assert (
        call(local_stack, "PUT", f"/orgs/{orgs[0]}/members/{bob}", alice, json={"role": "owner"})[0]
        == 200
    )
    assert call(local_stack, "POST", "/orgs", bob, json={"name": "Bob's"})[0] == 201
    assert all(call(local_stack, "GET", f"/orgs/{org}", alice)[0] == 200 for org in orgs)


def test_org_lifecycle_and_membership(local_stack: LocalStackClient) -> None:
    alice, bob, carol = new_user("alice"), new_user("bob"), new_user("carol")
    org = _new_org(local_stack, alice)
    status, body = call(local_stack, "GET", f"/orgs/{org}", alice)
    assert status == 200
    assert body["your_role"] == "owner"
    assert (
        call(local_stack, "PUT", f"/orgs/{org}/members/{bob}", alice, json={"role": "admin"})[0]
        == 200
    )
    assert (
        call(local_stack, "PUT", f"/orgs/{org}/members/{carol}", alice, json={"role": "member"})[0]
        == 200
    )
    status, body = call(local_stack, "GET", f"/orgs/{org}/members", carol)
    assert status == 200
    assert {m["user_id"]: m["role"] for m in body["members"]} == {
        alice: "owner",
        bob: "admin",
        carol: "member",
    }
    assert call(local_stack, "DELETE", f"/orgs/{org}/members/{carol}", alice)[0] == 204
    assert call(local_stack, "GET", f"/orgs/{org}", carol)[0] == 404


def test_a_member_id_with_a_percent_encoded_pipe_is_accepted(
    local_stack: LocalStackClient,
) -> None:
    """Auth0-style subjects (`auth0|...`) go in the path percent-encoded; API Gateway hands the
    function the decoded path, and so must the local stack."""
    owner, bob = new_user("owner"), f"auth0|{new_user('bob')}"
    org = _new_org(local_stack, owner)
    encoded = bob.replace("|", "%7C")
    status, body = call(
        local_stack, "PUT", f"/orgs/{org}/members/{encoded}", owner, json={"role": "member"}
    )
    assert status == 200, body
    status, body = call(local_stack, "GET", f"/orgs/{org}/members", owner)
    assert status == 200
    assert {m["user_id"]: m["role"] for m in body["members"]} == {owner: "owner", bob: "member"}
    # The member is the token's subject: bob sees the org.
    assert call(local_stack, "GET", f"/orgs/{org}", bob)[0] == 200


def test_a_path_decoded_into_another_route_runs_nothing(local_stack: LocalStackClient) -> None:
    """API Gateway matches `/orgs/{org}%3F/members/{owner}` as a member's removal; the path it
    hands the function is decoded and cut at the decoded `?`: `/orgs/{org}`. The function must
    not run the org's deletion the gateway never matched."""
    owner = new_user("owner")
    org = _new_org(local_stack, owner)
    status, body = call(local_stack, "DELETE", f"/orgs/{org}%3F/members/{owner}", owner)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = call(local_stack, "GET", f"/orgs/{org}", owner)
    assert status == 200
    assert body["deletion_started_at"] is None


def test_every_role_boundary(local_stack: LocalStackClient) -> None:
    owner, admin, member = new_user("owner"), new_user("admin"), new_user("member")
    org = _new_org(local_stack, owner)
    for user, role in ((admin, "admin"), (member, "member")):
        assert (
            call(local_stack, "PUT", f"/orgs/{org}/members/{user}", owner, json={"role": role})[0]
            == 200
        )
    target = new_user("target")
    expected = [  # (method, path, body) -> status per role (owner, admin, member)
        ("GET", f"/orgs/{org}", None, (200, 200, 200)),
        ("GET", f"/orgs/{org}/members", None, (200, 200, 200)),
        ("PUT", f"/orgs/{org}/members/{target}", {"role": "member"}, (200, 403, 403)),
        ("DELETE", f"/orgs/{org}/members/{target}", None, (204, 403, 403)),
    ]
    for method, path, body, statuses in expected:
        # Non-owners first, so the owner's write is the one that lands.
        for user, status in reversed(list(zip((owner, admin, member), statuses, strict=True))):
            kwargs = {"json": body} if body is not None else {}
            got, answer = call(local_stack, method, path, user, **kwargs)
            assert got == status, (method, path, user, answer)
            if status == 403:
                assert answer["error"]["code"] == "forbidden"


def test_another_orgs_resources_answer_404_like_missing_ones(local_stack: LocalStackClient) -> None:
    alice, mallory = new_user("alice"), new_user("mallory")
    org = _new_org(local_stack, alice)
    _new_org(local_stack, mallory)
    missing = "org_" + "a" * 26
    answers = [
        call(local_stack, "GET", f"/orgs/{org}", mallory),
        call(local_stack, "GET", f"/orgs/{org}/members", mallory),
        call(local_stack, "PUT", f"/orgs/{org}/members/{mallory}", mallory, json={"role": "owner"}),
        call(local_stack, "DELETE", f"/orgs/{org}/members/{alice}", mallory),
        call(local_stack, "GET", f"/orgs/{missing}", mallory),
    ]
    assert [status for status, _ in answers] == [404] * len(answers)
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1
    # And nothing changed: alice is still the only member.
    status, body = call(local_stack, "GET", f"/orgs/{org}/members", alice)
    assert status == 200
    assert [m["user_id"] for m in body["members"]] == [alice]


def test_last_owner_is_kept(local_stack: LocalStackClient) -> None:
    alice = new_user("alice")
    org = _new_org(local_stack, alice)
    status, body = call(
        local_stack, "PUT", f"/orgs/{org}/members/{alice}", alice, json={"role": "admin"}
    )
    assert status == 409
    assert body["error"]["code"] == "conflict"
    status, body = call(local_stack, "DELETE", f"/orgs/{org}/members/{alice}", alice)
    assert status == 409
    assert body["error"]["code"] == "conflict"
    # Neither write landed: alice is still the org's one owner.
    status, body = call(local_stack, "GET", f"/orgs/{org}/members", alice)
    assert status == 200
    assert {m["user_id"]: m["role"] for m in body["members"]} == {alice: "owner"}


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        (b'{"role": "member", "user_id": "mallory"}', "application/json", 422),
        (b'{"role": "superuser"}', "application/json", 422),
        (b"{}", "application/json", 422),
        (b'{"role": ', "application/json", 400),
        (b'{"role": "member", "pad": "' + b"x" * (256 * 1024) + b'"}', "application/json", 413),
    ],
)
def test_bad_bodies_change_nothing(
    local_stack: LocalStackClient, raw: bytes, content_type: str, status: int
) -> None:
    alice = new_user("alice")
    org = _new_org(local_stack, alice)
    got, body = call(
        local_stack,
        "PUT",
        f"/orgs/{org}/members/{new_user('bob')}",
        alice,
        data=raw,
        headers={"Content-Type": content_type},
    )
    assert got == status, body
    assert set(body) == {"error"}
    members = call(local_stack, "GET", f"/orgs/{org}/members", alice)[1]["members"]
    assert [m["user_id"] for m in members] == [alice]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def _issuer_private_key(stack: LocalStackClient) -> rsa.RSAPrivateKey:
    private = serialization.load_pem_private_key(
        (stack.state_dir / KEY_FILE).read_bytes(), password=None
    )
    assert isinstance(private, rsa.RSAPrivateKey)
    return private


def _issuer_public_pem(stack: LocalStackClient) -> bytes:
    return (
        _issuer_private_key(stack)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _issuer_signed(
    stack: LocalStackClient, claims: dict[str, Any], *, algorithm: str, kid: str
) -> str:
    """`claims` as given, signed with the dev issuer's own key: refused, if at all, for the
    claims, the algorithm or the kid, never for the signature."""
    return jwt.encode(claims, _issuer_private_key(stack), algorithm, headers={"kid": kid})


def _attacks(stack: LocalStackClient) -> dict[str, str | None]:
    """Authorization header values, each a different way to forge or misuse a token."""
    sub = new_user("eve")
    good = stack.token(sub)
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    head, _, signature = good.split(".")
    kid = header["kid"]
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    hs_signing_input = _unsigned(hs_header, claims)
    hs_signature = hmac.new(
        _issuer_public_pem(stack), hs_signing_input.encode(), hashlib.sha256
    ).digest()
    tampered = _b64(json.dumps({**claims, "sub": "alice"}).encode())

    def issuer_signed(claims: dict[str, Any], algorithm: str = "RS256", kid: str = kid) -> str:
        return "Bearer " + _issuer_signed(stack, claims, algorithm=algorithm, kid=kid)

    return {
        "expired": "Bearer " + stack.token(sub, ttl=-120),
        "not yet valid": "Bearer " + stack.token(sub, nbf=int(time.time()) + 600),
        "no exp": issuer_signed({k: v for k, v in claims.items() if k != "exp"}),
        "wrong aud": "Bearer " + stack.token(sub, aud="someone-else"),
        "wrong iss": "Bearer " + stack.token(sub, iss="https://evil.example/"),
        "alg none": "Bearer " + _unsigned({"alg": "none", "typ": "JWT", "kid": kid}, claims) + ".",
        "hs256 with the public key": "Bearer " + hs_signing_input + "." + _b64(hs_signature),
        # The issuer's key and kid, an algorithm other than RS256: only the allowlist refuses.
        "RS384 with the issuer's key": issuer_signed(claims, "RS384"),
        "PS256 with the issuer's key": issuer_signed(claims, "PS256"),
        "unknown kid": issuer_signed(claims, kid="not-" + kid),
        "stranger's key, real kid": "Bearer "
        + jwt.encode(claims, stranger, "RS256", headers=header),
        "tampered payload": "Bearer " + head + "." + tampered + "." + signature,
        "missing header": None,
        "empty bearer": "Bearer ",
        "wrong scheme": "Token " + good,
    }


def test_jwt_attacks_are_all_401_with_one_body(local_stack: LocalStackClient) -> None:
    alice = new_user("alice")
    org = _new_org(local_stack, alice)
    for name, authorization in _attacks(local_stack).items():
        headers = {} if authorization is None else {"Authorization": authorization}
        for method, path in (("POST", "/orgs"), ("GET", f"/orgs/{org}/members")):
            kwargs = {"json": {"name": "x"}} if method == "POST" else {}
            response = local_stack.http.request(
                method, local_stack.url(path), headers=headers, timeout=TIMEOUT, **kwargs
            )
            assert response.status_code == 401, name
            # One body for every reason, and exactly the gateway's, bytes and all.
            assert response.content == UNAUTHORIZED_BODY, (name, response.content)


def test_an_issuer_signed_token_like_the_attacks_is_accepted(
    local_stack: LocalStackClient,
) -> None:
    # The attacks signed with the issuer's key fail for their one defect, not for how they are
    # built: the same construction, with exp, the real kid and RS256, is accepted.
    good = local_stack.token(new_user("eve"))
    claims = jwt.decode(good, options={"verify_signature": False})
    kid = jwt.get_unverified_header(good)["kid"]
    token = _issuer_signed(local_stack, claims, algorithm="RS256", kid=kid)
    status, body = call(
        local_stack,
        "POST",
        "/orgs",
        None,
        json={"name": "Eve's"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status == 201, body
