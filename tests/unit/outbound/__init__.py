"""Tests of the outbound HTTP client and its SSRF guard."""
