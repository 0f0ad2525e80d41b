"""Tests of tagnet/."""
