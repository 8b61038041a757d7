"""The signer role setting: checked at start, required by this function, never echoed."""

from __future__ import annotations

import boto3
import pytest
from backup_downloads.services import build_services

from strongroom.settings import Settings, SettingsError
from tests.unit.test_settings import REQUIRED


def test_a_malformed_signer_role_is_named_without_its_value() -> None:
    value = "arn:aws:iam::123456789012:user/not-a-role"
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ({**REQUIRED, "STRONGROOM_DOWNLOAD_SIGNER_ROLE_ARN": value})
    assert "STRONGROOM_DOWNLOAD_SIGNER_ROLE_ARN" in str(caught.value)
    assert value not in str(caught.value)


def test_the_function_does_not_start_without_a_signer_role() -> None:
    settings = Settings.from_environ(REQUIRED)
    assert settings.download_signer_role_arn is None
    with pytest.raises(SettingsError, match="STRONGROOM_DOWNLOAD_SIGNER_ROLE_ARN"):
        build_services(settings, boto3.Session(region_name="us-east-1"))
    role = "arn:aws:iam::123456789012:role/strongroom-dev-DownloadSignerRole-AbC123"
    with_role = Settings.from_environ({**REQUIRED, "STRONGROOM_DOWNLOAD_SIGNER_ROLE_ARN": role})
    built = build_services(with_role, boto3.Session(region_name="us-east-1"))
    assert built.settings.download_signer_role_arn == role
