"""What admins look at: failed and in-doubt messages, and the Outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from crm_app.models import EmailEvent, Message, utcnow

ADMIN_LISTS = ("failed", "in_doubt")
OUTBOX_PREFIX = "outbox-"


@dataclass
class MessageRow:
    message: Message
    # In doubt and SendGrid has said nothing about it for a while: likely never arrived.
    no_trace: bool = False


@dataclass
class MessagePage:
    rows: list[MessageRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _page(session, where, order, page: int, per_page: int):
    total = session.scalar(sa.select(sa.func.count(Message.id)).where(*where)) or 0
    page = min(max(1, page), max(1, -(-total // per_page)))
    messages = list(
        session.scalars(
            sa.select(Message)
            .options(joinedload(Message.contact), joinedload(Message.campaign))
            .where(*where)
            .order_by(*order)
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    )
    return messages, total, page


def admin_message_list(
    session,
    status: str,
    *,
    page: int = 1,
    per_page: int = 50,
    no_trace_after: timedelta = timedelta(hours=2),
    now: datetime | None = None,
) -> MessagePage:
    """Failed or in-doubt messages, oldest problem first."""
    if status not in ADMIN_LISTS:
        raise ValueError(f"unknown list {status!r}")
    now = now or utcnow()
    messages, total, page = _page(
        session, [Message.status == status], [Message.claimed_at, Message.id], page, per_page
    )
    traced: set[int] = set()
    if status == "in_doubt" and messages:
        traced = set(
            session.scalars(
                sa.select(EmailEvent.message_id)
                .where(EmailEvent.message_id.in_([m.id for m in messages]))
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
        for m in messages
    ]
    return MessagePage(rows, total, page, per_page)


def outbox_page(session, *, page: int = 1, per_page: int = 50) -> MessagePage:
    """Messages the OutboxBackend kept instead of sending, newest first."""
    messages, total, page = _page(
        session,
        [Message.provider_message_id.startswith(OUTBOX_PREFIX)],
        [Message.sent_at.desc(), Message.id.desc()],
        page,
        per_page,
    )
    return MessagePage([MessageRow(m) for m in messages], total, page, per_page)
