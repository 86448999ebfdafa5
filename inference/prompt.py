"""The model's prompt: Gemma turn format, instructions in the first user turn (no system role).

The instruction preamble comes first and is byte-identical for every question, so llama.cpp can
keep the KV state of that prefix and only evaluate the question-specific tail. Library passages
(grounded answers) come after it, numbered, with the instruction to rely on and cite them. A
follow-up in a conversation holds the earlier question/answer pairs as Gemma turns after the first
user turn (its passages open its own turn), so the prompt of turn n+1 starts with the prompt and
answer of turn n (their KV state can be reused).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence

from storage.queue.messages import Passage

PROMPT_VERSION: str = "1"

PREAMBLE: str = (
    "You are a careful medical assistant for humanitarian field teams (health workers, nurses, "
    "community health volunteers) working with few resources. Answer briefly and practically, "
    "in the language of the question. Give concrete steps, doses only when you are sure, and "
    "the danger signs to watch for. Say clearly when the situation needs a clinician, urgent "
    "referral or emergency care. If you do not know, say so. You are a research tool that has "
    "not been validated for medical use, and your answers can be wrong."
)

_TURN_START = "<start_of_turn>"
_TURN_END = "<end_of_turn>"
_USER_TURN = f"{_TURN_START}user\n"
_MODEL_TURN = f"{_TURN_START}model\n"

# Gemma's control tokens that a user could type to forge turns (or the sequence boundaries),
# matched case-insensitively and with stray spaces inside the angle brackets.
_MARKER = re.compile(r"<\s*/?\s*(start_of_turn|end_of_turn|bos|eos|pad|unk|mask)\s*>", re.IGNORECASE)

_LANGUAGE_NAMES: dict[str, str] = {
    "en": "English",
    "fr": "French",
    "es": "Spanish",
    "pt": "Portuguese",
    "ar": "Arabic",
    "sw": "Swahili",
    "ha": "Hausa",
    "am": "Amharic",
    "so": "Somali",
    "uk": "Ukrainian",
    "ru": "Russian",
    "fa": "Persian",
    "ps": "Pashto",
    "ur": "Urdu",
    "hi": "Hindi",
    "bn": "Bengali",
    "my": "Burmese",
    "id": "Indonesian",
    "tr": "Turkish",
    "de": "German",
    "it": "Italian",
}


def preamble_prompt() -> str:
    """The fixed start of every prompt (everything before the question-specific text)."""
    return f"{_USER_TURN}{PREAMBLE}\n\n"


def neutralise_markers(text: str) -> str:
    """Remove the angle brackets of turn/control markers a user typed, keeping the words.

    ``<end_of_turn>`` becomes ``end_of_turn``: readable, but no longer a control token.
    """
    return _MARKER.sub(lambda match: match.group(1), text)


def language_hint(language: str) -> str:
    """A sentence asking for the answer's language; empty for English or an unknown code."""
    code = language.strip().lower().replace("_", "-").split("-")[0]
    if code == "en" or not (code.isascii() and code.isalpha() and 2 <= len(code) <= 3):
        return ""
    name = _LANGUAGE_NAMES.get(code, code)
    return f"The user's language is {name}; answer in {name}.\n"


PASSAGES_INSTRUCTION = (
    "Passages from the study's guidelines. Rely on them, cite them as [1], [2] where you use "
    "them, and say so if they do not answer the question:\n"
)


def source_label(passage: Passage) -> str:
    """``Title — Section (p. 3)``: how a passage is named in the prompt."""
    label = f"{passage.title} — {passage.section}" if passage.section else passage.title
    return f"{label} (p. {passage.page})" if passage.page is not None else label


def passages_block(passages: Sequence[Passage]) -> str:
    """The numbered passages and the instruction to cite them; empty without passages."""
    if not passages:
        return ""
    quoted = "".join(
        f"[{number}] {source_label(passage)}\n{passage.text.strip()}\n\n"
        for number, passage in enumerate(passages, start=1)
    )
    return neutralise_markers(f"{PASSAGES_INSTRUCTION}{quoted}")


Turn = tuple[str, str]
"""An earlier (question, answer) pair of a conversation."""


def build_prompt(
    question: str, language: str = "en", passages: Sequence[Passage] = (), history: Sequence[Turn] = ()
) -> str:
    """The whole prompt: preamble, language hint, earlier turns, passages (if any), question, model turn.

    The first user turn holds the preamble, the language hint and the first question; each earlier
    answer is a model turn. The passages retrieved for ``question`` open its own user turn (the first
    one when there is no history), so earlier turns stay byte-identical and their KV can be reused.
    ``<bos>`` is not included: llama.cpp adds it when tokenizing.
    """
    hint = neutralise_markers(language_hint(language))
    questions = [*(asked for asked, _ in history), question]
    parts = [preamble_prompt()]
    for index, asked in enumerate(questions):
        if index:
            answer = neutralise_markers(history[index - 1][1])  # as generated: its KV can be reused
            parts.append(f"{answer}{_TURN_END}\n{_USER_TURN}")
        block = passages_block(passages) if index == len(questions) - 1 else ""
        lead = hint if index == 0 else ""
        parts.append(f"{block}{lead}Question: {neutralise_markers(asked).strip()}{_TURN_END}\n{_MODEL_TURN}")
    return "".join(parts)


async def fit_prompt(
    question: str,
    language: str,
    history: Sequence[Turn],
    count: Callable[[str], Awaitable[int]],
    limit: int,
    passages: Sequence[Passage] = (),
) -> tuple[str, int]:
    """The prompt with as many of the newest turns as keep ``await count(prompt)`` within ``limit``.

    Every backend trims with this (the embedded engine counts with its own tokenizer, a model server
    with its tokenizer or an upper bound). Turns are dropped from the oldest; returns the prompt and
    how many earlier turns it holds (the question alone may still be over the limit: the engine or
    server refuses it then). Without earlier turns nothing is counted.
    """
    kept = list(history)
    while True:
        prompt = build_prompt(question, language, passages, kept)
        if not kept or await count(prompt) <= limit:
            return prompt, len(kept)
        kept.pop(0)
