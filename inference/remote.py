"""An OpenAI-compatible model server as the worker's backend (INFERENCE_URL): streamed /v1/completions.

The worker sends the same Gemma-formatted prompt it gives the embedded engine, as a raw completion
(not chat messages): the prompt, and so PROMPT_VERSION, mean the same text on every backend, and a
server's own chat template (each has its own, some drop or move the instructions) cannot change it.
llama-server and vLLM serve ``/v1/completions``; so does Ollama. The server adds ``<bos>`` itself.

Conversation history is trimmed as on the embedded engine (:func:`inference.prompt.fit_prompt`),
against the server's per-request context (llama-server and vLLM say it in ``/v1/models``; else
N_CTX). Tokens are counted by the server's own tokenizer where it has llama-server's ``/tokenize``;
otherwise, or when that call fails, by an upper bound: the prompt's UTF-8 bytes plus ``<bos>`` (every
token of a byte-fallback or byte-level tokenizer covers at least one byte), which may trim more than
needed but never sends a prompt that does not fit.

A server that answers 429 (rate limit) or 503 (loading, busy) gets the request again after its
Retry-After (or a capped backoff) for as long as the question is wanted; the worker keeps renewing
the question's claim meanwhile, so no other worker answers it too. Each retry is counted in
``meditron_backend_retries``.

Generation stops at the token budget (``max_tokens``), at ``<end_of_turn>``, or when the request's
``should_stop`` says so: the stream is then closed, and llama-server ends a generation whose
client went away.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import structlog

from inference import metrics
from inference.batch_sequence import Callback, Request
from inference.engine import GenerationResult, StopReason
from inference.errors import InferenceError, PromptTooLongError
from storage.queue.backoff import Backoff
from storage.urls import redact_url

log = structlog.get_logger("inference.remote")

END_OF_TURN = "<end_of_turn>"
CANCEL_POLL_S = 0.25
"""How often a request waiting for the server checks whether it was withdrawn."""
MODEL_NAME_MAX = 64
"""Records keep the backend's model name where the embedded worker keeps the file's sha256 (64 chars)."""
RETRY_CAP_S = 10.0
"""The longest wait between two tries of a request the server could not take (without Retry-After)."""
RETRY_AFTER_S = (0.25, 60.0)
"""A Retry-After is waited out within these bounds (never a busy loop, never an hour's stall)."""


class BackendError(InferenceError):
    """The model server refused or failed a request, or could not be reached."""


class _UnavailableError(Exception):
    """The server is away (connection refused) or busy (429 rate limit, 503 loading or overloaded):
    the request may be sent again. ``busy``: the server answered, so waiting is not bounded by the
    timeout; ``retry_after``: the seconds its Retry-After header asked for."""

    def __init__(self, reason: str, *, busy: bool = False, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.busy = busy
        self.retry_after = retry_after


@dataclass
class _Stream:
    """What one streamed completion produced so far."""

    text: list[str] = field(default_factory=list)
    chunks: int = 0
    first_token_at: float | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False


class RemoteEngine:
    """Answers up to ``max_sequences`` requests at once through an OpenAI-compatible server.

    Requests run as tasks on the event loop that submits them; :meth:`serve` only waits for the
    worker to stop (there is no model thread).
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        max_sequences: int = 4,
        timeout_s: float = 300.0,
        n_ctx: int = 4096,
    ) -> None:
        self.url = url.rstrip("/").removesuffix("/v1")
        self.model = model
        self._n_ctx = n_ctx
        self.tokenizer: Literal["server", "estimate"] = "estimate"
        """How prompts are counted: the server's ``/tokenize`` (found by :meth:`connect`), or the bound."""
        self.max_sequences = max_sequences
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0)
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._shown = redact_url(self.url)

    # -- start -----------------------------------------------------------------------------------

    async def connect(self, stop: asyncio.Event | None = None, attempts: int = 60) -> str:
        """Wait until the server lists its models; the model to ask for (MODEL_NAME_MAX chars at most).

        INFERENCE_MODEL when set, else the first model the server lists. BackendError when the
        server does not answer after ``attempts`` tries (capped backoff) or refuses the key.
        """
        backoff = Backoff(first_s=0.25, cap_s=2.0)
        for attempt in range(1, attempts + 1):
            try:
                response = await self._client.get("/v1/models")
                if response.status_code in (401, 403):
                    raise BackendError(f"the model server refused the API key (HTTP {response.status_code})")
                response.raise_for_status()
                listed = {str(item["id"]): item for item in response.json().get("data", [])}
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                if attempt == attempts or (stop is not None and stop.is_set()):
                    reason = type(exc).__name__
                    raise BackendError(f"no model server answers at {self._shown}: {reason}") from exc
                await backoff.wait(stop)
                continue
            if self.model is None:
                if not listed:
                    raise BackendError(f"the model server at {self._shown} lists no model")
                self.model = next(iter(listed))
            self._n_ctx = _context_of(listed.get(self.model)) or self._n_ctx
            self.tokenizer = "server" if await self._tokenize("x") is not None else "estimate"
            return self.model[:MODEL_NAME_MAX]
        raise BackendError(f"no model server answers at {self._shown}")  # pragma: no cover (loop returns)

    # -- the Backend protocol --------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """The server's context for one request (from ``/v1/models`` once connected), else N_CTX."""
        return self._n_ctx

    async def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the server's tokenizer (``<bos>`` included), else an upper bound."""
        if self.tokenizer == "server":
            count = await self._tokenize(text)
            if count is not None:
                return count
        return len(text.encode("utf-8")) + 1

    async def _tokenize(self, text: str) -> int | None:
        """llama-server's ``POST /tokenize`` count of ``text`` as a prompt; None when that fails."""
        body = {"content": text, "add_special": True, "parse_special": True}
        try:
            response = await self._client.post("/tokenize", json=body, timeout=10.0)
            tokens = response.json().get("tokens") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return len(tokens) if isinstance(tokens, list) else None

    @property
    def prefix_tokens(self) -> int:
        """Never evaluated here: the server keeps its own prompt cache (llama-server's ``cache_prompt``)."""
        return 0

    def set_prefix(self, text: str, state: Path | None = None) -> int:
        """Nothing to do: the server reuses the common prefix of its slots' prompts itself."""
        return 0

    def submit(self, request: Request, on_done: Callback) -> None:
        """Start ``request`` as a task on the running event loop; ``on_done`` gets its outcome."""
        task = asyncio.get_running_loop().create_task(self._run(request, on_done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def serve(self, halt: threading.Event) -> None:
        """Wait until the worker stops (requests are tasks on its event loop)."""
        halt.wait()

    def wake(self) -> None:
        """Nothing waits but :meth:`serve`, which watches its halt event."""

    def close(self) -> None:
        """Cancel the requests still running (their connections close, so the server stops them)."""
        for task in list(self._tasks):
            task.cancel()

    async def aclose(self) -> None:
        """Cancel what runs and close the HTTP connections."""
        self.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    # -- one request -----------------------------------------------------------------------------

    async def _run(self, request: Request, on_done: Callback) -> None:
        """Complete ``request`` and report the result or the error."""
        try:
            outcome: GenerationResult | InferenceError = await self.complete(request)
        except InferenceError as exc:
            outcome = exc
        except httpx.HTTPError as exc:
            outcome = BackendError(f"the model server failed: {type(exc).__name__}")
        on_done(outcome)

    async def complete(self, request: Request) -> GenerationResult:
        """Stream one completion; stopped early (closing the stream) once ``should_stop`` says so."""
        started_at = time.time()
        stream = _Stream()
        if request.should_stop is not None and request.should_stop():
            return GenerationResult("", 0, 0, "cancelled", started_at, None, time.time())
        task = asyncio.create_task(self._stream(request, stream))
        cancelled = False
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=CANCEL_POLL_S)
                if not task.done() and request.should_stop is not None and request.should_stop():
                    task.cancel()
                    cancelled = True
                    break
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if not cancelled:
            task.result()  # its error, if any
        reason = _stop_reason(stream, cancelled or stream.cancelled)
        usage = stream.usage
        return GenerationResult(
            "".join(stream.text),
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or stream.chunks),
            reason,
            started_at,
            stream.first_token_at,
            time.time(),
        )

    async def _stream(self, request: Request, into: _Stream) -> None:
        """:meth:`_stream_once`, sent again while nothing was streamed yet and the server is busy
        (429, 503: for as long as the request is wanted, honouring Retry-After) or away (refused
        connection: for up to the timeout, then BackendError); capped backoff in between. The worker
        keeps renewing the question's claim meanwhile, so no other worker takes it."""
        backoff = Backoff(first_s=0.5, cap_s=RETRY_CAP_S, jitter=0.25)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                await self._stream_once(request, into)
            except _UnavailableError as exc:
                if into.chunks or (not exc.busy and time.monotonic() > deadline):
                    raise BackendError(f"the model server at {self._shown} is unavailable: {exc}") from None
                delay = backoff.failed()
                if exc.retry_after is not None:
                    delay = min(max(exc.retry_after, RETRY_AFTER_S[0]), RETRY_AFTER_S[1])
                metrics.BACKEND_RETRIES.labels(exc.reason).inc()
                if backoff.failures & (backoff.failures - 1) == 0:  # the 1st, 2nd, 4th, 8th... in a row
                    log.warning(
                        "backend.unavailable", reason=exc.reason, tries=backoff.failures,
                        retry_in_s=round(delay, 2),
                    )  # fmt: skip
                await asyncio.sleep(delay)
                continue
            if backoff.failures:
                log.info("backend.available", tries=backoff.failures + 1)
            return

    async def _stream_once(self, request: Request, into: _Stream) -> None:
        """POST the completion and read its server-sent events into ``into``, until [DONE] or a stop."""
        body = {
            "model": self.model,
            "prompt": request.prompt,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
            "stop": [*request.stop, END_OF_TURN],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        try:
            async with self._client.stream("POST", "/v1/completions", json=body) as response:
                await self._read(request, response, into)
        except httpx.ConnectError:
            raise _UnavailableError("unreachable") from None

    async def _read(self, request: Request, response: httpx.Response, into: _Stream) -> None:
        """Read one streamed completion's events into ``into``."""
        if response.status_code in (429, 503):
            reason = "rate_limited" if response.status_code == 429 else "unavailable"
            retry_after = retry_after_s(response.headers.get("retry-after"))
            raise _UnavailableError(reason, busy=True, retry_after=retry_after)
        if response.status_code != 200:
            raise _refusal(response.status_code, (await response.aread()).decode("utf-8", "replace"))
        async for event in _events(response):
            for choice in event.get("choices") or []:
                piece = str(choice.get("text") or "")
                if piece:
                    into.first_token_at = into.first_token_at or time.time()
                    into.text.append(piece)
                    into.chunks += 1
                    if request.on_text is not None and "\n" in piece:
                        request.on_text("".join(into.text))
                into.finish_reason = choice.get("finish_reason") or into.finish_reason
            if event.get("usage"):
                into.usage = dict(event["usage"])
            if request.should_stop is not None and request.should_stop():
                into.cancelled = True
                return  # closing the stream ends the generation on the server


async def _events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a server-sent event stream, up to ``[DONE]``."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if isinstance(event, dict):
            if "error" in event:
                raise BackendError(f"the model server failed mid-answer: {_error_kind(event)}")
            yield event


def retry_after_s(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _context_of(model: Any) -> int | None:
    """A listed model's context for one request: llama-server's ``meta.n_ctx``, vLLM's ``max_model_len``."""
    if not isinstance(model, dict):
        return None
    meta = model.get("meta")
    value = meta.get("n_ctx") if isinstance(meta, dict) else model.get("max_model_len")
    return value if isinstance(value, int) and value > 0 else None


def _stop_reason(stream: _Stream, cancelled: bool) -> StopReason:
    """The worker's stop reason for a finished stream."""
    if cancelled:
        return "cancelled"
    return "length" if stream.finish_reason == "length" else "stop"


def _error_kind(event: dict[str, Any]) -> str:
    """The error's type or code (never its message: it may quote the prompt)."""
    error = event.get("error")
    if isinstance(error, dict):
        return str(error.get("type") or error.get("code") or "error")
    return "error"


def _refusal(status: int, body: str) -> InferenceError:
    """The error for a refused request: a prompt too long for the server's context, or a failure."""
    try:
        event = json.loads(body)
    except ValueError:
        event = {}
    kind = _error_kind(event) if isinstance(event, dict) else "error"
    error = event.get("error") if isinstance(event, dict) else None
    if status == 400 and ("context" in kind or "context" in json.dumps(error or body)):
        details = error if isinstance(error, dict) else {}
        return PromptTooLongError(int(details.get("n_prompt_tokens") or 0), int(details.get("n_ctx") or 0))
    return BackendError(f"the model server refused the request (HTTP {status}, {kind})")
