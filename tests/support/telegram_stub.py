"""A Telegram Bot API stand-in for tests: a small aiohttp server on 127.0.0.1.

The real python-telegram-bot ``Application`` is pointed at it with
``ApplicationBuilder().token(stub.token).base_url(stub.base_url)``; PTB then calls
``{base_url}{token}/{method}``. The stub answers in Telegram's wire format, records every
call, lets tests inject updates and errors, and validates message text like the real API
(empty / too long / bad HTML or MarkdownV2 markup).

How PTB 22 talks to it: every request is a POST. Without files the body is
``application/x-www-form-urlencoded`` where string values are sent as-is and every other value
(ints, bools, lists, dicts such as ``reply_markup``) is JSON-encoded; with files it is
``multipart/form-data``. JSON bodies are accepted too.

Note: PTB 22.2+ emits a ``PTBDeprecationWarning`` whenever a ``RetryAfter`` exception (or any
other time-period attribute) is built while ``PTB_TIMEDELTA`` is unset. The test suite turns
warnings into errors, so importing this plugin opts the test process into ``PTB_TIMEDELTA=1``
(``RetryAfter.retry_after`` is then a ``datetime.timedelta``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dtm
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pytest_asyncio
from aiohttp import web

if TYPE_CHECKING:
    from telegram.ext import Application, ContextTypes

os.environ.setdefault("PTB_TIMEDELTA", "1")

JSONDict = dict[str, Any]
Params = dict[str, Any]

DEFAULT_TOKEN = "5000000001:AAStubTokenForMeditronFieldBotTests_x"
BOT_USERNAME = "meditron_test_bot"
BOT_FIRST_NAME = "Meditron Test"
MAX_MESSAGE_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
DEFAULT_GROUP_CHAT_ID = -1001234567890

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
CALLBACK_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
MEMBER_STATUSES = frozenset({"creator", "administrator", "member", "restricted", "left", "kicked"})
NON_TEXT_KINDS = frozenset({"photo", "voice", "sticker", "document", "location"})

# Parameters whose form value is a plain string and must never be JSON-decoded.
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "inline_message_id",
        "action",
        "url",
        "description",
        "short_description",
        "language_code",
        "name",
        "title",
        "business_connection_id",
        "message_effect_id",
        "query",
        "emoji",
        "data",
        "secret_token",
        "first_name",
        "last_name",
        "custom_title",
        "photo",
        "document",
        "voice",
        "audio",
        "video",
        "sticker",
        "animation",
    }
)


class ApiError(Exception):
    """An error answer of the Bot API (raised inside method handlers)."""

    def __init__(self, error_code: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def body(self) -> JSONDict:
        body: JSONDict = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit Telegram uses for offsets and limits."""
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------------------------
# Markup parsing (HTML / MarkdownV2) -> plain text + entities, modelled on tdlib's rules.
# --------------------------------------------------------------------------------------------


class MarkupError(Exception):
    """The text could not be parsed; str(exc) is the detail after "can't parse entities: "."""


@dataclass
class _Open:
    kind: str
    start16: int
    byte_offset: int
    extra: JSONDict = field(default_factory=dict)


class _TextBuilder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.parts: list[str] = []
        self.len16 = 0
        self.entities: list[JSONDict] = []

    def add(self, chunk: str) -> None:
        self.parts.append(chunk)
        self.len16 += utf16_len(chunk)

    def byte_offset(self, index: int) -> int:
        return len(self.source[:index].encode("utf-8"))

    def close(self, entity: _Open) -> None:
        length = self.len16 - entity.start16
        if length > 0:
            self.entities.append(
                {"type": entity.kind, "offset": entity.start16, "length": length, **entity.extra}
            )

    def result(self) -> tuple[str, list[JSONDict]]:
        entities = sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.parts), entities


