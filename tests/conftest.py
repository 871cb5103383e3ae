"""Fixtures for the unit tests: the fake engine and fake Compose live in fake_engine.py."""

from fake_engine import fake_context, fake_engine  # noqa: F401 - fixtures, found by name
