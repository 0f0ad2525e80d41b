"""Tests by package: translate/, tagnet/, tools/ (helpers.py: shared test data)."""
