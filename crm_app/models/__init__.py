"""SQLAlchemy models only; the rules that change them live in crm_app.drip."""

from crm_app.models.activity import Activity
from crm_app.models.campaign import (
    CAMPAIGN_STATUSES,
    REENTRY_RULES,
    WEEKDAY_NAMES,
    Campaign,
    CampaignStep,
    StepVersion,
)
from crm_app.models.contact import CONTACT_TYPES, EMAIL_STATUSES, Contact
from crm_app.models.enrollment import ENROLLMENT_ENTRIES, ENROLLMENT_STATUSES, Enrollment
from crm_app.models.message import MESSAGE_STATUSES, Message, SystemState
from crm_app.models.suppression import Suppression
from crm_app.models.test_send import TestSend
from crm_app.models.tracking import ContactGoal, EmailEvent, WebhookBatch
from crm_app.models.types import UTCDateTime, utcnow
from crm_app.models.user import ROLES, User

__all__ = [
    "Activity",
    "CAMPAIGN_STATUSES",
    "CONTACT_TYPES",
    "Campaign",
    "CampaignStep",
    "Contact",
    "ContactGoal",
    "EmailEvent",
    "EMAIL_STATUSES",
    "ENROLLMENT_ENTRIES",
    "ENROLLMENT_STATUSES",
    "Enrollment",
    "MESSAGE_STATUSES",
    "Message",
    "REENTRY_RULES",
    "ROLES",
    "StepVersion",
    "Suppression",
    "SystemState",
    "TestSend",
    "UTCDateTime",
    "User",
    "WebhookBatch",
    "WEEKDAY_NAMES",
    "utcnow",
]
