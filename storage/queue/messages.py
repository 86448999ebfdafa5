"""The versioned message schema carried on the question and answer streams."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1


class _Message(BaseModel):
    """Common settings: unknown fields are ignored so newer producers do not break older consumers."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = SCHEMA_VERSION


class Source(BaseModel):
    """A library passage an answer rests on, as the bot names it under "Sources:"."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    title: str
    section: str = ""
    page: int | None = None


class Passage(Source):
    """A library passage retrieved for a question, with the text the prompt quotes."""

    text: str


class QuestionMessage(_Message):
    """A question waiting for a worker. Raw chat ids live only in Redis, never in the database."""

    question_id: str = Field(min_length=8, max_length=64)
    chat_id: int
    message_id: int
    user: str = Field(description="HMAC pseudonym of the asking user")
    chat_type: str = "private"
    language: str = "en"
    text: str
    research: bool = False
    received_at: float = 0.0
    enqueued_at: float
    update_id: int | None = None
    reply_stream: str | None = Field(default=None, description="answers go here instead (CLI)")
    delivery: Literal["whole", "paragraphs"] = Field(
        default="whole", description="paragraphs: finished paragraphs are published early (DELIVERY)"
    )
    passages: tuple[Passage, ...] = Field(default=(), description="retrieved by the bot, in rank order")
    library_version: str = Field(default="", description="empty: no library, nothing was retrieved")
    conversation_id: str | None = Field(default=None, description="the conversation it continues or starts")
    turn: int = Field(default=0, ge=0, description="its turn in the conversation (1 = first; 0 = none)")
    history: tuple[tuple[str, str], ...] = Field(
        default=(), description="earlier (question, answer) pairs of the conversation, oldest first"
    )
    holder: str = Field(
        default="", description="the worker that answered the previous turn (it may keep its KV state)"
    )


AnswerStatus = Literal["ok", "failed"]


class AnswerMessage(_Message):
    """An answer (or a failure notice) for the bot to deliver."""

    question_id: str
    chat_id: int
    reply_to: int
    user: str
    status: AnswerStatus = "ok"
    text: str = ""
    model_sha256: str | None = None
    prompt_version: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_reason: str = ""
    language: str = Field(default="", description="the question's language (empty: look it up)")
    received_at: float = 0.0
    enqueued_at: float = 0.0
    taken_at: float = 0.0
    first_token_at: float | None = None
    finished_at: float = 0.0
    worker: str = ""
    part: int | None = Field(
        default=None, description="an early paragraph (0, 1, ...) of an unfinished answer; None: final"
    )
    part_ends: list[int] = Field(
        default_factory=list, description="final answer: where each early paragraph ends in text (chars)"
    )
    sources: tuple[Source, ...] = Field(default=(), description="the question's passages, for Sources:")
    library_version: str = ""
    conversation_id: str | None = None
    turn: int = 0
    history_turns: int = Field(default=0, description="earlier turns the prompt held (after trimming)")
