"""Test fixtures and the one stand-in (the Bot API server), loaded by tests/conftest.py."""
