"""Arguments of ``meditron-bot invite`` (argparse only: the handler is imported when it runs)."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d`` or ``2w`` as a timedelta."""
    match = _DURATION.match(text.strip().lower())
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"use a duration such as 12h, 7d or 2w, not {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _uses(text: str) -> int:
    """A number of uses of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """invite create --uses N [--expires 7d]."""
    parser = sub.add_parser("invite", help="invite codes for a bot with restricted access")
    isub = parser.add_subparsers(dest="invite_command", required=True, metavar="ACTION")
    create = isub.add_parser("create", help="make a code, redeemed with /start CODE (shown once)")
    create.add_argument("--uses", type=_uses, default=1, help="how many people may use it (default 1)")
    create.add_argument(
        "--expires", type=duration, help="valid for this long, e.g. 12h, 7d, 2w (default: ever)"
    )
    create.set_defaults(handler="invite_cmd:create")
