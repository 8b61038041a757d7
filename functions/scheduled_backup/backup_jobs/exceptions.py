"""Why a backup stopped. Each error maps to one fixed reason code (`reason_of`), which is all a
backup record, an audit event or a log line ever says: never provider text."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class BackupError(StrongroomError):
    """Root of the errors that stop a backup run."""


class ConnectionGone(BackupError):
    """The connection was deleted while its backup was queued or running."""


class CredentialsUnavailable(BackupError):
    """The token service could not give a usable credential (refused, unusable, outage)."""


class NeedsReauthorization(BackupError):
    """The provider refused the stored grant: an admin must authorize the connection again."""


class ProviderUnauthorized(BackupError):
    """The provider answered 401 or 403 to an API call."""


class ProviderRefused(BackupError):
    """The provider answered another 4xx status to an API call."""


class ProviderUnavailable(BackupError):
    """The provider kept failing (timeouts, 5xx, 429) after bounded retries."""


class ProviderWaitTooLong(ProviderUnavailable):
    """The provider asked for a wait (429, Retry-After) that would end too late for this
    invocation to checkpoint: a run that has made progress checkpoints, any other is retried
    as an outage."""


class ProviderResponseInvalid(BackupError):
    """A response was not what the API documents (not JSON, wrong shape, a next link to
    another origin, too large)."""


class StorageFailed(BackupError):
    """S3 or DynamoDB failed while writing the backup."""


class UploadGone(StorageFailed):
    """S3 has no such multipart upload (NoSuchUpload): it was completed or aborted. The worker
    starts a resumed file again on it (`worker._write_file`); anywhere else it is StorageFailed."""


class VerificationFailed(BackupError):
    """A stored file read back differs from what was written, or is not locked and encrypted
    as required."""


class UnsupportedProvider(BackupError):
    """The connection's provider has no backup reader yet."""


class NotQueued(BackupError):
    """The backup's job could not be queued when it started; nothing was read or written."""


class InternalError(BackupError):
    """The worker failed in a way it does not expect (a defect), on the job's last attempt."""


class WorkerLost(BackupError):
    """Every attempt at the job ended without an answer (the function timed out, ran out of
    memory or crashed) and the queue dead-lettered it."""


_REASONS: dict[type[BackupError], str] = {
    ConnectionGone: "connection_deleted",
    CredentialsUnavailable: "credentials_unavailable",
    NeedsReauthorization: "needs_reauthorization",
    ProviderUnauthorized: "provider_unauthorized",
    ProviderRefused: "provider_refused",
    ProviderUnavailable: "provider_unavailable",
    ProviderResponseInvalid: "provider_response_invalid",
    StorageFailed: "storage_failed",
    VerificationFailed: "verification_failed",
    UnsupportedProvider: "unsupported_provider",
    NotQueued: "not_queued",
    InternalError: "internal_error",
    WorkerLost: "worker_lost",
}

# Worth another attempt through the queue: the cause may pass.
TRANSIENT: tuple[type[BackupError], ...] = (
    CredentialsUnavailable,
    ProviderUnavailable,
    StorageFailed,
)


def reason_of(error: BackupError) -> str:
    """The fixed reason code recorded for `error`."""
    for kind in type(error).__mro__:
        if kind in _REASONS:
            return _REASONS[kind]
    return "internal_error"
