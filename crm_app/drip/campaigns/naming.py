"""How an email is named for people: its subject rendered for the sample contact, never
its template source. The one source of every name an email gets: campaign page
headings, analytics tables and CSV, flash messages, timeline rows."""

from __future__ import annotations

from functools import lru_cache

from crm_app.drip.campaigns.rendering import (
    SAMPLE_CONTACT,
    SAMPLE_SENDER,
    TemplateRenderError,
    build_context,
    render_email,
)
from crm_app.models import CampaignStep

UNRENDERABLE = "(its subject cannot be rendered)"


@lru_cache(maxsize=4096)
def subject_title(subject_source: str) -> str:
    """The subject as the sample contact would read it (cached per source: analytics
    and the timeline name the same few emails over and over)."""
    context = build_context(SAMPLE_CONTACT, SAMPLE_SENDER)
    try:
        return render_email(subject_source, "", "", context).subject or UNRENDERABLE
    except TemplateRenderError:
        return UNRENDERABLE


def step_title(step: CampaignStep) -> str:
    return subject_title(step.subject)


def email_name(
    position: int | None, campaign_name: str, subject_source: str | None, title: str = ""
) -> str:
    """'Email 2 of Lead “How a project with us usually begins”'; an email whose step
    was removed from the campaign has neither position nor subject any more. `title`:
    the subject already rendered (for one contact), instead of the sample contact's."""
    if position is None or subject_source is None:
        return f"A removed email of {campaign_name}"
    return f"Email {position} of {campaign_name} “{title or subject_title(subject_source)}”"


def step_name(step: CampaignStep, title: str = "") -> str:
    return email_name(step.position, step.campaign.name, step.subject, title)
