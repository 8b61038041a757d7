"""Errors of download links. None of them is an API error: each answers a bare 500 (fail closed),
because each means the deployment or a stored record is wrong, not the request."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class DownloadLinkError(StrongroomError):
    """Root of every error of the download-link concern."""


class SigningUnavailable(DownloadLinkError):
    """No signing credentials could be had, or not with a known lifetime long enough for a link."""


class InvalidBackupRecord(DownloadLinkError):
    """A stored backup record does not have the shape the writer promises (or names an object
    outside its org's prefix): nothing is linked to from it."""
