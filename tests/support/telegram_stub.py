"""The Telegram Bot API stand-in for tests: an aiohttp server on 127.0.0.1 speaking the Bot API's wire format.

The bot is pointed at it (``TELEGRAM_API_URL=stub.base_url``, ``TELEGRAM_BOT_TOKEN=stub.token``); PTB posts to
``{base_url}{token}/{method}``. Only the methods the bot calls are served (``TelegramStub._methods``), in
plain text; another method answers 404, a ``parse_mode`` or a chat action other than typing 400, so a bot
that starts using something new fails here first. PTB's form bodies send strings as-is and JSON-encode
every other value; bot.telegram.ingest posts JSON. Importing this plugin sets ``PTB_TIMEDELTA=1`` as
bot.telegram.app does.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
from aiohttp import ClientSession, ClientTimeout, web

os.environ.setdefault("PTB_TIMEDELTA", "1")

JSONDict = dict[str, Any]

DEFAULT_TOKEN = "5000000001:AAStubTokenForMeditronFieldBotTests_x"
BOT_USERNAME = "meditron_test_bot"
DEFAULT_GROUP_CHAT_ID = -1001234567890
MAX_MESSAGE_LENGTH = 4096  # UTF-16 code units
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
FILE_DOWNLOAD = "file"  # the method name a file download is recorded under
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_SET_SECRET: Any = object()  # deliver's default: the secret_token of setWebhook
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
CALLBACK_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
# Form values PTB sends as plain strings: never JSON-decoded (a text "42" stays a string).
STRING_PARAMS = frozenset(
    {"text", "parse_mode", "callback_query_id", "inline_message_id", "action", "file_id"}
)
_RIGHTS = "manage_chat delete_messages manage_video_chats restrict_members promote_members change_info"
_RIGHTS += " invite_users post_stories edit_stories delete_stories"
MEMBER_FIELDS: dict[str, JSONDict] = {  # what PTB's ChatMember classes require besides status and user
    "creator": {"is_anonymous": False},
    "administrator": {"can_be_edited": False, "is_anonymous": False}
    | {f"can_{r}": True for r in _RIGHTS.split()},
    "member": {},
    "left": {},
    "kicked": {"until_date": 0},
}


class ApiError(Exception):
    """An error answer of the Bot API, raised inside a method; ``body`` is the answer."""

    def __init__(self, error_code: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.body: JSONDict = {"ok": False, "error_code": error_code, "description": description}
        if parameters:
            self.body["parameters"] = parameters


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class Call:
    """One request the bot made; ``at`` is ``time.monotonic()`` when it was answered."""

    method: str
    params: JSONDict
    response: JSONDict
    at: float
    status: int = 200

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result")


def says(fragment: str, chat_id: int | None = None) -> Callable[[Call], bool]:
    """A call whose text contains ``fragment`` (in ``chat_id``, when given)."""

    def match(call: Call) -> bool:
        in_chat = chat_id is None or int(call.params.get("chat_id", 0)) == chat_id
        return in_chat and fragment in str(call.params.get("text", ""))

    return match


@dataclass
class Hold:
    """A call the stand-in carries out (Telegram has it: the user sees the message) and records, but
    does not answer until ``release``: the bot waits for the response, as in a slow network.

    With ``before``, the call is held before Telegram has it (a slow uplink): it is carried out only
    if the bot is still waiting when released; a bot that died or gave up meanwhile never sent it."""

    method: str
    matches: Callable[[JSONDict], bool]
    before: bool = False
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Let the held response go (to the bot, or nowhere if it was killed meanwhile)."""
        self.released.set()


