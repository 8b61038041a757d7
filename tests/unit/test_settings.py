"""Settings are read once, validated, and fail naming the variable, never echoing its value."""

from __future__ import annotations

import pytest

from strongroom.settings import Settings, SettingsError

REQUIRED = {
    "STRONGROOM_STAGE": "dev",
    "STRONGROOM_TABLE": "strongroom-local-Table",
    "STRONGROOM_BACKUP_BUCKET": "backups",
    "STRONGROOM_AUDIT_BUCKET": "audit",
    "STRONGROOM_PLATFORM_KEY_ID": "arn:aws:kms:us-east-1:123456789012:key/abc",
    "STRONGROOM_BACKUP_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
    "STRONGROOM_OAUTH_REDIRECT_URI": "https://api.strongroom.example/oauth/callback",
    "STRONGROOM_OAUTH_RETURN_URL": "https://app.strongroom.example/connections",
}


def test_template_environment_is_valid_settings(settings: Settings) -> None:
    assert settings.stage == "dev"
    assert settings.dev_allow_hosts == frozenset()
    assert settings.org_key_alias_prefix == "alias/strongroom-dev/org/"


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_each_missing_setting_fails_naming_it(missing: str) -> None:
    environ = {k: v for k, v in REQUIRED.items() if k != missing}
    with pytest.raises(SettingsError, match=missing):
        Settings.from_environ(environ)


def test_invalid_value_is_named_but_not_echoed() -> None:
    secretish = "not-a-number-9f2c1d"
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ({**REQUIRED, "STRONGROOM_DEK_CACHE_MAX_USES": secretish})
    assert "STRONGROOM_DEK_CACHE_MAX_USES" in str(caught.value)
    assert secretish not in str(caught.value)
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", frozenset()),
        ("127.0.0.1:8443", frozenset({("127.0.0.1", 8443)})),
        (
            "localhost:9000, [::1]:9001 ,127.0.0.2:1",
            frozenset({("localhost", 9000), ("::1", 9001), ("127.0.0.2", 1)}),
        ),
    ],
)
def test_dev_allow_hosts_parses_loopback_entries(value: str, expected: frozenset[object]) -> None:
    settings = Settings.from_environ({**REQUIRED, "STRONGROOM_DEV_ALLOW_HOSTS": value})
    assert settings.dev_allow_hosts == expected


@pytest.mark.parametrize(
    "value",
    [
        "10.0.0.1:80",
        "example.com:443",
        "169.254.169.254:80",
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:http",
        "[fd00::1]:80",
        # Read one way here and another by the outbound client (strongroom.plain_urls).
        "::1:8080",
        "[127.0.0.1]:80",
        "[::1%lo]:80",
        "[::ffff:127.0.0.1]:80",
        "127.0.0.1:\u0668\u0660",
        "evil.example\\@127.0.0.1:80",
    ],
)
def test_dev_allow_hosts_refuses_anything_but_loopback_host_port(value: str) -> None:
    with pytest.raises(SettingsError, match="STRONGROOM_DEV_ALLOW_HOSTS"):
        Settings.from_environ({**REQUIRED, "STRONGROOM_DEV_ALLOW_HOSTS": value})


