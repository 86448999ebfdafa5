"""Versioned consent text files: the current revision, language fallback, and what counts as current."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.consent_texts import available, consent_for, current_revision, is_current, load_consent_text


def _texts(tmp_path: Path, *names: str) -> Path:
    """A directory of consent text files."""
    for name in names:
        (tmp_path / f"{name}.md").write_text(
            f"{name}: kept {{retention_days}} days, read by {{reviewers}}.\n"
        )
    return tmp_path


def test_packaged_texts_exist_per_language_and_are_current() -> None:
    """English is the reference; every packaged translation is of the current revision."""
    assert {"en-1", "fr-1", "es-1", "en-2", "fr-2", "es-2"} <= available()
    assert current_revision() == 2 and is_current("fr-2") and not is_current("en-0")
    assert not is_current("en-1") and not is_current("fr-1")  # agreed before conversations: asked again
    assert consent_for("es", 180, "R").text.startswith("Antes de empezar")
    assert consent_for("sw", 180, "R").version == "en-2"  # no Swahili text yet: English


@pytest.mark.parametrize("language", ["en", "fr", "es"])
def test_current_text_says_how_long_the_conversation_is_remembered(language: str) -> None:
    """Revision 2: the memory's lifetime (CONVERSATION_IDLE_MIN) and the commands that erase it."""
    text = consent_for(language, 180, "R", conversation_minutes=45).text
    assert "45" in text and "/new" in text and "/forget" in text
    assert "45" not in consent_for(language, 180, "R").text


def test_a_new_revision_makes_older_agreements_outdated(tmp_path: Path) -> None:
    """With en-2 present, en-1 and fr-1 are outdated; French users see English until fr-2 exists."""
    folder = _texts(tmp_path, "en-1", "fr-1", "en-2")
    assert current_revision(folder) == 2
    assert not is_current("en-1", folder) and not is_current("fr-1", folder) and is_current("en-2", folder)
    assert consent_for("fr", 90, "the team", folder).version == "en-2"
    text = load_consent_text(90, "the team", "en-2", folder)
    assert text.text == "en-2: kept 90 days, read by the team." and len(text.sha256) == 64


def test_unknown_version_is_refused(tmp_path: Path) -> None:
    """Only files that exist can be shown or hashed."""
    with pytest.raises(FileNotFoundError):
        load_consent_text(90, "x", "en-7", _texts(tmp_path, "en-1"))
