"""Arguments of ``meditron-bot library`` (argparse only: the handler is imported when it runs)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def _language(text: str) -> str:
    """A language code such as ``en`` or ``pt-BR``."""
    if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,4})?", text):
        raise argparse.ArgumentTypeError(f"use a language code such as en or fr, not {text!r}")
    return text.lower()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """library add PATH... [--title] [--language] | list | remove ID."""
    parser = sub.add_parser("library", help="the study's guideline documents that answers are grounded on")
    lsub = parser.add_subparsers(dest="library_command", required=True, metavar="ACTION")
    add = lsub.add_parser("add", help="import Markdown, text, HTML or PDF (with a text layer) files")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    add.add_argument("--title", help="the document's title (one PATH only; default: from the file)")
    add.add_argument("--language", type=_language, default="en", help="the documents' language (default en)")
    add.set_defaults(handler="library_cmd:add")
    lsub.add_parser("list", help="the documents in the library and its version").set_defaults(
        handler="library_cmd:list_library"
    )
    remove = lsub.add_parser("remove", help="remove a document and its passages")
    remove.add_argument("id", type=int, metavar="ID")
    remove.set_defaults(handler="library_cmd:remove")
