"""Shared fixtures: each area's fixtures live in tests/support/ and are loaded here."""

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.databases",
    "tests.support.models",
    "tests.support.telegram_stub",
    "tests.support.stack",
    "tests.support.llama_server",
    "tests.support.voice",
]