@pytest.mark.parametrize(
    "value",
    [
        "http://api.strongroom.example/oauth/callback",
        "https://user:pw@api.strongroom.example/oauth/callback",
        "https://api.strongroom.example/oauth/callback#frag",
        "javascript:alert(1)",
        "/oauth/callback",
        "https:///oauth/callback",
        "https://api.strongroom.example/oauth/ callback",
        # A backslash in the authority: urlsplit's host is 127.0.0.1, a browser's and
        # urllib3's evil.example; urlsplit's port is "3000\\evil.example", theirs 3000.
        "http://evil.example\\@127.0.0.1/oauth/callback",
        "https://evil.example\\@api.strongroom.example/oauth/callback",
        "http://localhost:3000\\evil.example/oauth/callback",
        "https://api.strongroom.example\\oauth/callback",
        "https://api.strongroom.example/oauth\\callback",
        "http://127.0.0.1:3000:4000/oauth/callback",
        # 127.0.0.1 to a browser, a name to urlsplit.
        "https://2130706433/oauth/callback",
        "http://[::1%25lo]:3000/dev/oauth/callback",
        "https://api.strongroom.example:99999/oauth/callback",
        "https://api.strongroom.example/oauth/callback/\u00e9",
    ],
)
@pytest.mark.parametrize("name", ["STRONGROOM_OAUTH_REDIRECT_URI", "STRONGROOM_OAUTH_RETURN_URL"])
def test_oauth_urls_must_be_absolute_https_without_credentials(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_environ({**REQUIRED, name: value})


def test_oauth_urls_may_be_plain_http_on_loopback_for_the_local_stack() -> None:
    settings = Settings.from_environ(
        {**REQUIRED, "STRONGROOM_OAUTH_REDIRECT_URI": "http://127.0.0.1:3000/dev/oauth/callback"}
    )
    assert settings.oauth_redirect_uri == "http://127.0.0.1:3000/dev/oauth/callback"


@pytest.mark.parametrize(
    "value",
    [
        "https://api.strongroom.example/oauth/callback",
        "https://API.strongroom.example:8443/oauth/callback?tenant=a%2Fb&x=1",
        "http://localhost:3000/dev/oauth/callback",
        "http://[::1]:3000/dev/oauth/callback",
        "http://127.0.0.2:3000/dev/oauth/callback",
    ],
)
def test_plain_oauth_urls_are_taken_as_given(value: str) -> None:
    settings = Settings.from_environ({**REQUIRED, "STRONGROOM_OAUTH_RETURN_URL": value})
    assert settings.oauth_return_url == value


def test_dev_allow_hosts_are_read_as_the_outbound_client_reads_hosts() -> None:
    settings = Settings.from_environ(
        {**REQUIRED, "STRONGROOM_DEV_ALLOW_HOSTS": "[0:0::1]:9001,LOCALHOST:9002"}
    )
    assert settings.dev_allow_hosts == frozenset({("::1", 9001), ("localhost", 9002)})


def test_template_never_sets_the_dev_allow_list() -> None:
    from strongroom_local.template import TEMPLATE_PATH

    assert "STRONGROOM_DEV_ALLOW_HOSTS" not in TEMPLATE_PATH.read_text(encoding="utf-8")


def test_settings_are_immutable(settings: Settings) -> None:
    with pytest.raises(ValueError, match="frozen"):
        settings.stage = "prod"  # type: ignore[misc]


def test_webhook_secrets_and_billing_products_are_parsed() -> None:
    settings = Settings.from_environ(
        {
            **REQUIRED,
            "STRONGROOM_WEBHOOK_SECRETS": (
                "stripe=arn:aws:secretsmanager:us-east-1:123456789012:secret:s/w/stripe-Ab1,"
                " github=strongroom-dev/webhooks/github"
            ),
            "STRONGROOM_BILLING_PRODUCTS": "stripe:price_1Nx=team, lemonsqueezy:1001=starter,",
        }
    )
    assert settings.webhook_secret_ids == {
        "stripe": "arn:aws:secretsmanager:us-east-1:123456789012:secret:s/w/stripe-Ab1",
        "github": "strongroom-dev/webhooks/github",
    }
    assert settings.billing_products == {"stripe:price_1Nx": "team", "lemonsqueezy:1001": "starter"}
    empty = Settings.from_environ(REQUIRED)
    assert empty.webhook_secret_ids == {}
    assert empty.billing_products == {}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STRONGROOM_WEBHOOK_SECRETS", "stripe"),
        ("STRONGROOM_WEBHOOK_SECRETS", "stripe=a,stripe=b"),
        ("STRONGROOM_WEBHOOK_SECRETS", "Stripe=arn"),
        ("STRONGROOM_BILLING_PRODUCTS", "stripe:price_1=platinum"),
        ("STRONGROOM_BILLING_PRODUCTS", "price_1=team"),
        ("STRONGROOM_BILLING_PRODUCTS", "stripe:price 1=team"),
        ("STRONGROOM_BILLING_PRODUCTS", "stripe:p=team,stripe:p=starter"),
    ],
)
def test_bad_webhook_and_billing_settings_fail_at_start(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_environ({**REQUIRED, name: value})
