"""The API's request and response shapes (marshmallow): flask-smorest validates requests
with them and writes the OpenAPI document from them.

They check shapes only (types, required fields, unknown fields); the rules (a valid
email, a known type or time zone, lengths) stay in the core, which answers with a
message per field. Limits the core enforces are shown here as documentation, read
from where the core keeps them.
"""

from __future__ import annotations

import marshmallow as ma

from crm_app.drip.api.records import LIST_LIMIT_MAX
from crm_app.drip.audience.contacts import TEXT_FIELDS
from crm_app.drip.experiments.goals import GOAL_NAME_MAX
from crm_app.models import CONTACT_TYPES, EMAIL_STATUSES, ENROLLMENT_STATUSES, Enrollment

F = ma.fields


def _text(name: str, **kwargs) -> F.String:
    limit = TEXT_FIELDS.get(name)
    return F.String(metadata={"maxLength": limit} if limit else {}, **kwargs)


class ContactFields(ma.Schema):
    """A contact's writable fields."""

    email = F.String(metadata={"format": "email", "maxLength": 254})
    contact_type = F.String(
        metadata={
            "enum": list(CONTACT_TYPES),
            "description": "Picks the campaign it is enrolled in",
        }
    )
    timezone = F.String(metadata={"description": "IANA name, e.g. Europe/Paris", "example": "UTC"})
    first_name = _text("first_name")
    last_name = _text("last_name")
    phone = _text("phone")
    company = _text("company")
    title = _text("title")
    industry = _text("industry")
    notes = _text("notes")
    owner_id = F.Integer(allow_none=True, strict=True, metadata={"description": "A user's id"})
    custom_fields = F.Dict(
        keys=F.String(),
        values=F.String(),
        metadata={"description": "Merge fields: names of letters, digits and underscores"},
    )


class ContactCreate(ContactFields):
    """Create a contact, or update the one with this email (only the given fields)."""

    email = F.String(required=True, metadata={"format": "email", "maxLength": 254})


class EnrollmentOut(ma.Schema):
    id = F.Integer()
    contact_id = F.Integer()
    campaign_id = F.Integer()
    campaign_name = F.Function(lambda e: e.campaign.name)
    status = F.String(metadata={"enum": list(ENROLLMENT_STATUSES)})
    current_step = F.Integer()
    next_send_at = F.DateTime(allow_none=True)
    source = F.String()
    enrolled_by = F.String()
    enrolled_at = F.DateTime()
    ended_at = F.DateTime(allow_none=True)
    end_reason = F.String()


class ContactOut(ContactFields):
    id = F.Integer()
    email = F.String()
    email_status = F.String(metadata={"enum": list(EMAIL_STATUSES)})
    created_at = F.DateTime()
    updated_at = F.DateTime()


class ContactDetailOut(ContactOut):
    enrollments = F.List(F.Nested(EnrollmentOut))


class ContactListQuery(ma.Schema):
    q = F.String(metadata={"description": "Searches name, email and company"})
    # An unknown type is refused, not ignored (which listed every contact); OneOf is
    # also the OpenAPI enum.
    contact_type = F.String(
        data_key="type",
        validate=ma.validate.OneOf(
            CONTACT_TYPES, error=f"Choose one of: {', '.join(CONTACT_TYPES)}."
        ),
    )
    email = F.String(metadata={"description": "Exact, case-insensitive"})
    updated_since = F.AwareDateTime(default_timezone=None)
    cursor = F.Integer(metadata={"description": "The next_cursor of the previous page"})
    limit = F.Integer(load_default=50, validate=ma.validate.Range(1, LIST_LIMIT_MAX))


class ContactList(ma.Schema):
    items = F.List(F.Nested(ContactOut))
    next_cursor = F.Integer(
        allow_none=True, metadata={"description": "Pass as ?cursor= for the next page; null: last"}
    )


class EnrollIn(ma.Schema):
    # Strict, as in a JSON body ids are integers: 1.5 is not 1, nor is "1" (query
    # strings, which are text, keep the lenient Integer).
    campaign_id = F.Integer(required=True, strict=True)
    # A campaign whose re-entry rule is "restart" sends again emails the contact already
    # got only when this is true (without it: 409 listing them).
    restart = F.Boolean(load_default=False)


class StopIn(ma.Schema):
    # The column's length: a longer reason could not be stored.
    reason = F.String(
        load_default="stopped through the API",
        validate=ma.validate.Length(max=Enrollment.end_reason.type.length),
    )


class StopAllOut(ma.Schema):
    stopped = F.Integer(metadata={"description": "Enrolments stopped"})


class TypeChangeIn(ma.Schema):
    contact_type = F.String(required=True, metadata={"enum": list(CONTACT_TYPES)})


class GoalIn(ma.Schema):
    # Refused, not cut: a longer name would be stored shortened without a word.
    name = F.String(
        required=True,
        validate=ma.validate.Length(max=GOAL_NAME_MAX),
        metadata={"example": "demo booked"},
    )


class GoalOut(ma.Schema):
    id = F.Integer()
    contact_id = F.Integer()
    name = F.Function(lambda goal: goal.name.removeprefix("goal:"))
    occurred_at = F.DateTime()


class CampaignOut(ma.Schema):
    id = F.Integer()
    slug = F.String()
    name = F.String()
    status = F.String()
    contact_type = F.String(allow_none=True)
    steps = F.Integer()


class CampaignList(ma.Schema):
    items = F.List(F.Nested(CampaignOut))
