"""Arguments of ``meditron-bot export``: the research data set of consenting users."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """export --since DATE --until DATE --format csv|jsonl [--out FILE] [--actor NAME]."""
    export = sub.add_parser(
        "export", help="write the pseudonymised research data set (audited: who, when, rows, sha256)"
    )
    export.add_argument("--since", required=True, help="first day (YYYY-MM-DD, UTC) or ISO date-time")
    export.add_argument(
        "--until", required=True, help="last day, included (YYYY-MM-DD, UTC) or ISO date-time"
    )
    export.add_argument(
        "--format", choices=("csv", "jsonl"), default="csv", dest="fmt", help="csv (default) or jsonl"
    )
    export.add_argument("--out", help="file to write (created with mode 0600); default: standard output")
    export.add_argument("--actor", help="who exports, for the audit log (default: cli:<login name>)")
    export.set_defaults(handler="export_cmd:export")
