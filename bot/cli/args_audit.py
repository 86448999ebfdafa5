"""Arguments of ``meditron-bot audit``: checking the hash-chained audit log."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """audit verify."""
    audit = sub.add_parser("audit", help="check the tamper-evident audit log")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    actions.add_parser(
        "verify", help="walk the hash chain: exit 0 with the row count, exit 1 naming the first broken row"
    ).set_defaults(handler="audit_cmd:verify")
