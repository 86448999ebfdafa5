"""``meditron-bot``: one command with subcommands; configuration errors exit 2 with one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from bot.cli import ask_cmd, db_cmd, model_cmd, run_cmd
from bot.cli.common import describe_validation_error
from bot.errors import BotError
from inference.errors import InferenceError
from storage.errors import StorageError
from storage.logs import configure_logging

COMMANDS = (run_cmd, ask_cmd, model_cmd, db_cmd)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="meditron-bot",
        description="Telegram bot answering clinical questions with Meditron (research use only).",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        code: int = args.handler(args)
    except ValidationError as exc:
        print(f"meditron-bot: error: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    except (BotError, StorageError, InferenceError) as exc:
        print(f"meditron-bot: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
