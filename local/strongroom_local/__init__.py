"""Strongroom's development tooling: the template reader, the local stack and the CLI."""
