from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow

CONTACT_TYPES = ("networking", "lead", "prospect", "client")
# Why a contact may no longer be mailed; "ok" is the only mailable state.
EMAIL_STATUSES = ("ok", "unsubscribed", "bounced", "complained")


class Contact(db.Model):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(sa.String(100), default="")
    last_name: Mapped[str] = mapped_column(sa.String(100), default="")
    email: Mapped[str] = mapped_column(sa.String(254))
    phone: Mapped[str] = mapped_column(sa.String(40), default="")
    company: Mapped[str] = mapped_column(sa.String(200), default="")
    title: Mapped[str] = mapped_column(sa.String(200), default="")
    industry: Mapped[str] = mapped_column(sa.String(100), default="")
    contact_type: Mapped[str] = mapped_column(sa.String(20), index=True)
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    notes: Mapped[str] = mapped_column(sa.Text, default="")
    custom_fields: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    email_status: Mapped[str] = mapped_column(sa.String(20), default="ok")
    # Set when the person's data was erased (GDPR): the row stays, anonymised, for the
    # figures, and is never mailed again.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    owner = relationship("User")
    enrollments = relationship(
        "Enrollment", back_populates="contact", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        # Case-insensitive uniqueness lives in the schema, not only in the form.
        sa.Index("uq_contacts_email_lower", sa.func.lower(email), unique=True),
        # The few erased contacts: each webhook batch asks which of its contacts are.
        sa.Index(
            "ix_contacts_erased",
            "id",
            sqlite_where=sa.text("erased_at IS NOT NULL"),
            postgresql_where=sa.text("erased_at IS NOT NULL"),
        ),
        sa.CheckConstraint(
            "contact_type IN ('networking', 'lead', 'prospect', 'client')", name="contact_type"
        ),
        sa.CheckConstraint(
            "email_status IN ('ok', 'unsubscribed', 'bounced', 'complained')", name="email_status"
        ),
    )

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.email
