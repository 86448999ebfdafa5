"""Which package may import which: flows know no Telegram types; inference and storage know nothing of bot."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_packages(folder: str) -> dict[Path, set[str]]:
    """Each module below ``folder`` (recursively) with the top-level packages it imports."""
    found: dict[Path, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[path] = {name.split(".")[0] for name in names}
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [("bot/flows", "telegram"), ("inference", "bot"), ("storage", "bot")],
)
def test_a_layer_does_not_import_what_sits_above_it(folder: str, forbidden: str) -> None:
    modules = imported_packages(folder)
    assert modules  # the folder was found and read
    offenders = [path.relative_to(ROOT) for path, packages in modules.items() if forbidden in packages]
    assert not offenders, f"{folder} imports {forbidden}: {offenders}"
