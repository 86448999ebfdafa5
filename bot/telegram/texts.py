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
INPUT_BROKEN_CHARACTER = (
    "Part of your message could not be read (a broken emoji or symbol). "
    "I left that part out and read the rest of your message."
)
INPUT_NUL_CHARACTER = (
    "Your message contained an invisible control character (NUL) that I cannot keep. "
    "I left it out and read the rest of your message."
)
BUTTON_NEEDS_CHAT = (
    "This button works only in a chat with me. Please open a private chat with me and send /start."
)
HELD_QUESTION_ERASED = (
    "The question you asked in a group, which was waiting for your agreement, is deleted too: "
    "it will not be answered."
)
EDITED = "I saw you edited a message. I answer the first version; send the question again if it changed."
UNKNOWN_COMMAND = "I do not know that command. Send /help to see what I can do."
CANCELLED = "Your question was withdrawn. You will not get an answer to it."
NOTHING_TO_CANCEL = "You have no question waiting."
NEW_CONVERSATION = "New conversation: I no longer remember our earlier messages. Ask your question."
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
    "/lang – choose your language\n"
    "/help – this message\n"
    "In a team group: /ask followed by your question, or mention me.\n\n"
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

# -- field-team operation (issue 5) --------------------------------------------------------------
ACK_WITH_WAIT = (
    "Got it. Your question is number {position} in the queue; estimated wait about {minutes} min. "
    "I will reply here when the answer is ready."
)
ACK_UNDER_MINUTE = (
    "Got it. Your question is number {position} in the queue; the answer should come in under a minute. "
    "I will reply here when it is ready."
)
RED_FLAG = (
    "🚨 This may be an emergency. Do not wait for my answer: go to the nearest health facility now "
    "or call {emergency}. I will still answer your question."
)
EMERGENCY_DEFAULT = "your local emergency number"
STILL_WORKING = "I am still working on your previous question. Please wait for that answer, or send /cancel."
BUSY = "I am very busy right now. Please try again in a few minutes."
SLOW_DOWN = "You are sending messages very fast. Please wait a minute, then send your question once."
CHANNEL_UNSUPPORTED = "I do not answer in channels. Please write to me in a private chat or a team group."
NOT_INVITED = (
    "This bot is only for invited teams. If you have an invite code, send /start followed by the code."
)
INVITE_ACCEPTED = "Your invite code is accepted. Welcome!"
INVITE_REJECTED = "This invite code is not valid, used up or expired. Ask your team lead for a new one."
GROUP_DISABLED = "I am switched off in this group. A group administrator can send /enable to switch me on."
GROUP_ENABLED = "I am now on in this group. Ask with /ask followed by your question, or mention me."
GROUP_DISABLED_DONE = "I am now off in this group. An administrator can send /enable to switch me on again."
ADMINS_ONLY = "Only a group administrator can do that."
GROUP_ONLY = "This command works in groups only."
GROUP_HELLO = (
    "Hello! I answer clinical questions with Meditron, a research AI model. A group administrator must "
    "send /enable first. Then ask with /ask followed by your question, mention me, or reply to my message."
)
GROUP_CONSENT_NEEDED = (
    "Before I can answer you, please agree to the terms in a private chat (one tap): {link}\n"
    "I will keep your question for {minutes} minutes and answer it here once you agree."
)
GROUP_QUESTION_RELEASED = (
    "Thank you. Your question from the group is now in the queue; I will answer it there."
)
GROUP_QUESTION_DROPPED = (
    "Your question was not answered because the terms were not accepted in time. Please ask it again."
)
ASK_USAGE = "Please write your question after the command, for example: /ask fever in a 2-year-old"
FEEDBACK_THANKS = "Thank you for your feedback."
FEEDBACK_REASON = (
    "Sorry this answer was not good. What was wrong? Reply to this message in one line (optional)."
)
FEEDBACK_REASON_THANKS = "Thank you, noted."
FEEDBACK_NOT_YOURS = "Only the person who asked can rate this answer."
FEEDBACK_STALE = "This button is no longer valid."
LANG_CHOOSE = "Choose your language:"
LANG_SET = "Language set: English."
LANG_UNKNOWN = "I do not know that language. Choose one of: en, fr, ar, es, sw."
# Consent, withdrawal and erasure (/consent, /withdraw, /forget).
RIGHTS_STATUS = (
    "What you agreed to\n"
    "• Using the service: {service}\n"
    "• Research review of your questions and answers: {research}\n"
    "• Consent text: version {version}{date}\n\n"
    "To change your choice, press a button under the current text below. "
    "/withdraw stops research review and erases what was kept; /forget erases everything about you."
)
RIGHTS_OUTDATED = "The consent text has changed since you agreed; please read it and choose again."
RIGHTS_YES = "yes"
RIGHTS_NO = "no"
RIGHTS_WITHDRAWN = "withdrawn"
RIGHTS_NOT_CHOSEN = "not chosen yet"
RIGHTS_SINCE = " (chosen on {date})"
WITHDRAW_DONE = (
    "Research review withdrawn. I erased the text of {count} question(s), their answers and your "
    "feedback; only counts and timings stay. "
    "You can keep asking questions: nothing more is kept for research."
)
WITHDRAW_NOTHING = (
    "Research review is off. Nothing you wrote was kept for research, so there was nothing to erase. "
    "You can keep asking questions."
)
FORGET_DONE = (
    "Done. I erased everything about you: the text of {count} question(s) and their answers, your feedback, "
    "your pseudonym and your choices. Your consent to use the service has ended; send /start to begin again."
)
RESEARCH_ERASED = (
    "I erased the text of {count} earlier question(s) and their answers, "
    "as you no longer allow research review."
)
RIGHTS_HELP = (
    "/consent – see or change what you agreed to\n"
    "/withdraw – stop research review and erase your kept questions\n"
    "/forget – erase everything about you"
)
# Voice notes (issue 14).
VOICE_HEARD = "🎙️ I heard: “{text}”\nIf I misheard, send /cancel and type your question or record it again."
VOICE_TOO_LONG = (
    "Your voice note is {seconds} seconds long; I can listen to at most {limit} seconds. "
    "Please record a shorter one or type your question."
)
VOICE_TOO_BIG = (
    "That recording is too large for me ({size} MB; at most {limit} MB). "
    "Please record a shorter one or type your question."
)
VOICE_SILENT = "I could not understand the recording; please type or record again."
VOICE_NOT_AUDIO = (
    "I could not play that file: it does not seem to be a sound recording. "
    "Please send a voice note or type your question."
)
VOICE_GROUP_CONSENT = (
    "Before I can listen to you, please agree to the terms in a private chat (one tap): {link}\n"
    "Then send your voice note again."
)
VOICE_HELP = "You can also send a voice note: I reply with what I heard, then answer it as a typed question."
VOICE_PRIVACY = (
    "• Voice notes: the recording is deleted as soon as it is transcribed; what I heard is kept "
    "like a typed question (only with research review)."
)
VOICE_UNAVAILABLE = "I cannot listen to voice notes right now. Please type your question."
VOICE_FAILED = "Sorry, I could not listen to your voice note. Please record it again or type your question."

