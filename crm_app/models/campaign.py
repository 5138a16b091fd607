from __future__ import annotations

from datetime import datetime, time

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow

CAMPAIGN_STATUSES = ("active", "paused", "archived")
# What a second enrolment of a contact in a campaign does (crm_app/drip/audience/reentry.py).
REENTRY_RULES = ("resume", "restart", "never")
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class Campaign(db.Model):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(60), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    # The contact type mapped to this campaign (at most one campaign per type).
    contact_type: Mapped[str | None] = mapped_column(sa.String(20), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    # Send window, in the contact's time zone: weekdays as "0,1,2,3,4" (Mon=0).
    send_days: Mapped[str] = mapped_column(sa.String(20), default="0,1,2,3,4")
    send_start: Mapped[time] = mapped_column(sa.Time, default=time(9, 0))
    send_end: Mapped[time] = mapped_column(sa.Time, default=time(17, 0))
    goal_contact_type: Mapped[str] = mapped_column(sa.String(20), default="")
    goal_days: Mapped[int] = mapped_column(sa.Integer, default=60)
    reentry: Mapped[str] = mapped_column(sa.String(16), default="resume", server_default="resume")
    # A human reply to one of its emails ends the contact's enrolment (automatic replies
    # such as out-of-office never do).
    stop_on_reply: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    # Exit goals: recorded goal events (names, one per line) that end an enrolment as
    # converted; with goal_contact_type (the contact reaching that type) the other way.
    goal_events: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    # Circuit breaker (drip/delivery/breaker.py): over its last `breaker_sends` sends
    # (0: off), a bounce share above breaker_bounce_pct or a spam-report share above
    # breaker_spam_pct (Gmail's line for bulk senders) pauses the campaign by itself.
    breaker_sends: Mapped[int] = mapped_column(sa.Integer, default=200, server_default="200")
    breaker_bounce_pct: Mapped[float] = mapped_column(sa.Float, default=5.0, server_default="5")
    breaker_spam_pct: Mapped[float] = mapped_column(sa.Float, default=0.3, server_default="0.3")
    # Why, by whom and when it was last paused (cleared when it is active again).
    paused_reason: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    paused_by: Mapped[str] = mapped_column(sa.String(120), default="", server_default="")
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The breaker counts sends from here on: set when an admin resumes a campaign it
    # paused, so the bounces that tripped it do not trip it again at the next event.
    breaker_counts_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when an admin edits the campaign: `flask seed` never overwrites it then.
    customized: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    steps = relationship(
        "CampaignStep",
        back_populates="campaign",
        order_by="CampaignStep.position",
        cascade="all, delete-orphan",
    )

    __table_args__ = (
        sa.CheckConstraint("status IN ('active', 'paused', 'archived')", name="status"),
        sa.CheckConstraint("send_start < send_end", name="send_window"),
        sa.CheckConstraint("reentry IN ('resume', 'restart', 'never')", name="reentry"),
    )

    @property
    def send_weekdays(self) -> set[int]:
        return {int(d) for d in self.send_days.split(",") if d.strip()}

    @property
    def send_window_label(self) -> str:
        days = ", ".join(WEEKDAY_NAMES[d] for d in sorted(self.send_weekdays))
        return f"{days} {self.send_start:%H:%M}-{self.send_end:%H:%M}"


class CampaignStep(db.Model):
    __tablename__ = "campaign_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(sa.Integer)  # 1-based
    delay_days: Mapped[int] = mapped_column(sa.Integer, default=0)
    subject: Mapped[str] = mapped_column(sa.String(300))
    body_html: Mapped[str] = mapped_column(sa.Text)
    body_text: Mapped[str] = mapped_column(sa.Text)
    # Bumped on every saved change (each one is a StepVersion row); each sent message
    # records the one it used (messages.step_id + template_version).
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    # "Send only if" (crm_app/drip/experiments/conditions.py): None sends always.
    condition: Mapped[dict | None] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    campaign = relationship("Campaign", back_populates="steps")
    versions = relationship(
        "StepVersion",
        back_populates="step",
        order_by="StepVersion.version.desc()",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "position", name="uq_campaign_steps_position"),
        sa.CheckConstraint("delay_days >= 0", name="delay_days"),
    )


class StepVersion(db.Model):
    """One saved state of an email: what it said, who saved it and when."""

    __tablename__ = "campaign_step_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[int] = mapped_column(sa.ForeignKey("campaign_steps.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(sa.Integer)
    subject: Mapped[str] = mapped_column(sa.String(300))
    body_html: Mapped[str] = mapped_column(sa.Text)
    body_text: Mapped[str] = mapped_column(sa.Text)
    saved_by: Mapped[str] = mapped_column(sa.String(120), default="system")
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # How it came to be, when not typed in the editor: "restored from version 2", "seeded".
    note: Mapped[str] = mapped_column(sa.String(200), default="")

    step = relationship("CampaignStep", back_populates="versions")

    __table_args__ = (
        # Also the index of a step's history list and of a message's link to its version.
        sa.UniqueConstraint("step_id", "version", name="uq_campaign_step_versions_step_version"),
    )
