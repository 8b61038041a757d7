"""Strongroom's common layer: settings, errors, crypto, redaction, tenancy, outbound HTTP, audit."""
