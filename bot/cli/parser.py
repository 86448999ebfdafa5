"""The argument parser; handlers are named, and imported only when their command runs."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

# Commands whose arguments live in their own light module ``bot/cli/args_<name>.py`` (a function
# ``add_parser(sub)`` that sets ``handler="<module>:<function>"``); a missing module is skipped.
PLUGGED_COMMANDS = ("bench", "eval", "audit", "export", "admin", "invite", "library")


def _path_arg(parser: argparse.ArgumentParser) -> None:
    """An optional GGUF path argument."""
    parser.add_argument(
        "path", nargs="?", type=Path, help="GGUF file (default: MODEL_PATH or the default file)"
    )


def _model(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """model pull | verify | info."""
    model = sub.add_parser("model", help="download, verify or describe the model file")
    msub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    msub.add_parser(
        "pull", help="download the default Meditron GGUF (resumable), check its sha256"
    ).set_defaults(handler="model_cmd:pull_model")
    msub.add_parser(
        "pull-whisper", help="download the Whisper model named by WHISPER_MODEL (voice notes)"
    ).set_defaults(handler="model_cmd:pull_whisper")
    verify = msub.add_parser("verify", help="check the model file's sha256")
    _path_arg(verify)
    verify.set_defaults(handler="model_cmd:verify_model")
    info = msub.add_parser("info", help="architecture, quantization, size and sha256 of a GGUF file")
    _path_arg(info)
    info.set_defaults(handler="model_cmd:info_model")


def _ask(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """ask QUESTION."""
    parser = sub.add_parser("ask", help="ask one question from the terminal and print the answer")
    parser.add_argument("question", help="the question, in quotes")
    parser.add_argument("--language", default="en", help="language code for the answer (default en)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the answer")
    parser.set_defaults(handler="ask_cmd:ask")


def _webhook_args(parser: argparse.ArgumentParser) -> None:
    """--webhook-url and --listen (long polling without them)."""
    parser.add_argument(
        "--webhook-url",
        help="receive updates by webhook at this public HTTPS URL (needs WEBHOOK_SECRET); "
        "default: long polling",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8443",
        metavar="HOST:PORT",
        help="where the webhook listener serves (default 127.0.0.1:8443; behind the load balancer)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="meditron-bot",
        description="Telegram bot answering clinical questions with Meditron (research use only).",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("run", "start Redis (if REDIS_URL is unset), the bot and one worker"),
        ("bot", "start only the Telegram side (needs REDIS_URL)"),
        ("worker", "start only a model worker (needs REDIS_URL)"),
        ("transcriber", "start only a voice-note transcriber, Whisper (needs REDIS_URL)"),
    ):
        command = sub.add_parser(name, help=text)
        command.set_defaults(handler=f"{'worker' if name in ('worker', 'transcriber') else 'run'}_cmd:{name}")
        if name == "bot":
            _webhook_args(command)
    _ask(sub)
    _model(sub)
    db = sub.add_parser("db", help="database maintenance")
    dsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dsub.add_parser("upgrade", help="apply all migrations (Alembic upgrade head)").set_defaults(
        handler="db_cmd:upgrade"
    )
    for name in PLUGGED_COMMANDS:
        try:
            module = importlib.import_module(f"bot.cli.args_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bot.cli.args_{name}":
                raise
            continue
        module.add_parser(sub)
    return parser
