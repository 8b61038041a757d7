"""What the backup function takes and answers: the queue's job and the API's reply.

Schemas are built when first used (`defer_build`): a cold start builds only what it needs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

OrgIdField = Annotated[str, Field(pattern=r"^org_[a-z2-7]{26}$")]
ConnectionIdField = Annotated[str, Field(pattern=r"^conn_[a-z2-7]{26}$")]
BackupIdField = Annotated[str, Field(pattern=r"^bkp_[a-z2-7]{26}$")]


class BackupJob(BaseModel):
    """One SQS message: run (or continue) this backup. Where to continue is on its record.

    `continuation` counts the checkpoints before this message: a backup's record names the one
    message that carries it on (its own `continuation`), so a message that a continuation has
    replaced is skipped, and only the dead-lettering of that one message fails the backup."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    org_id: OrgIdField
    connection_id: ConnectionIdField
    backup_id: BackupIdField
    continuation: int = Field(default=0, ge=0, le=1_000_000)


class BackupStarted(BaseModel):
    """202 of POST .../backups: the backup that runs now (a new one, or the one running)."""

    model_config = ConfigDict(defer_build=True)

    backup_id: str
