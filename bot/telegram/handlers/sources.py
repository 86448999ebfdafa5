"""/sources: the guideline passages of the user's last answer, each cut to fit one message."""

from __future__ import annotations

from telegram import Update

from bot.flows.sources import LastSources, last_answer_sources
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.delivery import source_name
from bot.telegram.i18n import t
from bot.telegram.identity import pseudonym_of, user_language
from bot.telegram.splitting import TELEGRAM_LIMIT
from storage.queue import Source

MARGIN = 96  # room for the numbering and line breaks (and UTF-16 pairs of the odd emoji)


async def sources(update: Update, context: BotContext) -> None:
    """Reply with the passages (title, section, excerpt), or say there are none."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    language = user_language(update, res)
    async with res.sessionmaker() as session:
        found = await last_answer_sources(session, pseudonym_of(update, res))
    if found is None:
        await message.reply_text(t(texts.SOURCES_NO_ANSWER, language))
    elif not found.passages:
        await message.reply_text(t(texts.SOURCES_NONE, language))
    else:
        await message.reply_text(sources_text(found, language))


def excerpt(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters (with … when cut)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(1, limit - 1)].rsplit(" ", 1)[0]
    return f"{cut}…"


def sources_text(found: LastSources, language: str) -> str:
    """The whole reply: an introduction, then each passage named and quoted, within one message."""
    intro = t(texts.SOURCES_INTRO, language)
    names = []
    for number, (passage_id, passage) in enumerate(found.passages, 1):
        if passage is None:
            names.append((f"[{number}] #{passage_id} {t(texts.SOURCE_REMOVED, language)}", ""))
            continue
        source = Source(id=passage.id, title=passage.title, section=passage.section, page=passage.page)
        names.append((f"[{number}] {source_name(source, language)}", passage.text))
    room = TELEGRAM_LIMIT - MARGIN - len(intro) - sum(len(name) + 4 for name, _ in names)
    each = max(40, room // len(names))
    parts = [f"{name}\n{excerpt(body, each)}" if body else name for name, body in names]
    return "\n\n".join([intro, *parts])
