"""Words of a question or passage: content terms, a crude stem for matching (storage.repositories.
library_terms, which counts them), a token estimate."""

from __future__ import annotations

import math

from storage.repositories.library_terms import WORD, fold, stem, stems

__all__ = ["MAX_TERMS", "STOPWORDS", "estimate_tokens", "fold", "follows_on", "stem", "stems", "terms"]
MAX_TERMS = 24

# Function words and question words of the bot's languages (en, fr, es); they match everywhere.
_STOPWORDS = """
    a about after again all also am an and any are as at be been before being but by can could
    did do does doing done for from get gets give given had has have having he her here hers him
    his how i if in into is it its just let like may me might more most much must my no nor not
    now of off on once one only or other our out over own please same say she should so some such
    tell than that the their them then there these they this those through to too under until up
    us very was we were what when where which while who whom why will with would you your yours
    yes ok okay someone something thing things way use used using need needs know want
    au aux avec ce ces comme dans de des du elle en est et eux il ils je la le les leur lui ma mais
    me mes moi mon ne nos notre nous ou par pas pour qu que qui quoi quel quelle sa se ses son sur
    ta te tes toi ton tu un une vos votre vous y comment quand faut faire dois doit peut
    al con como cual cuando del el ella ellos es esta este hay las lo los mi mis muy para pero por
    qué que se sin su sus tu un una uno y debo debe puedo hacer
    """
STOPWORDS = frozenset(_STOPWORDS.split())


def terms(text: str) -> list[str]:
    """The distinct content words of ``text`` (lower case, no accents), first ones first, at most 24."""
    seen: dict[str, None] = {}
    for word in WORD.findall(fold(text)):
        if len(word) >= 2 and word not in STOPWORDS and not word.isdigit() and "_" not in word:
            seen.setdefault(word, None)
    return list(seen)[:MAX_TERMS]


# What makes a question read as a follow-up (en, fr, es): it opens with a connective ("And if ...",
# "What about ...") or points back with a pronoun ("she", "it", "that"). Folded, lower case.
_OPENER_TEXT = "and but also so then or plus et mais aussi alors sinon puis y pero tambien entonces"
_POINTER_TEXT = """
    she he her him his it its they them their this that these those
    elle il lui ils elles leur ca cela ceci celui celle ella ellos ellas eso esto
    """
_OPENERS, _POINTERS = frozenset(_OPENER_TEXT.split()), frozenset(_POINTER_TEXT.split())
_OPENING_PAIRS = frozenset({"what about", "how about", "what if", "et si", "et pour", "y si", "y para"})


def follows_on(text: str) -> bool:
    """Whether ``text`` reads as a follow-up to an earlier question (a connective first, or a pronoun)."""
    words = WORD.findall(fold(text))
    if not words:
        return False
    return words[0] in _OPENERS or " ".join(words[:2]) in _OPENING_PAIRS or not _POINTERS.isdisjoint(words)


def estimate_tokens(text: str) -> int:
    """Model tokens of ``text``, estimated as one per four characters (Gemma's tokenizer on English)."""
    return max(1, math.ceil(len(text) / 4))
