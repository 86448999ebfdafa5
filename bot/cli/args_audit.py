"""Arguments of ``meditron-bot audit``: checking the hash-chained audit log."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """audit verify."""
    audit = sub.add_parser("audit", help="check the tamper-evident audit log")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    actions.add_parser(
        "verify",
        help="walk the keyed hash chain up to its signed anchor (DATA_DIR/audit.anchor): exit 0 saying "
        "what was checked, exit 1 naming the first broken row, truncation, or a missing or edited anchor",
    ).set_defaults(handler="audit_cmd:verify")
