"""``meditron-bot``: one command with subcommands; configuration errors exit 2 with one line."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from bot.cli.config_errors import describe_validation_error
from bot.cli.parser import build_parser
from bot.errors import BotError
from bot.process.logs import configure_logging
from bot.process.telemetry.server import ListenError
from inference.errors import InferenceError
from storage.errors import StorageError


def _handler(name: str) -> Callable[..., int]:
    """Import ``module:function`` from bot.cli only when that command runs (fast --help)."""
    module, _, function = name.partition(":")
    handler: Callable[..., int] = getattr(importlib.import_module(f"bot.cli.{module}"), function)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    os.umask(0o077)  # every file and folder this process and its children create: owner only
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return _handler(args.handler)(args)
    except ValidationError as exc:
        print(f"meditron-bot: error: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    except (BotError, StorageError, InferenceError, ListenError) as exc:
        print(f"meditron-bot: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
