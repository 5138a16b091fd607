"""Bulk actions on contacts: enrol, stop, change type, delete, for the rows ticked in
the list or for every contact a search matches. No HTTP in here.

Each contact goes through the same core functions as the contact page (enrollment.py,
ending.py, contacts.py), so the same rules refuse the same things and the same timeline
rows are written. Contacts are processed in chunks; `run_bulk_action` yields after each one so
that the caller commits it: a large selection never becomes one huge transaction, and
a job stopped halfway keeps what it finished.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa

from crm_app.drip.audience.contact_search import count_matching, matching_ids
from crm_app.drip.audience.contacts import delete_contact
from crm_app.drip.audience.ending import stop, stop_all
from crm_app.drip.audience.enrollment import (
    EnrollmentError,
    active_enrollment,
    change_contact_type,
    enroll,
)
from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.common.ids import id_or_none
from crm_app.models import CONTACT_TYPES, Campaign, Contact

# Verb and the question of each action ("Enrol 3 contacts in Lead?").
ACTIONS = {
    "enroll": "Enrol in a campaign",
    "stop": "Stop enrolments",
    "change_type": "Change the type",
    "delete": "Delete",
}
# Up to this many contacts the request itself does the work; more go to a background
# job (crm_app.jobs.bulk_contact_action) that reports its progress.
INLINE_LIMIT = 500
CHUNK_SIZE = 200
# Refusals quoted in the result (the rest are counted).
EXAMPLES_KEPT = 5


class BulkActionError(FieldErrors):
    """A bulk action that cannot run as asked; a message per form field."""


@dataclass(frozen=True)
class Selection:
    """The contacts an action applies to: ticked ids, or all that match a search."""

    contact_ids: tuple[int, ...] = ()
    all_matching: bool = False
    query: str = ""
    contact_type: str = ""

    @classmethod
    def from_values(cls, values: Mapping[str, str], ticked: list[str]) -> Selection:
        """From submitted strings: `scope` ("selected" or "matching"), `q`, `type`, and
        the ticked `contact_ids`."""
        ids = sorted({i for v in ticked if (i := id_or_none(v)) is not None})
        return cls(
            contact_ids=tuple(ids),
            all_matching=values.get("scope") == "matching",
            query=values.get("q", "")[:200],
            contact_type=values.get("type", "") if values.get("type") in CONTACT_TYPES else "",
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "contact_ids": list(self.contact_ids)}

    @classmethod
    def from_dict(cls, values: dict) -> Selection:
        return cls(**{**values, "contact_ids": tuple(values["contact_ids"])})

    def count(self, session) -> int:
        if self.all_matching:
            return count_matching(session, self.query, self.contact_type)
        return session.scalar(
            sa.select(sa.func.count(Contact.id)).where(Contact.id.in_(self.contact_ids))
        )

    def id_chunks(self, session, size: int) -> Iterator[list[int]]:
        if self.all_matching:
            yield from matching_ids(session, self.query, self.contact_type, chunk_size=size)
            return
        for start in range(0, len(self.contact_ids), size):
            yield list(self.contact_ids[start : start + size])

    def sample_names(self, session, limit: int = 10) -> list[str]:
        """A few of the selected contacts, for the confirmation."""
        first_ids = next(self.id_chunks(session, limit), [])
        contacts = session.scalars(sa.select(Contact).where(Contact.id.in_(first_ids)))
        return sorted(c.full_name for c in contacts)


@dataclass(frozen=True)
class BulkAction:
    """What to do: `campaign_id` is the campaign to enrol in, or the one to stop (None:
    every campaign); `new_type` the type to change to."""

    action: str
    campaign_id: int | None = None
    new_type: str = ""

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> BulkAction:
        campaign = values.get("campaign_id", "")
        return cls(
            action=values.get("action", ""),
            campaign_id=int(campaign) if campaign.isdigit() else None,
            new_type=values.get("new_type", ""),
        )

    def as_dict(self) -> dict:
        return asdict(self)


def check_selection(session, selection: Selection) -> int:
    """How many contacts are selected; BulkActionError when none (or no action)."""
    count = selection.count(session)
    if count == 0:
        message = (
            "No contact matches this search."
            if selection.all_matching
            else "Tick at least one contact, or choose all that match."
        )
        raise BulkActionError({"scope": message})
    return count


def check_action(session, action: BulkAction, *, final: bool) -> Campaign | None:
    """The action's campaign (or None); BulkActionError with a message per missing or
    wrong field. `final`: the confirmation step, where the campaign or type is chosen."""
    if action.action not in ACTIONS:
        raise BulkActionError({"action": "Choose what to do with the contacts."})
    campaign = session.get(Campaign, action.campaign_id) if action.campaign_id else None
    if not final:
        return campaign
    if action.action == "enroll" and campaign is None:
        raise BulkActionError({"campaign_id": "Choose the campaign to enrol them in."})
    if action.action == "change_type" and action.new_type not in CONTACT_TYPES:
        raise BulkActionError({"new_type": f"Choose one of: {', '.join(CONTACT_TYPES)}."})
    return campaign


# Each action's verb as the button asks for it, and as a job under way does it.
_VERBS = {
    "enroll": ("Enrol", "enrolling"),
    "stop": ("Stop", "stopping"),
    "change_type": ("Change", "changing"),
    "delete": ("Delete", "deleting"),
}


def _what(action: BulkAction, count: int, campaign: Campaign | None, verb: str) -> str:
    contacts = f"{count:,} contact{'' if count == 1 else 's'}"
    if action.action == "enroll":
        where = f" in {campaign.name}" if campaign else ""
        return f"{verb} {contacts}{where}"
    if action.action == "stop":
        which = campaign.name if campaign else "every campaign"
        return f"{verb} {which} for {contacts}"
    if action.action == "change_type":
        to = f" to {action.new_type}" if action.new_type else ""
        return f"{verb} the type of {contacts}{to}"
    return f"{verb} {contacts}"


def button_label(action: BulkAction, count: int, campaign: Campaign | None) -> str:
    """What the confirming button says: "Enrol 3 contacts in Lead"."""
    return _what(action, count, campaign, _VERBS[action.action][0])


def question(action: BulkAction, count: int, campaign: Campaign | None) -> str:
    """The confirmation's question, which says how many: "Enrol 3 contacts in Lead?"."""
    asked = f"{button_label(action, count, campaign)}?"
    return f"{asked} This cannot be undone." if action.action == "delete" else asked


