"""What admins look at: failed and in-doubt messages, and the Outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from crm_app.drip.common.paging import Page, paginate
from crm_app.models import EmailEvent, Message, utcnow

ADMIN_LISTS = ("failed", "in_doubt")
OUTBOX_PREFIX = "outbox-"


@dataclass
class MessageRow:
    message: Message
    # In doubt and SendGrid has said nothing about it for a while: likely never arrived.
    no_trace: bool = False


def _page(session, where, order, page: int, per_page: int) -> Page[Message]:
    return paginate(
        session,
        sa.select(Message)
        .options(
            joinedload(Message.contact),
            joinedload(Message.campaign),
            joinedload(Message.step),
            joinedload(Message.variant),  # its key beside the email's name, in the same query
        )
        .where(*where)
        .order_by(*order),
        page=page,
        per_page=per_page,
    )


def admin_message_list(
    session,
    status: str,
    *,
    page: int = 1,
    per_page: int = 50,
    no_trace_after: timedelta = timedelta(hours=2),
    now: datetime | None = None,
) -> Page[MessageRow]:
    """Failed or in-doubt messages, oldest problem first."""
    if status not in ADMIN_LISTS:
        raise ValueError(f"unknown list {status!r}")
    now = now or utcnow()
    result = _page(
        session, [Message.status == status], [Message.claimed_at, Message.id], page, per_page
    )
    traced: set[int] = set()
    if status == "in_doubt" and result.items:
        traced = set(
            session.scalars(
                sa.select(EmailEvent.message_id)
                .where(EmailEvent.message_id.in_([m.id for m in result.items]))
                .distinct()
            )
        )
    rows = [
        MessageRow(
            m,
            no_trace=(
                status == "in_doubt"
                and m.id not in traced
                and (m.claimed_at or m.created_at) < now - no_trace_after
            ),
        )
        for m in result.items
    ]
    return Page(rows, result.total, result.page, result.per_page)


def outbox_page(session, *, page: int = 1, per_page: int = 50) -> Page[Message]:
    """Messages the OutboxBackend kept instead of sending, newest first."""
    return _page(
        session,
        [Message.provider_message_id.startswith(OUTBOX_PREFIX)],
        [Message.sent_at.desc(), Message.id.desc()],
        page,
        per_page,
    )
