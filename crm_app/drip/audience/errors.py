"""Why an enrolment was refused: errors whose message is meant for the user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crm_app.models import Campaign, CampaignStep, Contact


class EnrollmentError(Exception):
    """A rule refused the action; the message is meant for the user."""


@dataclass(frozen=True)
class Repeat:
    """An email a restart would send again: when the contact got it, and when it would
    go again if the restart is confirmed now (each later delay counted as planned)."""

    step: CampaignStep
    received_at: datetime
    again_at: datetime
    subject: str  # as the contact received it


class RestartNeedsConfirmation(EnrollmentError):
    """The campaign restarts re-enrolled contacts from email 1, and this contact already
    received some of its emails: the caller must show them and confirm (restart=True)."""

    def __init__(self, contact: Contact, campaign: Campaign, repeats: list[Repeat], text: str):
        super().__init__(text)
        self.contact = contact
        self.campaign = campaign
        self.repeats = repeats


class EnrollmentConflict(EnrollmentError):
    """Refused because of the enrolment's current state: already enrolled, already ended
    (the API answers 409 Conflict)."""
