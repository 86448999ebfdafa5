"""Every bot string is translated in every catalogue, compiled catalogues are current, /lang works."""

from __future__ import annotations

import gettext
import string

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from bot.telegram import texts
from bot.telegram.i18n import LANGUAGES, locale_dir, t

TRANSLATED = [lang for lang in LANGUAGES if lang != "en"]
STRINGS = {
    name: value
    for name, value in vars(texts).items()
    if name.isupper() and isinstance(value, str) and not name.startswith("ALERT_")  # alerts: admins, English
}


def _fields(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


@pytest.mark.parametrize("language", TRANSLATED)
def test_catalogue_has_every_string_with_the_same_placeholders(language: str) -> None:
    path = locale_dir() / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        catalogue = read_po(handle, locale=language)
    missing = [name for name, english in STRINGS.items() if not (catalogue.get(english) or None)]
    missing += [n for n, e in STRINGS.items() if catalogue.get(e) is not None and not catalogue.get(e).string]
    assert not missing, f"{language} catalogue misses {missing}"
    for name, english in STRINGS.items():
        translated = catalogue.get(english).string
        assert isinstance(translated, str)
        assert _fields(translated) == _fields(english), (language, name)


@pytest.mark.parametrize("language", TRANSLATED)
def test_compiled_catalogue_matches_the_po_file(language: str) -> None:
    folder = locale_dir() / language / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as po, (folder / "messages.mo").open("rb") as mo:
        source, compiled = read_po(po, locale=language), read_mo(mo)
    assert {m.id: m.string for m in source if m.id} == {m.id: m.string for m in compiled if m.id}


def test_translation_lookup() -> None:
    assert t(texts.LANG_SET, "fr") == "Langue choisie : français."
    assert t(texts.LANG_SET, "en") == texts.LANG_SET
    assert t(texts.LANG_SET, "de") == texts.LANG_SET  # unsupported: English
    assert t(texts.LANG_SET, "sw-KE") == "Lugha imechaguliwa: Kiswahili."
    assert isinstance(gettext.NullTranslations().gettext("x"), str)
