"""Tests of tools/ (detection CLI, REST server)."""
