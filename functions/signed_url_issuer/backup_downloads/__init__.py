"""Backups for an org's members: listings, manifests, and expiring download links for admins."""