def started(action: BulkAction, count: int, campaign: Campaign | None) -> str:
    """What a background job's start says, a statement: "Started: enrolling 3 contacts in
    Lead."."""
    return f"Started: {_what(action, count, campaign, _VERBS[action.action][1])}."


@dataclass
class BulkResult:
    total: int
    done: int = 0
    refused: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.done + self.refused

    def refuse(self, reason: str) -> None:
        self.refused += 1
        if len(self.examples) < EXAMPLES_KEPT:
            self.examples.append(reason)

    def summary(self, action: BulkAction, campaign_name: str = "") -> str:
        verb = {
            "enroll": f"Enrolled in {campaign_name}",
            "stop": "Stopped",
            "change_type": f"Changed to {action.new_type}",
            "delete": "Deleted",
        }[action.action]
        text = f"{verb}: {self.done:,} contact{'' if self.done == 1 else 's'}."
        if self.refused:
            text += f" Not done for {self.refused:,}: " + " ".join(self.examples)
            if self.refused > len(self.examples):
                text += f" (and {self.refused - len(self.examples):,} more)"
        return text

    def as_dict(self) -> dict:
        return asdict(self)


def _apply_one(
    session, action: BulkAction, contact: Contact, campaign: Campaign | None, *, actor: str,
    stop_reason: str,
) -> None:  # fmt: skip
    """The contact page's own core call for this action; EnrollmentError if refused."""
    if action.action == "enroll":
        enroll(session, contact, campaign, actor=actor, source="bulk")
    elif action.action == "stop" and campaign is not None:
        current = active_enrollment(session, contact, campaign)
        if current is None:
            raise EnrollmentError(f"{contact.full_name} is not enrolled in {campaign.name}.")
        stop(session, current, reason=stop_reason, actor=actor)
    elif action.action == "stop":
        if stop_all(session, contact, reason=stop_reason, actor=actor) == 0:
            raise EnrollmentError(f"{contact.full_name} has no active enrolment.")
    elif action.action == "change_type":
        if contact.contact_type == action.new_type:
            raise EnrollmentError(f"{contact.full_name} is already a {action.new_type}.")
        change_contact_type(session, contact, action.new_type, actor=actor)
    else:
        delete_contact(session, contact, actor=actor)


def run_bulk_action(
    session,
    action: BulkAction,
    selection: Selection,
    *,
    actor: str,
    stop_reason: str,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[BulkResult]:
    """Apply `action` to every selected contact, a chunk at a time; yields the running
    result after each chunk, which the caller commits before asking for the next."""
    campaign = check_action(session, action, final=True)
    result = BulkResult(total=selection.count(session))
    for ids in selection.id_chunks(session, chunk_size):
        contacts = session.scalars(
            sa.select(Contact).where(Contact.id.in_(ids)).order_by(Contact.id)
        ).all()
        for contact in contacts:
            try:
                _apply_one(session, action, contact, campaign, actor=actor, stop_reason=stop_reason)
            except EnrollmentError as refused:
                result.refuse(str(refused))
            else:
                result.done += 1
        session.flush()
        yield result
