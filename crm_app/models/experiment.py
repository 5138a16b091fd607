"""A/B variants of an email and reusable content blocks (crm_app/drip/experiments/)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow

VARIANT_KEYS = ("A", "B", "C", "D")


class StepVariant(db.Model):
    """One variant of an email in an A/B test. A blank subject or body sends the email's
    own. Never deleted while its step lives: the messages that used it point at it
    (messages.variant_id), so its results outlive the test."""

    __tablename__ = "step_variants"

    id: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[int] = mapped_column(sa.ForeignKey("campaign_steps.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(1))
    weight: Mapped[int] = mapped_column(sa.Integer)  # percent; a test's weights add up to 100
    subject: Mapped[str] = mapped_column(sa.String(300), default="")
    body_html: Mapped[str] = mapped_column(sa.Text, default="")
    body_text: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the test ended (a winner promoted, or stopped): no new email gets it.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "promoted" on the winner, "stopped" or "lost" on the others.
    outcome: Mapped[str] = mapped_column(sa.String(20), default="")

    step = relationship("CampaignStep")

    __table_args__ = (
        sa.CheckConstraint("weight BETWEEN 1 AND 99", name="weight"),
        sa.Index("ix_step_variants_step_id", "step_id"),
    )


class ContentBlock(db.Model):
    """A named piece of text chosen per contact by its rules (the first that matches),
    else its default; used in any email as {{ block("name") }}. `rules` is a list of
    {"field", "op", "value", "content"} (crm_app/drip/experiments/blocks.py)."""

    __tablename__ = "content_blocks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(60), unique=True)
    rules: Mapped[list] = mapped_column(sa.JSON, default=list)
    default_content: Mapped[str] = mapped_column(sa.Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
