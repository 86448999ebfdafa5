"""The queue contract between the bot and the workers: streams, groups, schema, claim/ack/dead-letter."""

from storage.queue.messages import SCHEMA_VERSION, AnswerMessage, QuestionMessage
from storage.queue.streams import Consumer, Delivery, Enqueued, Queue, QueueNames, queue_from_settings

__all__ = [
    "SCHEMA_VERSION",
    "AnswerMessage",
    "Consumer",
    "Delivery",
    "Enqueued",
    "QuestionMessage",
    "Queue",
    "QueueNames",
    "queue_from_settings",
]
