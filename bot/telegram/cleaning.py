"""Message text made safe to hash, queue and store: lone surrogates and NUL characters removed.

Telegram's JSON can carry a lone UTF-16 surrogate (half of an emoji, cut by a client) and NUL
characters. A surrogate cannot be encoded as UTF-8 (hashes, Redis, the database) and PostgreSQL
refuses NUL in text. Neither carries meaning, so both are removed and the rest of the message is
used; the sender is told what was left out (``notices``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.telegram import texts

_SURROGATE = re.compile("[\ud800-\udfff]")
_NUL = "\x00"


@dataclass(frozen=True)
class CleanText:
    """The usable text and how many characters of each kind were removed from it."""

    text: str
    surrogates: int = 0
    nuls: int = 0

    @property
    def notices(self) -> tuple[str, ...]:
        """The sentences of ``texts`` that tell the sender what was left out (none if nothing)."""
        found = ((self.surrogates, texts.INPUT_BROKEN_CHARACTER), (self.nuls, texts.INPUT_NUL_CHARACTER))
        return tuple(notice for count, notice in found if count)


def clean(text: str) -> CleanText:
    """``text`` without lone surrogates and NUL characters, with what was removed."""
    without_surrogates, surrogates = _SURROGATE.subn("", text)
    nuls = without_surrogates.count(_NUL)
    return CleanText(without_surrogates.replace(_NUL, ""), surrogates, nuls)