class TelegramStub:
    """Speaks the Bot API on ``http://127.0.0.1:<port>/bot<token>/<method>``."""

    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_user = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Meditron Test",
            "username": BOT_USERNAME,
        }
        self.calls: list[Call] = []
        self.pushed_at: dict[int, float] = {}  # update_id -> when pushed (monotonic)
        self.confirmed_at: dict[int, float] = {}  # update_id -> when a getUpdates offset confirmed it
        self.webhook: JSONDict | None = None  # the last setWebhook's url, secret_token, allowed_updates
        self.menus: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (scope, language) -> commands
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._client: ClientSession | None = None  # deliver's
        self._changed = asyncio.Condition()  # a call was recorded, or a long poll parked
        self._pollers: set[asyncio.Future[None]] = set()
        self._closing = False
        self._updates: list[JSONDict] = []
        self._next_update_id = 1
        self._message_ids: dict[int, int] = {}  # chat id -> newest message id
        self._messages: dict[tuple[int, int], JSONDict] = {}
        self._chats: dict[int, JSONDict] = {}
        self._callbacks: dict[str, bool] = {}  # query id -> answered
        self._member_status: dict[tuple[int, int], str] = {}
        self._failures: dict[str, list[JSONDict | None]] = {}  # method -> next answers (None: a 502 page)
        self._holds: list[Hold] = []
        self._files: dict[str, tuple[str, bytes]] = {}  # file id -> (file path, content)
        # getMe on initialize, getUpdates from bot.telegram.ingest, what the handlers and the delivery call.
        methods: list[Callable[[JSONDict], Awaitable[Any]]] = [
            self._get_me, self._get_updates, self._send_message, self._send_chat_action,
            self._answer_callback_query, self._edit_message_text, self._edit_message_reply_markup,
            self._get_chat_member, self._get_file, self._set_webhook, self._delete_webhook,
            self._set_my_commands,
        ]  # fmt: skip
        self._methods = {m.__name__.replace("_", ""): m for m in methods}  # "getme" -> self._get_me

    # -- lifecycle and configuration --------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("TelegramStub is not started")
        return f"http://127.0.0.1:{self._port}/bot"

    @property
    def file_url(self) -> str:
        """The base of file downloads (``TELEGRAM_FILE_URL``): ``{file_url}{token}/{file_path}``."""
        return self.base_url.removesuffix("/bot") + "/file/bot"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # handler_cancellation: a long poll whose client went away is cancelled at once.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self._closing = True
        self._wake_pollers()
        for hold in self._holds:
            hold.release()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._client = self._runner = None

    def add_chat(self, chat_id: int, *, chat_type: str = "private", title: str | None = None) -> JSONDict:
        """Make a chat known, so the bot may send to it without a pushed update first."""
        return self._register_chat(chat_id, chat_type, title)

    def set_chat_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        """What getChatMember answers for ``user_id`` in ``chat_id`` (default "member")."""
        self._member_status[(chat_id, user_id)] = status

    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 429,
        description: str = "",
        retry_after: int = 1,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an API error; a 429 carries
        ``parameters.retry_after`` and says "Too Many Requests: retry after N", as flood control does."""
        flood = error_code == 429
        if not description:
            description = f"Too Many Requests: retry after {retry_after}" if flood else f"Error {error_code}"
        error = ApiError(error_code, description, {"retry_after": retry_after} if flood else None)
        self._failures.setdefault(method.lower(), []).extend([error.body] * times)

    def fail_network(self, method: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with a 502 HTML page (PTB: NetworkError)."""
        self._failures.setdefault(method.lower(), []).extend([None] * times)

    def hold_next(self, method: str, matches: Callable[[JSONDict], bool], *, before: bool = False) -> Hold:
        """Carry out and record the next call of ``method`` whose parameters match, but hold its
        response until ``Hold.release``; ``Hold.reached`` is set once it is carried out. With
        ``before``, hold the call itself (see Hold): ``reached`` is set when it arrives."""
        hold = Hold(method.lower(), matches, before)
        self._holds.append(hold)
        return hold

    # -- inspection -------------------------------------------------------------------------

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    async def wait_for(
        self, method: str, predicate: Callable[[Call], bool] | None = None, *, count: int = 1,
        timeout: float = 10.0, since: int = 0,
    ) -> list[Call]:  # fmt: skip
        """The calls of ``method`` from index ``since`` on that match, once there are ``count`` of them
        (AssertionError with a summary of the recorded calls on timeout)."""

        def matching() -> list[Call]:
            calls = [c for c in self.calls[since:] if c.method.lower() == method.lower()]
            return [c for c in calls if predicate is None or predicate(c)]

        got = lambda: f"{count} matching {method} call(s); got {len(matching())}"  # noqa: E731
        await self._wait(lambda: len(matching()) >= count, timeout, got)
        return matching()

    async def wait_until_polling(self, timeout: float = 10.0) -> None:
        """Wait until a getUpdates long poll is parked (the next push wakes it)."""
        parked = lambda: any(not poller.done() for poller in self._pollers)  # noqa: E731
        await self._wait(parked, timeout, lambda: "a parked getUpdates long poll")

    def summary(self, limit: int = 50) -> str:
        lines = []
        for call in self.calls[-limit:]:
            shown = {k: v for k, v in call.params.items() if k != "reply_markup"}
            outcome = "ok" if call.ok else f"{call.status} {call.response.get('description')}"
            lines.append(f"  {call.method} {json.dumps(shown, default=str)[:200]} -> {outcome}")
        return "\n".join(lines) or "  (none)"

    async def _wait(self, done: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(done)
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what()}. Recorded calls:\n{self.summary()}"
                ) from None

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    # -- pushing updates ----------------------------------------------------------------------
    # ``sender`` keywords, as in _incoming: user_id, chat_id, chat_type, title, language_code, from_bot.

    def push_update(self, kind: str, payload: JSONDict) -> JSONDict:
        """Queue a raw update ``{"update_id": n, kind: payload}`` and wake the long polls."""
        update = {"update_id": self._next_update_id, kind: payload}
        self.pushed_at[self._next_update_id] = time.monotonic()
        self._next_update_id += 1
        if self.webhook is None:  # with a webhook, Telegram delivers by POST only (see deliver)
            self._updates.append(update)
            self._wake_pollers()
        return update

    def push_message(
        self, text: str, *, reply_to_message_id: int | None = None, entities: list[JSONDict] | None = None,
        **sender: Any,
    ) -> JSONDict:  # fmt: skip
        """A text message; a "/command" gets its bot_command entity, a reply the message it answers."""
        message = self._incoming(**sender) | {"text": text}
        if entities is None and text.startswith("/"):
            entities = [{"type": "bot_command", "offset": 0, "length": utf16_len(text.split(maxsplit=1)[0])}]
        if entities:
            message["entities"] = entities
        return self._queue_message("message", self._reply_to(message, reply_to_message_id))

    def push_command(self, command: str, args: str = "", *, mention_bot: bool = False, **kw: Any) -> JSONDict:
        text = "/" + command.removeprefix("/") + (f"@{BOT_USERNAME}" if mention_bot else "")
        return self.push_message(f"{text} {args}" if args else text, **kw)

    def push_callback(
        self, data: str, *, user_id: int = 1001, chat_id: int | None = None, message_id: int | None = None,
        inline: bool = False, language_code: str | None = "en",
    ) -> JSONDict:  # fmt: skip
        """A button pressed on a bot message in ``chat_id`` (default: the user's private chat). Without
        ``message_id``: the newest bot message of the chat with ``data`` on a button (else the newest).
        ``inline``: on an inline-mode message (``inline_message_id``, no ``message``)."""
        query_id = str(4_200_000_000_000_001 + len(self._callbacks))
        self._callbacks[query_id] = False  # not answered yet
        user = _user(user_id, language_code, is_bot=False)
        query = {"id": query_id, "from": user, "chat_instance": str(user_id * 7919), "data": data}
        if inline:
            return self.push_update("callback_query", query | {"inline_message_id": "AAAAAInlineMessage"})
        chat_id = user_id if chat_id is None else chat_id
        chat = self._chats.get(chat_id) or self._register_chat(chat_id, "private", None)
        query["message"] = copy.deepcopy(self._pressed_message(chat, message_id, data))
        return self.push_update("callback_query", query)

    def push_edited_message(self, message_id: int, text: str, **sender: Any) -> JSONDict:
        message = self._incoming(message_id=message_id, **sender)
        original = self._messages.get((message["chat"]["id"], message_id), {})
        message.update(date=original.get("date", message["date"]), edit_date=_now(), text=text)
        return self._queue_message("edited_message", message)

    def push_non_text(self, kind: str, **sender: Any) -> JSONDict:
        """A message with a photo, sticker, document or location instead of text (voice: push_voice)."""
        message = self._incoming(**sender)
        uid = f"{kind}-{message['chat']['id']}-{message['message_id']}"
        file = {"file_id": f"AgAC{uid}", "file_unique_id": uid}
        payloads: JSONDict = {
            "photo": [{**file, "width": 90, "height": 90}, {**file, "width": 800, "height": 800}],
            "sticker": dict(file, type="regular", width=512, height=512, is_animated=False, is_video=False),
            "document": {**file, "file_name": "report.pdf", "mime_type": "application/pdf"},
            "location": {"latitude": -1.2921, "longitude": 36.8219},
        }
        return self._queue_message("message", message | {kind: payloads[kind]})

    def push_voice(
        self, audio: bytes, *, duration: int, kind: str = "voice", mime_type: str = "audio/ogg",
        reply_to_message_id: int | None = None, **sender: Any,
    ) -> JSONDict:  # fmt: skip
        """A voice note (or, with ``kind="audio"``, an audio file) whose file ``audio`` getFile serves."""
        message = self._reply_to(self._incoming(**sender), reply_to_message_id)
        uid = f"{kind}-{message['chat']['id']}-{message['message_id']}"
        file_id = f"AwAC{uid}"
        self._files[file_id] = (f"{kind}/file_{len(self._files)}.oga", audio)
        file = {"file_id": file_id, "file_unique_id": uid, "file_size": len(audio)}
        message[kind] = file | {"duration": duration, "mime_type": mime_type}
        return self._queue_message("message", message)

    def push_channel_post(
        self, text: str, *, chat_id: int = -1009876543210, title: str = "Field Channel"
    ) -> JSONDict:
        chat = self._register_chat(chat_id, "channel", title)
        message_id = self._new_message_id(chat_id, None)
        message = {"message_id": message_id, "date": _now(), "chat": chat, "sender_chat": chat, "text": text}
        return self._queue_message("channel_post", message)

    def push_my_chat_member(self, new_status: str, *, old_status: str = "member", **sender: Any) -> JSONDict:
        """The bot's own membership of a chat changed (for example ``user_id`` added it to a group)."""
        member = self._incoming(message_id=0, **sender)  # 0: no message id is used up
        del member["message_id"]
        member["old_chat_member"] = {"status": old_status, "user": self.bot_user, **MEMBER_FIELDS[old_status]}
        member["new_chat_member"] = {"status": new_status, "user": self.bot_user, **MEMBER_FIELDS[new_status]}
        return self.push_update("my_chat_member", member)

    async def deliver(self, update: JSONDict, *, to: str | None = None, secret: Any = _SET_SECRET) -> int:
        """POST ``update`` as Telegram does to a webhook: to ``to`` (default the webhook's URL), with the
        secret header (default setWebhook's ``secret_token``; None: no header); returns the HTTP status."""
        if to is None and self.webhook is None:
            raise RuntimeError("no webhook is set and no URL is given")
        url = to or str((self.webhook or {})["url"])
        if secret is _SET_SECRET:
            secret = (self.webhook or {}).get("secret_token")
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        self._client = self._client or ClientSession(timeout=ClientTimeout(total=30))
        async with self._client.post(url, json=update, headers=headers) as response:
            await response.read()
            return int(response.status)

    def _wake_pollers(self) -> None:
        for poller in self._pollers:
            if not poller.done():
                poller.set_result(None)
        self._pollers.clear()

    def _register_chat(self, chat_id: int, chat_type: str, title: str | None) -> JSONDict:
        chat: JSONDict = {"id": chat_id, "type": chat_type}
        chat |= {"first_name": "Ada"} if chat_type == "private" else {"title": title or "Field Team"}
        self._chats[chat_id] = chat
        return chat

    def _new_message_id(self, chat_id: int, explicit: int | None) -> int:
        current = self._message_ids.get(chat_id, 0)
        message_id = current + 1 if explicit is None else explicit
        self._message_ids[chat_id] = max(current, message_id)
        return message_id

    def _incoming(
        self, *, user_id: int = 1001, chat_id: int | None = None, chat_type: str = "private",
        title: str | None = None, language_code: str | None = "en", from_bot: bool = False,
        message_id: int | None = None,
    ) -> JSONDict:  # fmt: skip
        """A message from ``user_id`` in ``chat_id`` (default: the user's private chat, or a group)."""
        if chat_id is None:
            chat_id = user_id if chat_type == "private" else DEFAULT_GROUP_CHAT_ID
        return {
            "message_id": self._new_message_id(chat_id, message_id),
            "date": _now(),
            "chat": self._register_chat(chat_id, chat_type, title),
            "from": _user(user_id, language_code, is_bot=from_bot),
        }

    def _reply_to(self, message: JSONDict, message_id: int | None) -> JSONDict:
        """``message`` answering ``message_id`` of its chat (unknown to the stand-in: a bare one)."""
        if message_id is not None:
            chat = message["chat"]
            replied = self._messages.get((chat["id"], message_id))
            bare = {"message_id": message_id, "date": _now(), "chat": chat}
            message["reply_to_message"] = _without_reply(replied or bare)
        return message

    def _queue_message(self, kind: str, message: JSONDict) -> JSONDict:
        self._messages[(message["chat"]["id"], message["message_id"])] = message
        return self.push_update(kind, copy.deepcopy(message))

    def _pressed_message(self, chat: JSONDict, message_id: int | None, data: str) -> JSONDict:
        if message_id is not None:
            found = self._messages.get((chat["id"], message_id))
            return found or {"message_id": message_id, "date": _now(), "chat": chat, "from": self.bot_user}
        own = [m for (c, _), m in self._messages.items() if c == chat["id"] and _sent_by(m, self.bot_id)]
        with_button = [m for m in own if data in _callback_datas(m)]
        if with_button or own:
            return (with_button or own)[-1]
        message_id = self._new_message_id(chat["id"], None)
        return {"message_id": message_id, "date": _now(), "chat": chat, "from": self.bot_user, "text": "?"}

    # -- HTTP ---------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/file/bot"):
            return await self._download(request)
        token, _, method = request.path.removeprefix("/bot").partition("/")
        params = await _read_params(request)
        if token == self.token and (early := self._hold_for(method, params, before=True)) is not None:
            early.reached.set()
            await early.released.wait()  # cancelled when the bot goes away (handler_cancellation)
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # nobody is waiting: Telegram never had it
        failures = self._failures.get(method.lower()) if token == self.token else None
        failure = failures.pop(0) if failures else {}  # {}: none; None: a 502 page
        if token != self.token:
            body = ApiError(401, "Unauthorized").body
        elif failure != {}:
            body = failure or {"ok": False, "error_code": 502, "description": "Bad Gateway"}
        else:
            body = await self._invoke(method, params)
        status = int(body.get("error_code", 200))
        await self._record(Call(method, params, body, time.monotonic(), status))
        hold = self._hold_for(method, params, before=False)
        if hold is not None:
            hold.reached.set()
            await hold.released.wait()
        if failure is None:
            page = "<html><head><title>502 Bad Gateway</title></head></html>"
            return web.Response(status=502, text=page, content_type="text/html")
        return web.json_response(body, status=status)

    def _hold_for(self, method: str, params: JSONDict, *, before: bool) -> Hold | None:
        """The first hold not reached yet that this call matches."""
        waiting = (
            h
            for h in self._holds
            if not h.reached.is_set() and (h.method, h.before) == (method.lower(), before)
        )
        return next((h for h in waiting if h.matches(params)), None)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """A file download, ``/file/bot<token>/<file_path>`` as getFile gave it; recorded as ``file``."""
        token, _, path = request.path.removeprefix("/file/bot").partition("/")
        found = next((data for p, data in self._files.values() if p == path), None)
        ok = token == self.token and found is not None
        await self._record(
            Call(FILE_DOWNLOAD, {"path": path}, {"ok": ok}, time.monotonic(), 200 if ok else 404)
        )
        if not ok:
            return web.json_response(ApiError(404, "Not Found").body, status=404)
        return web.Response(body=found, content_type="application/octet-stream")

    async def _invoke(self, method: str, params: JSONDict) -> JSONDict:
        handler = self._methods.get(method.lower())
        try:
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            return {"ok": True, "result": await handler(params)}
        except ApiError as exc:
            return exc.body
        except KeyError as exc:
            return bad_request(f"{exc.args[0]} is empty").body
        except (TypeError, ValueError) as exc:
            return bad_request(f"invalid parameters ({exc!r})").body

    # -- methods ------------------------------------------------------------------------------

    async def _get_me(self, params: JSONDict) -> JSONDict:
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": False}

    async def _get_updates(self, params: JSONDict) -> list[JSONDict]:
        if self.webhook is not None:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = float(params.get("timeout") or 0)
        if offset:  # an offset confirms every update before it: Telegram forgets them
            now = time.monotonic()
            self.confirmed_at |= {u["update_id"]: now for u in self._updates if u["update_id"] < offset}
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates and timeout > 0 and not self._closing:
            poller: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._pollers.add(poller)
            async with self._changed:
                self._changed.notify_all()
            try:
                await asyncio.wait([poller], timeout=timeout)
            finally:
                self._pollers.discard(poller)
        allowed = params.get("allowed_updates")
        updates = [u for u in self._updates if not allowed or set(u) - {"update_id"} <= set(allowed)]
        return copy.deepcopy(updates[:limit])

    async def _set_webhook(self, params: JSONDict) -> bool:
        url = str(params["url"])
        if not url.startswith(("https://", "http://127.0.0.1:")):  # plain HTTP to this machine: tests
            raise bad_request("bad webhook: HTTPS url must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise bad_request("secret token contains unallowed characters")
        self.webhook = {"url": url, "secret_token": secret, "allowed_updates": params.get("allowed_updates")}
        return True

    async def _delete_webhook(self, params: JSONDict) -> bool:
        self.webhook = None
        return True

    async def _set_my_commands(self, params: JSONDict) -> bool:
        """Checked as Telegram does: at most 100 commands, names of 1-32 of a-z 0-9 _, descriptions 1-256."""
        commands = params["commands"]
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("commands must be a list of at most 100")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise bad_request("command description is empty or too long")
        scope = params.get("scope") or {"type": "default"}
        key = (str(scope.get("type")), str(params.get("language_code") or ""))
        self.menus[key] = [(str(c["command"]), str(c["description"])) for c in commands]
        return True

    async def _send_message(self, params: JSONDict) -> JSONDict:
        chat = self._chat(params["chat_id"])
        message_id = self._new_message_id(chat["id"], None)
        message = {"message_id": message_id, "from": self.bot_user, "chat": chat, "date": _now()}
        message["text"] = _text(params)
        reply = params.get("reply_parameters")
        if reply:
            replied = self._messages.get((int(reply.get("chat_id", chat["id"])), int(reply["message_id"])))
            if replied is None and not reply.get("allow_sending_without_reply"):
                raise bad_request("message to be replied not found")
            if replied is not None:
                message["reply_to_message"] = _without_reply(replied)
        markup = _inline_keyboard(params.get("reply_markup"))
        if markup is not None:
            message["reply_markup"] = markup
        self._messages[(chat["id"], message_id)] = message
        return copy.deepcopy(message)

    async def _send_chat_action(self, params: JSONDict) -> bool:
        self._chat(params["chat_id"])
        if params.get("action") != "typing":  # the only chat action the bot shows
            raise bad_request("chat actions other than typing are not served by the stand-in")
        return True

    async def _answer_callback_query(self, params: JSONDict) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if self._callbacks.get(query_id, True):
            raise bad_request(CALLBACK_TOO_OLD)
        if len(params.get("text") or "") > MAX_CALLBACK_ANSWER_LENGTH:
            raise bad_request("MESSAGE_TOO_LONG")
        self._callbacks[query_id] = True
        return True

    async def _edit_message_text(self, params: JSONDict) -> JSONDict:
        return self._edit(params, _text(params))

    async def _edit_message_reply_markup(self, params: JSONDict) -> JSONDict:
        return self._edit(params, None)

    def _edit(self, params: JSONDict, text: str | None) -> JSONDict:
        """Set a bot message's text (unless None) and keyboard; an edit that changes nothing is refused."""
        if params.get("inline_message_id"):
            raise bad_request("inline messages are not served by the stand-in")
        chat = self._chat(params["chat_id"])
        message = self._messages.get((chat["id"], int(params["message_id"])))
        if message is None:
            raise bad_request("message to edit not found")
        if not _sent_by(message, self.bot_id):
            raise bad_request("message can't be edited")
        new = {k: v for k, v in message.items() if k != "reply_markup"} | {"text": text or message["text"]}
        markup = _inline_keyboard(params.get("reply_markup"))
        if markup is not None:
            new["reply_markup"] = markup
        if new == message:
            raise bad_request(NOT_MODIFIED)
        message.clear()
        message.update(new, edit_date=_now())
        return copy.deepcopy(message)

    async def _get_chat_member(self, params: JSONDict) -> JSONDict:
        chat = self._chat(params["chat_id"])
        user_id = int(params["user_id"])
        user = self.bot_user if user_id == self.bot_id else _user(user_id, None, is_bot=False)
        status = self._member_status.get((chat["id"], user_id), "member")
        return {"status": status, "user": user, **MEMBER_FIELDS[status]}

    async def _get_file(self, params: JSONDict) -> JSONDict:
        file_id = str(params["file_id"])
        if file_id not in self._files:
            raise bad_request("invalid file_id")
        path, data = self._files[file_id]
        return {"file_id": file_id, "file_unique_id": file_id[4:], "file_size": len(data), "file_path": path}

    def _chat(self, chat_id: Any) -> JSONDict:
        chat = self._chats.get(int(chat_id))
        if chat is None:
            raise bad_request("chat not found")
        return chat


async def _read_params(request: web.Request) -> JSONDict:
    if request.content_type == "application/json":
        body = await request.json()
        return body if isinstance(body, dict) else {}
    form = await request.post() if request.can_read_body else {}
    return {key: _form_value(key, value) for key, value in form.items()}


def _form_value(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key in STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _text(params: JSONDict) -> str:
    """The message text as Telegram checks it: not blank, within the length limit (and plain here)."""
    if params.get("parse_mode"):
        raise bad_request("parse_mode is not served by the stand-in: the bot sends plain text")
    text = str(params.get("text") or "")
    if not text.strip():
        raise bad_request("message text is empty")
    if utf16_len(text) > MAX_MESSAGE_LENGTH:
        raise bad_request("message is too long")
    return text


def _inline_keyboard(markup: Any) -> JSONDict | None:
    """The inline keyboard Telegram keeps on the message (others, such as ForceReply, are not returned)."""
    if not isinstance(markup, dict) or "inline_keyboard" not in markup:
        return None
    datas = [button.get("callback_data") for row in markup["inline_keyboard"] for button in row]
    if any(d is not None and not 1 <= len(d.encode()) <= MAX_CALLBACK_DATA_BYTES for d in datas):
        raise bad_request("BUTTON_DATA_INVALID")
    return markup


def _now() -> int:
    return int(time.time())


def _user(user_id: int, language_code: str | None, *, is_bot: bool) -> JSONDict:
    user: JSONDict = {"id": user_id, "is_bot": is_bot, "first_name": "Ada"}
    return user | {"language_code": language_code} if language_code else user


def _sent_by(message: JSONDict, user_id: int) -> bool:
    return bool(message.get("from", {}).get("id") == user_id)


def _without_reply(message: JSONDict) -> JSONDict:
    return {k: copy.deepcopy(v) for k, v in message.items() if k != "reply_to_message"}


def _callback_datas(message: JSONDict) -> set[str]:
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    return {button["callback_data"] for row in rows for button in row if "callback_data" in button}


@pytest_asyncio.fixture
async def telegram_stub() -> AsyncIterator[TelegramStub]:
    """A started TelegramStub (function scope), stopped after the test."""
    stub = TelegramStub()
    await stub.start()
    try:
        yield stub
    finally:
        await stub.stop()
