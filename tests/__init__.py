"""The test suite (pytest): real Redis, SQLite, PostgreSQL and llama.cpp; only the Bot API is a stand-in."""