# -- grounded answers (issue 13) ------------------------------------------------------------------
SOURCES_HEADING = "Sources (the study's guidelines):"
SOURCE_PAGE = "p. {page}"
NOT_FROM_LIBRARY = "ℹ️ Not from the study's guidelines: no passage of them matched this question."
SOURCES_INTRO = "The guideline passages used for your last answer:"
SOURCES_NONE = "Your last answer did not use the study's guidelines."
SOURCES_NO_ANSWER = "You have no answer yet. Ask a question first."
SOURCE_REMOVED = "(no longer in the library)"
SOURCES_HELP = "/sources – the guideline passages your last answer used"
CONVERSATION_HELP = "/new – start a new conversation (I forget the earlier questions)"
HUMAN_HELP = "/human – ask a clinician of the study team to read your last question"
VOICE_REFUSALS = {
    "too_long": VOICE_TOO_LONG,
    "too_big": VOICE_TOO_BIG,
    "silent": VOICE_SILENT,
    "not_audio": VOICE_NOT_AUDIO,
    "failed": VOICE_FAILED,
}  # bot.flows.voice.Refusal kinds
# Handover to a clinician of the study team (buttons, /human, the case's messages).
HANDOVER_BUTTON = "🩺 Ask a clinician"
HANDOVER_CONSENT = (
    "Do you agree that a clinician of the study team reads this question, the bot's answer and the earlier "
    "messages of this conversation, to reply to you here? Nothing else is shared. "
    "A reply can take time: in an emergency, do not wait."
)
HANDOVER_YES = "✅ Yes, share this question"
HANDOVER_NO = "No"
HANDOVER_OPENED = (
    "Thank you. A clinician of the study team will read your question and reply here. "
    "If nobody has answered within {minutes} minutes, I will tell you."
)
HANDOVER_DECLINED = "Understood. Your question was not shared with anyone."
HANDOVER_WAITING = (
    "No clinician has answered your question yet; it is still waiting for the study team. "
    "If your situation gets worse, do not wait: seek care now."
)
HANDOVER_ALREADY = "This question is already with a clinician of the study team."
HANDOVER_STALE = "This question can no longer be sent to a clinician. Please ask it again."
HANDOVER_NO_QUESTION = (
    "There is no recent question to send to a clinician. Ask your question first, then send /human."
)
HANDOVER_NOT_YOURS = "Only the person who asked can send this question to a clinician."
HANDOVER_REPLY = "🩺 Reply from a clinician of the study team:\n\n{reply}"
ALERT_CASE_UNCLAIMED = "🩺 A handover case has waited {minutes} min without a clinician: {link}"
