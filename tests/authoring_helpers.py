"""Helpers of the authoring tests (re-entry, live edits, versions, the harness)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import sqlalchemy as sa

from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.models import Campaign, CampaignStep, Contact, Enrollment, utcnow
from tests.delivery_helpers import open_all_week


def step_form(step: CampaignStep) -> dict[str, str]:
    """The email editor's fields as the page fills them in for `step` (as text)."""
    return {
        "subject": step.subject,
        "body_html": step.body_html,
        "body_text": step.body_text,
        "delay_days": str(step.delay_days),
    }


def active_enrollment_of(session, contact: Contact, campaign: Campaign) -> Enrollment | None:
    session.expire_all()
    return session.scalar(
        sa.select(Enrollment).where(
            Enrollment.contact_id == contact.id,
            Enrollment.campaign_id == campaign.id,
            Enrollment.status == "active",
        )
    )


def send_next(session, contact: Contact, campaign: Campaign, backend, settings) -> list[int]:
    """Make the contact's enrolment in `campaign` due now, tick, and deliver what the
    tick queued (through `backend`): returns the ids of the messages it queued."""
    enrollment = active_enrollment_of(session, contact, campaign)
    open_all_week(enrollment.campaign)
    now = utcnow()
    enrollment.next_send_at = now - timedelta(seconds=1)
    session.commit()
    ids = run_tick(session, lambda ids: None, now=now).enqueued
    deliver_messages(session, ids, backend, settings)
    session.expire_all()
    return ids


def sends_per_email(fake_sendgrid) -> Counter:
    """How many times each (address, step id) reached the fake SendGrid."""
    return Counter(
        (payload["personalizations"][0]["to"][0]["email"], payload["custom_args"]["step_id"])
        for payload in fake_sendgrid.requests
        if "step_id" in payload.get("custom_args", {})
    )


def step_ids(steps: list[CampaignStep]) -> list[int]:
    return [step.id for step in steps]