_HTML_TAGS: dict[str, str] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'", "nbsp": "\xa0"}
_HTML_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]+);")
_HTML_START_RE = re.compile(r"<([^\s<>/]*)([^<>]*)>")
_HTML_END_RE = re.compile(r"</([a-zA-Z0-9-]*)\s*>")
_HTML_ATTR_RE = re.compile(r"""([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")


class HtmlParser:
    """Telegram's HTML parse mode: supported tags only, properly nested, entities decoded."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.out = _TextBuilder(text)
        self.stack: list[tuple[str, _Open]] = []

    def parse(self) -> tuple[str, list[JSONDict]]:
        i = 0
        while i < len(self.text):
            char = self.text[i]
            if char == "&":
                i = self._entity(i)
            elif char == "<" and self.text.startswith("</", i):
                i = self._end_tag(i)
            elif char == "<":
                i = self._start_tag(i)
            else:
                self.out.add(char)
                i += 1
        if self.stack:
            raise MarkupError(f'Can\'t find end tag corresponding to start tag "{self.stack[-1][0]}"')
        return self.out.result()

    def _entity(self, i: int) -> int:
        match = _HTML_ENTITY_RE.match(self.text, i)
        if match is None:
            self.out.add("&")  # tdlib keeps an unknown "&" literally
            return i + 1
        name = match.group(1)
        if name.startswith(("#x", "#X")):
            self.out.add(chr(int(name[2:], 16)))
        elif name.startswith("#"):
            self.out.add(chr(int(name[1:])))
        elif name in _HTML_NAMED_ENTITIES:
            self.out.add(_HTML_NAMED_ENTITIES[name])
        else:
            self.out.add("&")
            return i + 1
        return match.end()

    def _start_tag(self, i: int) -> int:
        offset = self.out.byte_offset(i)
        match = _HTML_START_RE.match(self.text, i)
        if match is None:
            raise MarkupError(f"Unclosed start tag at byte offset {offset}")
        name = match.group(1).lower()
        if name not in _HTML_TAGS:
            raise MarkupError(f'Unsupported start tag "{name}" at byte offset {offset}')
        attrs = {
            m.group(1).lower(): m.group(2) or m.group(3) or m.group(4) or ""
            for m in _HTML_ATTR_RE.finditer(match.group(2))
        }
        entity = _Open(_HTML_TAGS[name], self.out.len16, offset, self._extra(name, attrs, offset))
        self._adjust_for_pre(name, attrs, entity)
        self.stack.append((name, entity))
        return match.end()

    def _extra(self, name: str, attrs: dict[str, str], offset: int) -> JSONDict:
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise MarkupError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
        if name == "a":
            return {"url": attrs.get("href", "")}
        if name == "tg-emoji":
            return {"custom_emoji_id": attrs.get("emoji-id", "")}
        return {}

    def _adjust_for_pre(self, name: str, attrs: dict[str, str], entity: _Open) -> None:
        if name == "blockquote" and "expandable" in attrs:
            entity.kind = "expandable_blockquote"
        if name == "code" and self.stack and self.stack[-1][0] == "pre":
            language = attrs.get("class", "")
            if language.startswith("language-"):
                self.stack[-1][1].extra["language"] = language.removeprefix("language-")

    def _end_tag(self, i: int) -> int:
        offset = self.out.byte_offset(i)
        match = _HTML_END_RE.match(self.text, i)
        if match is None:
            raise MarkupError(f"Unclosed end tag at byte offset {offset}")
        name = match.group(1).lower()
        if not self.stack:
            raise MarkupError(f'Unexpected end tag "{name}" at byte offset {offset}')
        expected, entity = self.stack.pop()
        if name != expected:
            raise MarkupError(
                f'Unmatched end tag at byte offset {offset}, expected "</{expected}>", found "</{name}>"'
            )
        if entity.kind == "text_link" and not entity.extra.get("url"):
            return match.end()
        if name == "code" and self.stack and self.stack[-1][0] == "pre":
            return match.end()  # <pre><code class="language-x"> is a single pre entity
        self.out.close(entity)
        return match.end()


MARKDOWN_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MD_KIND_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


class MarkdownV2Parser:
    """Telegram's MarkdownV2: reserved characters must be escaped outside code/pre/URLs."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.out = _TextBuilder(text)
        self.stack: list[_Open] = []
        self.quote: _Open | None = None
        self.handlers: dict[str, Callable[[int], int]] = {
            "\\": self._escape,
            "*": self._bold,
            "_": self._underscore,
            "~": self._strike,
            "|": self._spoiler,
            "`": self._code,
            "[": self._link_open,
            "!": self._exclamation,
            "]": self._link_close,
            ">": self._quote,
        }

    def parse(self) -> tuple[str, list[JSONDict]]:
        i = 0
        while i < len(self.text):
            char = self.text[i]
            handler = self.handlers.get(char)
            if handler is not None:
                i = handler(i)
                continue
            if char in MARKDOWN_V2_RESERVED:
                self._reserved(char)
            if char == "\n":
                self._end_of_line(i)
            self.out.add(char)
            i += 1
        if self.stack:
            opened = self.stack[-1]
            raise MarkupError(
                f"Can't find end of {_MD_KIND_NAMES[opened.kind]} entity at byte offset {opened.byte_offset}"
            )
        if self.quote is not None:
            self.out.close(self.quote)
        return self.out.result()

    @staticmethod
    def _reserved(char: str) -> None:
        raise MarkupError(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")

    def _escape(self, i: int) -> int:
        nxt = self.text[i + 1] if i + 1 < len(self.text) else ""
        if nxt and 0 < ord(nxt) <= 126:
            self.out.add(nxt)
            return i + 2
        self.out.add("\\")
        return i + 1

    def _toggle(self, kind: str, i: int, width: int) -> int:
        if self.stack and self.stack[-1].kind == kind:
            self.out.close(self.stack.pop())
        elif any(entity.kind == kind for entity in self.stack):
            raise MarkupError(
                f"Can't find end of {_MD_KIND_NAMES[kind]} entity at byte offset {self.out.byte_offset(i)}"
            )
        else:
            self.stack.append(_Open(kind, self.out.len16, self.out.byte_offset(i)))
        return i + width

    def _bold(self, i: int) -> int:
        return self._toggle("bold", i, 1)

    def _strike(self, i: int) -> int:
        return self._toggle("strikethrough", i, 1)

    def _underscore(self, i: int) -> int:
        if self.text.startswith("__", i):
            return self._toggle("underline", i, 2)
        return self._toggle("italic", i, 1)

    def _spoiler(self, i: int) -> int:
        if not self.text.startswith("||", i):
            self._reserved("|")
        return self._toggle("spoiler", i, 2)

    def _scan_until(self, start: int, terminator: str, what: str, offset: int) -> tuple[str, int]:
        """Read raw text up to an unescaped terminator; only escapes are processed."""
        chunk: list[str] = []
        i = start
        while i < len(self.text):
            if self.text.startswith(terminator, i):
                return "".join(chunk), i + len(terminator)
            if self.text[i] == "\\" and i + 1 < len(self.text) and ord(self.text[i + 1]) <= 126:
                i += 1
            chunk.append(self.text[i])
            i += 1
        raise MarkupError(f"Can't find end of {what} entity at byte offset {offset}")

    def _code(self, i: int) -> int:
        offset = self.out.byte_offset(i)
        if self.text.startswith("```", i):
            body, end = self._scan_until(i + 3, "```", "Pre", offset)
            language, newline, rest = body.partition("\n")
            extra: JSONDict = {}
            if newline and language and not any(c.isspace() for c in language):
                body = rest
                extra = {"language": language}
            entity = _Open("pre", self.out.len16, offset, extra)
        else:
            body, end = self._scan_until(i + 1, "`", "Code", offset)
            entity = _Open("code", self.out.len16, offset)
        self.out.add(body)
        self.out.close(entity)
        return end

    def _link_open(self, i: int) -> int:
        self.stack.append(_Open("text_link", self.out.len16, self.out.byte_offset(i)))
        return i + 1

    def _exclamation(self, i: int) -> int:
        if not self.text.startswith("![", i):
            self._reserved("!")
        self.stack.append(_Open("custom_emoji", self.out.len16, self.out.byte_offset(i)))
        return i + 2

    def _link_close(self, i: int) -> int:
        if not self.stack or self.stack[-1].kind not in {"text_link", "custom_emoji"}:
            self._reserved("]")
        entity = self.stack.pop()
        if not self.text.startswith("(", i + 1):
            raise MarkupError(
                f"Can't find end of {_MD_KIND_NAMES[entity.kind]} entity at byte offset {entity.byte_offset}"
            )
        url, end = self._scan_until(i + 2, ")", "URL", self.out.byte_offset(i + 1))
        if entity.kind == "custom_emoji":
            entity.extra["custom_emoji_id"] = url.rpartition("id=")[2]
        else:
            entity.extra["url"] = url
        self.out.close(entity)
        return end

    def _quote(self, i: int) -> int:
        if i != 0 and self.text[i - 1] != "\n":
            self._reserved(">")
        if self.quote is None:
            self.quote = _Open("blockquote", self.out.len16, self.out.byte_offset(i))
        return i + 1

    def _end_of_line(self, i: int) -> None:
        if self.quote is not None and not self.text.startswith(">", i + 1):
            self.out.close(self.quote)
            self.quote = None


def parse_text(text: str, parse_mode: str | None) -> tuple[str, list[JSONDict]]:
    """Return (plain text, entities) as Telegram would, or raise ApiError(400)."""
    parsers: dict[str, Callable[[str], HtmlParser | MarkdownV2Parser]] = {
        "html": HtmlParser,
        "markdownv2": MarkdownV2Parser,
    }
    factory = parsers.get((parse_mode or "").lower())
    if factory is None:
        if parse_mode and parse_mode.lower() != "markdown":
            raise bad_request(f"unsupported parse_mode {parse_mode!r}")
        return text, []
    try:
        return factory(text).parse()
    except MarkupError as exc:
        raise bad_request(f"can't parse entities: {exc}") from None


# --------------------------------------------------------------------------------------------
# The stub server
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request the bot made. ``at`` is ``time.monotonic()`` when it was answered."""

    method: str
    params: Params
    response: JSONDict
    at: float
    status: int = 200

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result")


@dataclass
class _Failure:
    status: int
    body: JSONDict | None
    times: int
    drop: bool = False


Handler = Callable[[Params], Awaitable[Any]]


def _decode_value(key: str, value: Any) -> Any:
    if isinstance(value, web.FileField):
        return {
            "filename": value.filename,
            "content_type": value.content_type,
            "size": len(value.file.read()),
        }
    if not isinstance(value, str) or key in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _as_int(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    return int(value)


class TelegramStub:
    """Speaks the Bot API on ``http://127.0.0.1:<port>/bot<token>/<method>``."""

    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.calls: list[Call] = []
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._calls_changed = asyncio.Condition()
        self._update_waiters: set[asyncio.Future[None]] = set()
        self._pollers_changed = asyncio.Condition()
        self._closing = False
        self._updates: list[JSONDict] = []
        self.pushed_at: dict[int, float] = {}  # update_id -> when pushed (monotonic)
        self.confirmed_at: dict[int, float] = {}  # update_id -> when the bot confirmed it (next offset)
        self._next_update_id = 1
        self._next_callback_id = 1
        self._message_ids: dict[int, int] = {}
        self._messages: dict[tuple[int, int], JSONDict] = {}
        self._chats: dict[int, JSONDict] = {}
        self._users: dict[int, JSONDict] = {}
        self._blocked_by: set[int] = set()
        self._callbacks: dict[str, bool] = {}
        self._member_status: dict[tuple[int, int], str] = {}
        self._commands: dict[str, list[JSONDict]] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._handlers: dict[str, Handler] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "sendmessage": self._send_message,
            "sendchataction": self._send_chat_action,
            "answercallbackquery": self._answer_callback_query,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._delete_message,
            "getchatmember": self._get_chat_member,
            "getchat": self._get_chat,
            "close": self._true,
            "logout": self._true,
        }

    # ---------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("TelegramStub is not started")
        return f"http://127.0.0.1:{self._port}/bot"

    @property
    def bot_user(self) -> JSONDict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": BOT_FIRST_NAME,
            "username": BOT_USERNAME,
        }

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # handler_cancellation: a long poll whose client went away is cancelled at once.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self._closing = True
        self._wake_pollers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---------------------------------------------------------------- configuration

    def set_chat_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        if status not in MEMBER_STATUSES:
            raise ValueError(f"unknown chat member status {status!r}")
        self._member_status[(chat_id, user_id)] = status

    def add_chat(
        self,
        chat_id: int,
        *,
        chat_type: str = "private",
        title: str | None = None,
        first_name: str = "Ada",
    ) -> JSONDict:
        """Make a chat known, so the bot may send to it without a pushed update first."""
        return self._register_chat(chat_id, chat_type, title, first_name)

    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int | None = 1,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an API error.

        ``retry_after`` is sent as ``parameters.retry_after`` for 429 errors only (as Telegram
        does); the default description for 429 is "Too Many Requests: retry after N".
        """
        parameters = None
        if error_code == 429 and retry_after is not None:
            parameters = {"retry_after": retry_after}
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after}"
                if error_code == 429
                else f"Error {error_code}"
            )
        body = ApiError(error_code, description, parameters).body()
        self._failures.setdefault(method.lower(), []).append(
            _Failure(status=error_code, body=body, times=times)
        )

    def fail_network(
        self, method: str, times: int = 1, *, mode: Literal["bad_gateway", "drop"] = "bad_gateway"
    ) -> None:
        """Make the next calls of ``method`` fail at the transport level (PTB: NetworkError).

        ``bad_gateway`` answers a 502 HTML page like Telegram's nginx; ``drop`` closes the
        connection without any answer.
        """
        self._failures.setdefault(method.lower(), []).append(
            _Failure(status=502, body=None, times=times, drop=mode == "drop")
        )

    # ---------------------------------------------------------------- inspection

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def sent_messages(self, chat_id: int | None = None) -> list[JSONDict]:
        """Results of successful sendMessage calls, oldest first (as returned, before edits)."""
        return [
            call.result
            for call in self.calls_of("sendMessage")
            if call.ok and (chat_id is None or call.result["chat"]["id"] == chat_id)
        ]

    def message(self, chat_id: int, message_id: int) -> JSONDict | None:
        """The current state of a message (after edits), or None if unknown/deleted."""
        return self._messages.get((chat_id, message_id))

    def commands(self, *, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        return self._commands.get(self._commands_key(scope, language_code), [])

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        *,
        count: int = 1,
        timeout: float = 10.0,
        since: int = 0,
    ) -> list[Call]:
        """Wait until at least ``count`` calls of ``method`` matching ``predicate`` exist.

        Counts calls recorded since index ``since`` of ``calls`` (default: all calls) and
        returns all matching calls. Raises AssertionError with a summary on timeout.
        """

        def matching() -> list[Call]:
            return [
                call
                for call in self.calls[since:]
                if call.method.lower() == method.lower() and (predicate is None or predicate(call))
            ]

        async with self._calls_changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._calls_changed.wait_for(lambda: len(matching()) >= count)
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {count} matching {method} call(s); "
                    f"got {len(matching())}. Recorded calls:\n{self.summary()}"
                ) from None
        return matching()

    @property
    def polling(self) -> bool:
        """True while a getUpdates long poll is parked waiting for updates."""
        return any(not waiter.done() for waiter in self._update_waiters)

    async def wait_until_polling(self, timeout: float = 10.0) -> None:
        """Wait until a getUpdates long poll is parked (the next push will wake it)."""
        async with self._pollers_changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._pollers_changed.wait_for(lambda: self.polling)
            except TimeoutError:
                raise AssertionError(
                    f"no getUpdates long poll within {timeout}s. Recorded calls:\n{self.summary()}"
                ) from None

    def summary(self, limit: int = 50) -> str:
        lines = []
        for call in self.calls[-limit:]:
            shown = {k: v for k, v in call.params.items() if k != "reply_markup"}
            outcome = "ok" if call.ok else f"{call.status} {call.response.get('description')}"
            lines.append(f"  {call.method} {json.dumps(shown, default=str)[:200]} -> {outcome}")
        return "\n".join(lines) or "  (none)"

    # ---------------------------------------------------------------- update injection

    def push_update(self, kind: str, payload: JSONDict) -> JSONDict:
        """Queue a raw update ``{"update_id": n, kind: payload}`` and wake long polls."""
        update = {"update_id": self._next_update_id, kind: payload}
        self.pushed_at[self._next_update_id] = time.monotonic()
        self._next_update_id += 1
        self._updates.append(update)
        self._wake_pollers()
        return update

    def push_message(
        self,
        text: str,
        *,
        user_id: int = 1001,
        chat_id: int | None = None,
        chat_type: str = "private",
        first_name: str = "Ada",
        language_code: str | None = "en",
        reply_to_message_id: int | None = None,
        entities: list[JSONDict] | None = None,
        message_id: int | None = None,
        from_bot: bool = False,
        title: str | None = None,
        username: str | None = None,
    ) -> JSONDict:
        message = self._incoming_message(
            user_id=user_id,
            chat_id=chat_id,
            chat_type=chat_type,
            first_name=first_name,
            language_code=language_code,
            message_id=message_id,
            from_bot=from_bot,
            title=title,
            username=username,
        )
        message["text"] = text
        if entities is None and text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            entities = [{"type": "bot_command", "offset": 0, "length": utf16_len(command)}]
        if entities:
            message["entities"] = entities
        self._attach_reply(message, reply_to_message_id)
        return self._queue_message("message", message)

    def push_command(self, command: str, args: str = "", *, mention_bot: bool = False, **kw: Any) -> JSONDict:
        text = "/" + command.removeprefix("/")
        if mention_bot:
            text += f"@{BOT_USERNAME}"
        if args:
            text += f" {args}"
        return self.push_message(text, **kw)

    def push_callback(
        self,
        data: str,
        *,
        user_id: int = 1001,
        chat_id: int | None = None,
        message_id: int | None = None,
        first_name: str = "Ada",
        language_code: str | None = "en",
    ) -> JSONDict:
        """Queue a callback_query pressed on a bot message.

        Without ``message_id`` the newest bot message in the chat whose inline keyboard has
        ``data`` is used (else the newest bot message, else a synthetic one).
        """
        chat_id = user_id if chat_id is None else chat_id
        chat = self._chats.get(chat_id) or self._register_chat(chat_id, "private", None, first_name)
        query_id = str(4_200_000_000_000_000 + self._next_callback_id)
        self._next_callback_id += 1
        self._callbacks[query_id] = False
        query = {
            "id": query_id,
            "from": self._register_user(user_id, first_name, language_code, False, None),
            "message": copy.deepcopy(self._callback_message(chat, message_id, data)),
            "chat_instance": f"{abs(chat_id) * 7919}",
            "data": data,
        }
        return self.push_update("callback_query", query)

    def push_inline_callback(
        self,
        data: str,
        *,
        user_id: int = 1001,
        inline_message_id: str = "AAAAAInlineMessage",
        first_name: str = "Ada",
        language_code: str | None = "en",
    ) -> JSONDict:
        """Queue a callback_query pressed on an inline-mode message: ``inline_message_id``, no ``message``."""
        query_id = str(4_200_000_000_000_000 + self._next_callback_id)
        self._next_callback_id += 1
        self._callbacks[query_id] = False
        query = {
            "id": query_id,
            "from": self._register_user(user_id, first_name, language_code, False, None),
            "inline_message_id": inline_message_id,
            "chat_instance": f"{user_id * 7919}",
            "data": data,
        }
        return self.push_update("callback_query", query)

    def push_edited_message(
        self,
        message_id: int,
        text: str,
        *,
        user_id: int = 1001,
        chat_id: int | None = None,
        chat_type: str = "private",
        first_name: str = "Ada",
        language_code: str | None = "en",
    ) -> JSONDict:
        message = self._incoming_message(
            user_id=user_id,
            chat_id=chat_id,
            chat_type=chat_type,
            first_name=first_name,
            language_code=language_code,
            message_id=message_id,
        )
        original = self._messages.get((message["chat"]["id"], message_id), {})
        message["date"] = original.get("date", message["date"])
        message["edit_date"] = int(time.time())
        message["text"] = text
        return self._queue_message("edited_message", message)

    def push_non_text(self, kind: str, *, caption: str | None = None, **kw: Any) -> JSONDict:
        """A message with a photo/voice/sticker/document/location instead of text."""
        if kind not in NON_TEXT_KINDS:
            raise ValueError(f"unsupported kind {kind!r}; choose from {sorted(NON_TEXT_KINDS)}")
        message = self._incoming_message(**kw)
        uid = f"{kind}-{message['chat']['id']}-{message['message_id']}"
        message[kind] = _non_text_payload(kind, uid)
        if caption is not None:
            message["caption"] = caption
        return self._queue_message("message", message)

    def push_channel_post(
        self, text: str, *, chat_id: int = -1009876543210, title: str = "Field Channel"
    ) -> JSONDict:
        chat = self._register_chat(chat_id, "channel", title, "")
        message = {
            "message_id": self._new_message_id(chat_id, None),
            "date": int(time.time()),
            "chat": chat,
            "sender_chat": chat,
            "text": text,
        }
        return self._queue_message("channel_post", message)

    def push_my_chat_member(
        self,
        new_status: str,
        *,
        old_status: str = "member",
        user_id: int = 1001,
        chat_id: int | None = None,
        chat_type: str = "private",
        first_name: str = "Ada",
        title: str | None = None,
    ) -> JSONDict:
        """The bot's own membership changed; "kicked" in a private chat = user blocked the bot."""
        chat_id = self._default_chat_id(user_id, chat_id, chat_type)
        chat = self._register_chat(chat_id, chat_type, title, first_name)
        if chat_type == "private":
            if new_status == "kicked":
                self._blocked_by.add(chat_id)
            else:
                self._blocked_by.discard(chat_id)
        payload = {
            "chat": chat,
            "from": self._register_user(user_id, first_name, None, False, None),
            "date": int(time.time()),
            "old_chat_member": _member_dict(old_status, self.bot_user),
            "new_chat_member": _member_dict(new_status, self.bot_user),
        }
        return self.push_update("my_chat_member", payload)

    # ---------------------------------------------------------------- update helpers

    def _wake_pollers(self) -> None:
        for waiter in self._update_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._update_waiters.clear()

    @staticmethod
    def _default_chat_id(user_id: int, chat_id: int | None, chat_type: str) -> int:
        if chat_id is not None:
            return chat_id
        return user_id if chat_type == "private" else DEFAULT_GROUP_CHAT_ID

    def _register_user(
        self,
        user_id: int,
        first_name: str,
        language_code: str | None,
        is_bot: bool,
        username: str | None,
    ) -> JSONDict:
        user: JSONDict = {"id": user_id, "is_bot": is_bot, "first_name": first_name}
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        self._users[user_id] = user
        return user

    def _register_chat(self, chat_id: int, chat_type: str, title: str | None, first_name: str) -> JSONDict:
        if chat_type != "private" and chat_id > 0:
            raise ValueError(f"{chat_type} chats have negative ids, got {chat_id}")
        chat: JSONDict = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = first_name
        else:
            chat["title"] = title or "Field Team"
        self._chats[chat_id] = chat
        return chat

    def _new_message_id(self, chat_id: int, explicit: int | None) -> int:
        current = self._message_ids.get(chat_id, 0)
        message_id = current + 1 if explicit is None else explicit
        self._message_ids[chat_id] = max(current, message_id)
        return message_id

    def _incoming_message(
        self,
        *,
        user_id: int = 1001,
        chat_id: int | None = None,
        chat_type: str = "private",
        first_name: str = "Ada",
        language_code: str | None = "en",
        message_id: int | None = None,
        from_bot: bool = False,
        title: str | None = None,
        username: str | None = None,
    ) -> JSONDict:
        chat_id = self._default_chat_id(user_id, chat_id, chat_type)
        chat = self._register_chat(chat_id, chat_type, title, first_name)
        sender = self._register_user(user_id, first_name, language_code, from_bot, username)
        return {
            "message_id": self._new_message_id(chat_id, message_id),
            "date": int(time.time()),
            "chat": chat,
            "from": sender,
        }

    def _attach_reply(self, message: JSONDict, reply_to_message_id: int | None) -> None:
        if reply_to_message_id is None:
            return
        key = (message["chat"]["id"], reply_to_message_id)
        original = self._messages.get(key)
        if original is None:
            original = {
                "message_id": reply_to_message_id,
                "date": int(time.time()),
                "chat": message["chat"],
            }
        message["reply_to_message"] = _without_reply(original)

    def _queue_message(self, kind: str, message: JSONDict) -> JSONDict:
        self._messages[(message["chat"]["id"], message["message_id"])] = message
        return self.push_update(kind, copy.deepcopy(message))

    def _callback_message(self, chat: JSONDict, message_id: int | None, data: str) -> JSONDict:
        if message_id is not None:
            found = self._messages.get((chat["id"], message_id))
            if found is not None:
                return found
            return {"message_id": message_id, "date": int(time.time()), "chat": chat, "from": self.bot_user}
        own = [
            msg
            for (chat_id, _), msg in self._messages.items()
            if chat_id == chat["id"] and msg.get("from", {}).get("id") == self.bot_id
        ]
        with_button = [msg for msg in own if data in _callback_datas(msg)]
        if with_button or own:
            return (with_button or own)[-1]
        return {
            "message_id": self._new_message_id(chat["id"], None),
            "date": int(time.time()),
            "chat": chat,
            "from": self.bot_user,
            "text": "(synthetic)",
        }

    # ---------------------------------------------------------------- HTTP plumbing

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        token, _, method = request.path.removeprefix("/bot").partition("/")
        if not request.path.startswith("/bot") or not method:
            return web.json_response(ApiError(404, "Not Found").body(), status=404)
        params = await self._read_params(request)
        if token != self.token:
            error = ApiError(401, "Unauthorized")
            await self._record(method, params, error.body(), 401)
            return web.json_response(error.body(), status=401)
        failure = self._take_failure(method)
        if failure is not None:
            return await self._fail(request, method, params, failure)
        status, body = await self._invoke(method, params)
        await self._record(method, params, body, status)
        return web.json_response(body, status=status)

    async def _invoke(self, method: str, params: Params) -> tuple[int, JSONDict]:
        handler = self._handlers.get(method.lower())
        try:
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            result = await handler(params)
        except ApiError as exc:
            return exc.error_code, exc.body()
        except KeyError as exc:
            return 400, bad_request(f"{exc.args[0]} is empty").body()
        except (TypeError, ValueError) as exc:
            return 400, bad_request(f"invalid parameters ({exc!r})").body()
        return 200, {"ok": True, "result": result}

    @staticmethod
    async def _read_params(request: web.Request) -> Params:
        raw: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                raw.update(body)
        elif request.can_read_body:
            raw.update(await request.post())
        return {key: _decode_value(key, value) for key, value in raw.items()}

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method.lower())
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    async def _fail(
        self, request: web.Request, method: str, params: Params, failure: _Failure
    ) -> web.StreamResponse:
        if failure.body is not None:
            await self._record(method, params, failure.body, failure.status)
            return web.json_response(failure.body, status=failure.status)
        description = "connection dropped" if failure.drop else "Bad Gateway"
        body = {"ok": False, "error_code": failure.status, "description": description}
        await self._record(method, params, body, failure.status)
        if failure.drop and request.transport is not None:
            request.transport.close()
        return web.Response(
            status=502,
            text="<html><head><title>502 Bad Gateway</title></head></html>",
            content_type="text/html",
        )

    async def _record(self, method: str, params: Params, body: JSONDict, status: int) -> None:
        async with self._calls_changed:
            self.calls.append(Call(method, params, body, time.monotonic(), status))
            self._calls_changed.notify_all()

    # ---------------------------------------------------------------- methods: bot & updates

    async def _true(self, params: Params) -> bool:
        return True

    async def _get_me(self, params: Params) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _confirm(self, offset: int) -> None:
        before = {u["update_id"] for u in self._updates}
        if offset < 0:
            self._updates = self._updates[offset:]
        elif offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        now = time.monotonic()
        for update_id in before - {u["update_id"] for u in self._updates}:
            self.confirmed_at[update_id] = now

    async def _get_updates(self, params: Params) -> list[JSONDict]:
        offset = _as_int(params.get("offset"), 0)
        limit = min(max(_as_int(params.get("limit"), 100), 1), 100)
        timeout = float(params.get("timeout") or 0)
        self._confirm(offset)
        if not self._updates and timeout > 0 and not self._closing:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._update_waiters.add(waiter)
            async with self._pollers_changed:
                self._pollers_changed.notify_all()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, timeout)
            finally:
                self._update_waiters.discard(waiter)
        allowed = params.get("allowed_updates")
        updates = self._updates
        if allowed:
            updates = [u for u in updates if set(u) - {"update_id"} <= set(allowed)]
        return copy.deepcopy(updates[:limit])

    async def _delete_webhook(self, params: Params) -> bool:
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        return True

    async def _get_webhook_info(self, params: Params) -> JSONDict:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": 0}

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> str:
        return json.dumps([scope or {"type": "default"}, language_code or ""], sort_keys=True)

    async def _set_my_commands(self, params: Params) -> bool:
        commands = params["commands"]
        for command in commands:
            name = command.get("command", "")
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(command.get("description", "")) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        self._commands[key] = commands
        return True

    async def _get_my_commands(self, params: Params) -> list[JSONDict]:
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        return self._commands.get(key, [])

    async def _delete_my_commands(self, params: Params) -> bool:
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        self._commands.pop(key, None)
        return True

    # ---------------------------------------------------------------- methods: messages

    def _chat_for(self, chat_id: Any) -> JSONDict:
        if isinstance(chat_id, str):
            found = [c for c in self._chats.values() if c.get("username") == chat_id[1:]]
            if not found:
                raise bad_request("chat not found")
            return found[0]
        chat = self._chats.get(int(chat_id))
        if chat is None:
            raise bad_request("chat not found")
        return chat

    def _writable_chat(self, chat_id: Any) -> JSONDict:
        chat = self._chat_for(chat_id)
        if chat["id"] in self._blocked_by:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    @staticmethod
    def _render(params: Params) -> tuple[str, list[JSONDict]]:
        raw = params.get("text")
        if not isinstance(raw, str):
            raw = "" if raw is None else str(raw)
        text, entities = parse_text(raw, params.get("parse_mode"))
        explicit = params.get("entities")
        if explicit and not params.get("parse_mode"):
            entities = list(explicit)
        if not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > MAX_MESSAGE_LENGTH:
            raise bad_request("message is too long")
        return text, entities

    @staticmethod
    def _inline_markup(markup: Any) -> JSONDict | None:
        if not isinstance(markup, dict) or "inline_keyboard" not in markup:
            return None
        for row in markup["inline_keyboard"]:
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                    raise bad_request("BUTTON_DATA_INVALID")
        return markup

    def _reply_target(self, chat_id: int, params: Params) -> JSONDict | None:
        reply = params.get("reply_parameters") or {}
        message_id = reply.get("message_id", params.get("reply_to_message_id"))
        if message_id is None:
            return None
        target_chat = int(reply.get("chat_id", chat_id))
        found = self._messages.get((target_chat, int(message_id)))
        if found is None and not reply.get(
            "allow_sending_without_reply", params.get("allow_sending_without_reply")
        ):
            raise bad_request("message to be replied not found")
        return None if found is None else _without_reply(found)

    async def _send_message(self, params: Params) -> JSONDict:
        chat = self._writable_chat(params["chat_id"])
        text, entities = self._render(params)
        markup = self._inline_markup(params.get("reply_markup"))
        reply_to = self._reply_target(chat["id"], params)
        message: JSONDict = {
            "message_id": self._new_message_id(chat["id"], None),
            "from": self.bot_user,
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }
        if entities:
            message["entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if markup is not None:
            message["reply_markup"] = markup
        self._messages[(chat["id"], message["message_id"])] = message
        return copy.deepcopy(message)

    async def _send_chat_action(self, params: Params) -> bool:
        self._writable_chat(params["chat_id"])
        if params.get("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    async def _answer_callback_query(self, params: Params) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if self._callbacks.get(query_id, True):
            raise bad_request(CALLBACK_TOO_OLD)
        if len(params.get("text") or "") > MAX_CALLBACK_ANSWER_LENGTH:
            raise bad_request("MESSAGE_TOO_LONG")
        self._callbacks[query_id] = True
        return True

    def _own_message(self, params: Params, missing: str) -> JSONDict:
        if params.get("inline_message_id"):
            raise bad_request("inline messages are not supported by the stub")
        chat = self._chat_for(params["chat_id"])
        message = self._messages.get((chat["id"], int(params["message_id"])))
        if message is None:
            raise bad_request(missing)
        if message.get("from", {}).get("id") != self.bot_id:
            raise bad_request("message can't be edited")
        return message

    async def _edit_message_text(self, params: Params) -> JSONDict:
        message = self._own_message(params, "message to edit not found")
        text, entities = self._render(params)
        markup = self._inline_markup(params.get("reply_markup"))
        unchanged = (
            message.get("text") == text
            and message.get("entities", []) == entities
            and message.get("reply_markup") == markup
        )
        if unchanged:
            raise bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        message["text"] = text
        _set_or_drop(message, "entities", entities or None)
        _set_or_drop(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    async def _edit_message_reply_markup(self, params: Params) -> JSONDict:
        message = self._own_message(params, "message to edit not found")
        markup = self._inline_markup(params.get("reply_markup"))
        if message.get("reply_markup") == markup:
            raise bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        _set_or_drop(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    async def _delete_message(self, params: Params) -> bool:
        chat = self._chat_for(params["chat_id"])
        if self._messages.pop((chat["id"], int(params["message_id"])), None) is None:
            raise bad_request("message to delete not found")
        return True

    # ---------------------------------------------------------------- methods: chats

    async def _get_chat_member(self, params: Params) -> JSONDict:
        chat = self._chat_for(params["chat_id"])
        user_id = int(params["user_id"])
        if user_id == self.bot_id:
            user = self.bot_user
        else:
            user = self._users.get(user_id) or {"id": user_id, "is_bot": False, "first_name": "User"}
        status = self._member_status.get((chat["id"], user_id), "member")
        return _member_dict(status, user)

    async def _get_chat(self, params: Params) -> JSONDict:
        chat = self._chat_for(params["chat_id"])
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }


def _set_or_drop(target: JSONDict, key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value


def _without_reply(message: JSONDict) -> JSONDict:
    return {k: copy.deepcopy(v) for k, v in message.items() if k != "reply_to_message"}


def _callback_datas(message: JSONDict) -> set[str]:
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    return {button["callback_data"] for row in rows for button in row if "callback_data" in button}


def _non_text_payload(kind: str, uid: str) -> Any:
    file_fields = {"file_id": f"AgAC{uid}", "file_unique_id": uid}
    payloads: dict[str, Any] = {
        "photo": [
            {**file_fields, "width": 90, "height": 90, "file_size": 1200},
            {**file_fields, "file_id": f"AgAD{uid}", "width": 800, "height": 800, "file_size": 65000},
        ],
        "voice": {**file_fields, "duration": 3, "mime_type": "audio/ogg", "file_size": 4000},
        "sticker": {
            **file_fields,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "👍",
        },
        "document": {
            **file_fields,
            "file_name": "report.pdf",
            "mime_type": "application/pdf",
            "file_size": 20000,
        },
        "location": {"latitude": -1.2921, "longitude": 36.8219},
    }
    return payloads[kind]


_ADMIN_RIGHTS = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
)
_RESTRICTED_RIGHTS = (
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_send_messages",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_manage_topics",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_edit_tag",
)


def _member_dict(status: str, user: JSONDict) -> JSONDict:
    extra: dict[str, JSONDict] = {
        "creator": {"is_anonymous": False},
        "administrator": {
            "can_be_edited": False,
            "is_anonymous": False,
            **dict.fromkeys(_ADMIN_RIGHTS, True),
        },
        "restricted": {"is_member": True, "until_date": 0, **dict.fromkeys(_RESTRICTED_RIGHTS, False)},
        "kicked": {"until_date": 0},
    }
    return {"status": status, "user": user, **extra.get(status, {})}


# --------------------------------------------------------------------------------------------
# Running a PTB Application against the stub
# --------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_application(
    app: Application[Any, Any, Any, Any, Any, Any],
    *,
    poll_timeout: float = 10.0,
    allowed_updates: list[str] | None = None,
    raise_handler_errors: bool = True,
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """Run ``app`` with long polling the way ``run_polling`` does, without owning the loop.

    Order as in PTB: initialize, post_init, start_polling, start ... updater.stop, stop,
    post_stop, shutdown, post_shutdown. The stub answers long polls as soon as an update is
    pushed, so ``poll_timeout`` only bounds idle polls.

    If ``raise_handler_errors`` and the app has no error handler of its own, exceptions raised
    by handlers (normally only logged by PTB) are re-raised as AssertionError on exit.
    """
    errors: list[BaseException] = []

    async def collect(_update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if context.error is not None:
            errors.append(context.error)

    collecting = raise_handler_errors and not app.error_handlers
    if collecting:
        app.add_error_handler(collect)
    try:
        await app.initialize()
        if app.post_init:
            await app.post_init(app)
        if app.updater is not None:
            await app.updater.start_polling(
                poll_interval=0.0,
                timeout=dtm.timedelta(seconds=poll_timeout),
                allowed_updates=allowed_updates,
            )
        await app.start()
        yield app
    finally:
        await _stop_application(app)
        if collecting:
            app.remove_error_handler(collect)
    if errors:
        raise AssertionError(f"handler raised {errors[0]!r}") from errors[0]


async def _stop_application(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    try:
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
            if app.post_stop:
                await app.post_stop(app)
    finally:
        await app.shutdown()
        if app.post_shutdown:
            await app.post_shutdown(app)
        # After a failed initialize() Application.shutdown() is a no-op and would leak the
        # bot's httpx clients; Bot.shutdown() is a no-op when they are already closed.
        await app.bot.shutdown()


@pytest_asyncio.fixture
async def telegram_stub() -> AsyncIterator[TelegramStub]:
    """A started TelegramStub (function scope); stopped after the test."""
    stub = TelegramStub()
    await stub.start()
    try:
        yield stub
    finally:
        await stub.stop()
