from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, postgresql_only, utcnow

CONTACT_TYPES = ("networking", "lead", "prospect", "client")
# Why a contact may no longer be mailed; "ok" is the only mailable state.
EMAIL_STATUSES = ("ok", "unsubscribed", "bounced", "complained")
# What the contact list's search reads: names, email, company, title, industry and the
# custom fields (as their JSON text), lower-cased. A generated column, so the database
# keeps it right whoever writes the row (the form, an import's bulk insert, a COPY); on
# PostgreSQL a trigram index (migration 0009) serves "%tanaka%" without reading every
# contact.
SEARCH_TEXT_SQL = (
    "lower(first_name || ' ' || last_name || ' ' || email || ' ' || company || ' ' || title"
    " || ' ' || industry || ' ' || CAST(custom_fields AS TEXT))"
)


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
    contact_type: Mapped[str] = mapped_column(sa.String(20))
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
    # Never loaded with the contact: only queries read it.
    search_text: Mapped[str | None] = mapped_column(
        sa.Text, sa.Computed(SEARCH_TEXT_SQL, persisted=True), deferred=True
    )

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
        # One index per order the contact list offers (crm_app/drip/audience/contact_list.py),
        # each ending in the id so that every order is total and pages can continue from a
        # row (keyset) instead of counting past all the rows before it.
        sa.Index("ix_contacts_name_order", sa.func.lower(last_name), sa.func.lower(first_name), id),
        # Also serves the type filter, in name order.
        sa.Index(
            "ix_contacts_type_name_order",
            contact_type,
            sa.func.lower(last_name),
            sa.func.lower(first_name),
            id,
        ),
        sa.Index("ix_contacts_email_order", sa.func.lower(email), id),
        sa.Index(
            "ix_contacts_company_order",
            sa.func.lower(company),
            sa.func.lower(last_name),
            sa.func.lower(first_name),
            id,
        ),
        sa.Index("ix_contacts_created_order", created_at, id),
        # Substring search (ILIKE '%...%') on PostgreSQL; SQLite reads the rows.
        postgresql_only(
            sa.Index(
                "ix_contacts_search_trgm",
                search_text,
                postgresql_using="gin",
                postgresql_ops={"search_text": "gin_trgm_ops"},
            )
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
