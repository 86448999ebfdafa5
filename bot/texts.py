"""Every sentence the bot says, in one place (English; translations come later)."""

from __future__ import annotations

WELCOME = (
    "Hello! I answer clinical questions for field teams with Meditron, a medical AI model "
    "that runs on our own server."
)
BUTTON_BOTH = "✅ Use it and allow research review"
BUTTON_SERVICE = "Use it, keep nothing for research"
BUTTON_DECLINE = "❌ No thanks"
CONSENT_FIRST = "Please choose how you want to use the bot first:"
CONSENT_BOTH_DONE = (
    "Thank you. You can ask your question now. Your questions and answers will be kept for "
    "research review. Send /privacy to see or change this."
)
CONSENT_SERVICE_DONE = (
    "Thank you. You can ask your question now. Nothing you write is kept for research. "
    "Send /privacy to see or change this."
)
CONSENT_DECLINED = "Understood. I will not answer questions. Send /start if you change your mind."
CONSENT_STALE = "That button is no longer valid. Here is the current version:"
ACK = "Got it. Your question is number {position} in the queue; I will reply here when the answer is ready."
REMINDER = "⚠️ Research tool, not validated for medical use: answers can be wrong. Check before acting."
FAILED = "Sorry, your question could not be answered. Please ask it again."
TOO_LONG_FOR_MODEL = "Sorry, that question is too long for the model. Please shorten it and ask again."
TOO_LONG = (
    "Your message is {length} characters long; I can take at most {limit}. "
    "Please shorten it and send it again."
)
EMPTY = "Please type your question as text."
NON_TEXT = "I can only read text messages. Please type your question."
EDITED = "I saw you edited a message. I answer the first version; send the question again if it changed."
UNKNOWN_COMMAND = "I do not know that command. Send /help to see what I can do."
CANCELLED = "Your question was withdrawn. You will not get an answer to it."
NOTHING_TO_CANCEL = "You have no question waiting."
GROUP_PRIVATE_ONLY = "Please talk to me in a private chat for now."
TEMPORARY_ERROR = (
    "Sorry, something went wrong on our side. Nothing was sent to the model. "
    "Please send your message again in a few minutes."
)
HELP = (
    "Send me a clinical question as a normal message and I will answer with the Meditron model.\n\n"
    "/start – welcome and consent\n"
    "/privacy – what is kept, for how long, who reads it\n"
    "/cancel – withdraw the question you are waiting for\n"
    "/help – this message\n\n"
    "This is a research tool, not validated for medical use. Answers can be wrong. "
    "In an emergency, call your local emergency number."
)
PRIVACY = (
    "What is kept\n"
    "• Never your Telegram ids: only a pseudonym made from them with a secret key.\n"
    "• Your consent choices, with the date and the version of the text you saw.\n"
    "• With research review: your questions and the answers, for {retention_days} days, "
    "read by {reviewers}.\n"
    "• Without it: only counts and timings, no text.\n\n"
    "Your current choice: {choice}.\n"
    "Send /start to change it."
)
CHOICE_BOTH = "service and research review"
CHOICE_SERVICE = "service only, nothing kept for research"
CHOICE_NONE = "no consent given"
