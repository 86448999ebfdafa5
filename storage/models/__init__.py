"""Every ORM model of the database, one module per aggregate; importing this fills ``Base.metadata``."""

from storage.models.accounts import ROLES, ReviewAccount
from storage.models.audit import AuditEvent
from storage.models.base import NAMING_CONVENTION, Base, UTCDateTime, utcnow
from storage.models.cases import CASE_OUTCOMES, CASE_STATUSES, Case
from storage.models.consent import CONSENT_SCOPES, CONSENT_SOURCES, CONSENT_VALUES, ConsentEvent
from storage.models.erasure import ERASURE_KINDS, ERASURE_REASONS, Tombstone
from storage.models.feedback import RATINGS, Feedback
from storage.models.grants import GRANT_SOURCES, AccessGrant
from storage.models.groups import GroupChat
from storage.models.invites import InviteCode
from storage.models.library import DOCUMENT_FORMATS, LibraryDocument, LibraryPassage, LibraryTerm
from storage.models.login_limits import LoginLimit
from storage.models.questions import ANSWER_STATUSES, QUESTION_STATUSES, Answer, Question
from storage.models.users import User

__all__ = [
    "ANSWER_STATUSES",
    "CASE_OUTCOMES",
    "CASE_STATUSES",
    "CONSENT_SCOPES",
    "CONSENT_SOURCES",
    "CONSENT_VALUES",
    "DOCUMENT_FORMATS",
    "ERASURE_KINDS",
    "ERASURE_REASONS",
    "GRANT_SOURCES",
    "NAMING_CONVENTION",
    "QUESTION_STATUSES",
    "RATINGS",
    "ROLES",
    "AccessGrant",
    "Answer",
    "AuditEvent",
    "Base",
    "Case",
    "ConsentEvent",
    "Feedback",
    "GroupChat",
    "InviteCode",
    "LibraryDocument",
    "LibraryPassage",
    "LibraryTerm",
    "LoginLimit",
    "Question",
    "ReviewAccount",
    "Tombstone",
    "UTCDateTime",
    "User",
    "utcnow",
]
