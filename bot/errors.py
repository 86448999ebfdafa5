"""Errors raised by the bot package; each carries what it is about."""

from __future__ import annotations


class BotError(Exception):
    """Base class of every error the bot package raises on purpose."""


class ConfigurationError(BotError):
    """A setting is missing or wrong; ``setting`` names it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class ForgedCallbackError(BotError):
    """Callback data that this bot never sent; ``data_len`` is its length (the data is not logged)."""

    def __init__(self, data_len: int) -> None:
        super().__init__(f"unrecognised callback data of {data_len} bytes")
        self.data_len = data_len


class AlreadyRunningError(BotError):
    """Another ``meditron-bot run`` holds the data directory's lock; ``pid`` is its process id."""

    def __init__(self, pid: int | None) -> None:
        who = f"(pid {pid}) " if pid else ""
        super().__init__(f"another `meditron-bot run` {who}uses this DATA_DIR; stop it first")
        self.pid = pid


class ChildStartError(BotError):
    """A supervised child process exited or never became ready while starting; ``name`` names it."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"the {name} process did not start ({detail})")
        self.name = name
