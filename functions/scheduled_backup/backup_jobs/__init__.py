"""scheduled_backup: backups of identity-provider configuration to Object-Locked S3."""
