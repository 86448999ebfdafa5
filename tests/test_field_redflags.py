"""Danger signs: every rule fires in every language, and ordinary clinical questions do not."""

from __future__ import annotations

import pytest

from bot.redflags import LANGUAGES, check, normalise, rules

RULES = {
    "not_breathing", "unconscious", "convulsions", "heavy_bleeding",
    "chest_pain", "newborn_not_feeding", "poisoning", "suicidal",
}  # fmt: skip

POSITIVES = {
    "en": {
        "not_breathing": "My baby is not breathing, what do I do?",
        "unconscious": "The man is unconscious after a fall",
        "convulsions": "Child with fever having convulsions since 10 minutes",
        "heavy_bleeding": "Woman after delivery with heavy bleeding",
        "chest_pain": "55 year old with crushing chest pain and sweating",
        "newborn_not_feeding": "Newborn 3 days old who cannot suck anymore",
        "poisoning": "A child swallowed kerosene an hour ago",
        "suicidal": "My patient says he wants to kill himself",
    },
    "fr": {
        "not_breathing": "Mon bébé ne respire plus",
        "unconscious": "L'homme est inconscient après une chute",
        "convulsions": "Enfant fébrile avec des convulsions",
        "heavy_bleeding": "Femme avec une hémorragie après l'accouchement",
        "chest_pain": "Homme de 55 ans avec une douleur thoracique",
        "newborn_not_feeding": "Le nouveau-né ne tète plus depuis hier",
        "poisoning": "Un enfant a avalé du pétrole",
        "suicidal": "Elle parle de suicide",
    },
    "es": {
        "not_breathing": "El niño no respira bien",
        "unconscious": "Está inconsciente desde hace una hora",
        "convulsions": "Niña con fiebre y convulsiones",
        "heavy_bleeding": "Mujer con sangrado abundante después del parto",
        "chest_pain": "Hombre con dolor en el pecho y sudor",
        "newborn_not_feeding": "El bebé no quiere mamar desde ayer",
        "poisoning": "Un niño bebió lejía",
        "suicidal": "Dice que quiere quitarse la vida",
    },
    "sw": {
        "not_breathing": "Mtoto hapumui vizuri",
        "unconscious": "Mama amepoteza fahamu",
        "convulsions": "Mtoto ana homa na degedege",
        "heavy_bleeding": "Mama anavuja damu nyingi baada ya kujifungua",
        "chest_pain": "Mzee ana maumivu ya kifua",
        "newborn_not_feeding": "Mtoto mchanga hanyonyi tangu jana",
        "poisoning": "Mtoto amekunywa mafuta ya taa",
        "suicidal": "Anasema anataka kujiua",
    },
    "ar": {
        "not_breathing": "الطفل لا يتنفس",
        "unconscious": "الرجل فاقد الوعي بعد السقوط",
        "convulsions": "طفل مصاب بالحمى وتشنجات",
        "heavy_bleeding": "امرأة بعد الولادة مع نزيف حاد",
        "chest_pain": "رجل عمره ٥٥ سنة لديه ألم في الصدر",
        "newborn_not_feeding": "المولود لا يرضع منذ الأمس",
        "poisoning": "طفل شرب الكيروسين",
        "suicidal": "يقول إنه يريد أن يموت",
    },
}

FALSE_POSITIVES = [
    "What is the normal breathing rate for a 2-year-old?",
    "Deep breathing exercises for anxiety?",
    "How do I fit a nasal cannula?",
    "Food poisoning in adults: when to give ORS?",
    "Cough and fever for 3 days, no chest pain",
    "Is a small nosebleed in a child dangerous?",
    "How should I store blood samples without a fridge?",
    "The baby feeds well but has a rash",
    "Quelle dose de paracétamol pour un enfant de 12 kg ?",
    "Intoxication alimentaire chez l'adulte : que faire ?",
    "Tos y fiebre, sin dolor en el pecho",
    "¿Cómo tratar una intoxicación alimentaria leve?",
    "Mtoto ana kikohozi na homa kidogo",
    "Sumu ya chakula kwa watu wazima",
    "ما هي جرعة الباراسيتامول لطفل وزنه ١٢ كغ؟",
    "التسمم الغذائي عند البالغين",
    "سعال وحمى، لا يوجد ألم في الصدر",
]


def test_every_language_has_every_rule() -> None:
    for language in LANGUAGES:
        assert {rule for rule, _ in rules(language)} == RULES, language


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_danger_sign_is_found(language: str) -> None:
    for rule, text in POSITIVES[language].items():
        flag = check(text)
        assert flag is not None, (language, rule, text)
        assert flag.rule == rule, (language, rule, text, flag)


@pytest.mark.parametrize("text", FALSE_POSITIVES)
def test_ordinary_questions_are_not_flagged(text: str) -> None:
    assert check(text) is None


def test_normalisation_removes_accents_diacritics_and_variants() -> None:
    assert normalise("  Hémorragie   GRAVE ") == "hemorragie grave"
    assert normalise("فَاقِدُ الوَعْيِ") == "فاقد الوعي"
    assert normalise("أريد أن أموت") == "اريد ان اموت"
    assert check("He can’t breathe") is not None  # curly apostrophe from a phone keyboard


INVISIBLE = {
    "zero-width space": "\u200b",
    "zero-width non-joiner": "\u200c",
    "zero-width joiner": "\u200d",
    "soft hyphen": "\u00ad",
    "word joiner": "\u2060",
    "byte order mark": "\ufeff",
    "variation selector": "\ufe0f",
    "combining grapheme joiner": "\u034f",
    "Hangul filler": "\u3164",
    "NUL": "\x00",
    "lone surrogate": "\ud83d",
}


def _hide_in_every_word(text: str, char: str) -> str:
    """``char`` after the first letter of every word of three letters or more (what an attacker does)."""
    return " ".join(word[0] + char + word[1:] if len(word) > 2 else word for word in text.split(" "))


@pytest.mark.parametrize("name", INVISIBLE)
@pytest.mark.parametrize("language", LANGUAGES)
def test_invisible_characters_inside_words_do_not_hide_a_danger_sign(language: str, name: str) -> None:
    for rule, text in POSITIVES[language].items():
        hidden = _hide_in_every_word(text, INVISIBLE[name])
        assert hidden != text
        flag = check(hidden)
        assert flag is not None and flag.rule == rule, (language, rule, name, hidden)


@pytest.mark.parametrize("name", INVISIBLE)
def test_invisible_characters_do_not_make_ordinary_questions_alarming(name: str) -> None:
    for text in FALSE_POSITIVES:
        assert check(_hide_in_every_word(text, INVISIBLE[name])) is None, (name, text)


def test_compatibility_forms_are_read_as_what_they_look_like() -> None:
    assert check("ＣＨＥＳＴ ＰＡＩＮ since an hour") is not None  # full-width letters
    assert normalise("ﻻ يتنفس") == "لا يتنفس"  # Arabic presentation form of lam-alef
    assert normalise("fe\u200bver\u00a0and\u2060 cough") == "fever and cough"
