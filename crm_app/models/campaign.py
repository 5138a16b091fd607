from __future__ import annotations

from datetime import datetime, time

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow

CAMPAIGN_STATUSES = ("active", "paused", "archived")
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
    # A human reply to one of its emails ends the contact's enrolment (automatic replies
    # such as out-of-office never do).
    stop_on_reply: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
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
    # Bumped on every saved change; each sent message records the one it used.
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    campaign = relationship("Campaign", back_populates="steps")

    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "position", name="uq_campaign_steps_position"),
        sa.CheckConstraint("delay_days >= 0", name="delay_days"),
    )
