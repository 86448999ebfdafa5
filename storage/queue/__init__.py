"""The queue contract of the bot, the workers and `ask`: streams, groups, schema, claims, worker liveness."""

from storage.queue.groups import Delivery
from storage.queue.messages import SCHEMA_VERSION, AnswerMessage, Passage, QuestionMessage, Source
from storage.queue.streams import Consumer, Enqueued, Queue, QueueNames, queue_from_settings

__all__ = [
    "SCHEMA_VERSION",
    "AnswerMessage",
    "Consumer",
    "Delivery",
    "Enqueued",
    "Passage",
    "QuestionMessage",
    "Queue",
    "QueueNames",
    "Source",
    "queue_from_settings",
]
