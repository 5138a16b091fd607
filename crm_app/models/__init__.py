"""SQLAlchemy models only; the rules that change them live in crm_app.drip."""

from crm_app.models.activity import Activity
from crm_app.models.api import TOKEN_SCOPES, ApiToken, IdempotencyKey
from crm_app.models.campaign import (
    CAMPAIGN_STATUSES,
    REENTRY_RULES,
    WEEKDAY_NAMES,
    Campaign,
    CampaignStep,
    StepVersion,
)
from crm_app.models.contact import CONTACT_TYPES, EMAIL_STATUSES, Contact
from crm_app.models.contact_import import (
    IMPORT_STATUSES,
    ON_EXISTING,
    ContactImport,
    ContactImportFailure,
)
from crm_app.models.daily_counts import (
    CampaignDailyCounts,
    CampaignDailyFirsts,
    EnrollmentDailyOutcomes,
)
from crm_app.models.enrollment import ENROLLMENT_ENTRIES, ENROLLMENT_STATUSES, Enrollment
from crm_app.models.experiment import VARIANT_KEYS, ContentBlock, StepVariant
from crm_app.models.message import MESSAGE_STATUSES, REACHED_STATUSES, Message, SystemState
from crm_app.models.outbound import (
    DELIVERY_STATUSES,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from crm_app.models.suppression import HashedSuppression, Suppression
from crm_app.models.team import AuditEntry, PasswordLink, WorkspaceSettings
from crm_app.models.test_send import TestSend
from crm_app.models.tracking import ContactGoal, EmailEvent, EmailReply, WebhookBatch
from crm_app.models.types import UTCDateTime, utcnow
from crm_app.models.user import ROLES, User

__all__ = [
    "CampaignDailyCounts",
    "CampaignDailyFirsts",
    "EnrollmentDailyOutcomes",
    "Activity",
    "AuditEntry",
    "ApiToken",
    "CAMPAIGN_STATUSES",
    "CONTACT_TYPES",
    "Campaign",
    "CampaignStep",
    "Contact",
    "ContentBlock",
    "ContactGoal",
    "ContactImport",
    "ContactImportFailure",
    "DELIVERY_STATUSES",
    "EmailEvent",
    "EmailReply",
    "EMAIL_STATUSES",
    "ENROLLMENT_ENTRIES",
    "ENROLLMENT_STATUSES",
    "Enrollment",
    "IMPORT_STATUSES",
    "IdempotencyKey",
    "HashedSuppression",
    "MESSAGE_STATUSES",
    "REACHED_STATUSES",
    "Message",
    "PasswordLink",
    "ON_EXISTING",
    "REENTRY_RULES",
    "ROLES",
    "StepVersion",
    "StepVariant",
    "Suppression",
    "SystemState",
    "TOKEN_SCOPES",
    "TestSend",
    "UTCDateTime",
    "VARIANT_KEYS",
    "User",
    "WebhookAttempt",
    "WebhookBatch",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WEEKDAY_NAMES",
    "WorkspaceSettings",
    "utcnow",
]
