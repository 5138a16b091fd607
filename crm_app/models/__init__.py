"""SQLAlchemy models only; the rules that change them live in crm_app.drip."""

from crm_app.models.activity import Activity
from crm_app.models.campaign import CAMPAIGN_STATUSES, WEEKDAY_NAMES, Campaign, CampaignStep
from crm_app.models.contact import CONTACT_TYPES, EMAIL_STATUSES, Contact
from crm_app.models.enrollment import ENROLLMENT_STATUSES, Enrollment
from crm_app.models.message import MESSAGE_STATUSES, Message, SystemState
from crm_app.models.suppression import HashedSuppression, Suppression
from crm_app.models.team import AuditEntry, PasswordLink, WorkspaceSettings
from crm_app.models.tracking import ContactGoal, EmailEvent, EmailReply, WebhookBatch
from crm_app.models.types import UTCDateTime, utcnow
from crm_app.models.user import ROLES, User

__all__ = [
    "Activity",
    "AuditEntry",
    "CAMPAIGN_STATUSES",
    "CONTACT_TYPES",
    "Campaign",
    "CampaignStep",
    "Contact",
    "ContactGoal",
    "EmailEvent",
    "EmailReply",
    "EMAIL_STATUSES",
    "ENROLLMENT_STATUSES",
    "Enrollment",
    "HashedSuppression",
    "MESSAGE_STATUSES",
    "Message",
    "PasswordLink",
    "ROLES",
    "Suppression",
    "SystemState",
    "UTCDateTime",
    "User",
    "WebhookBatch",
    "WEEKDAY_NAMES",
    "WorkspaceSettings",
    "utcnow",
]
