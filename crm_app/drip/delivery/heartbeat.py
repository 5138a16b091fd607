"""When the scheduler last finished a tick: written by each tick, read by the health
check."""

from __future__ import annotations

from datetime import datetime

from crm_app.drip.common.sql import dialect_insert
from crm_app.models import SystemState

LAST_TICK_KEY = "last_tick_at"


def write_heartbeat(session, now: datetime) -> None:
    insert = dialect_insert(session)
    statement = insert(SystemState.__table__).values(
        key=LAST_TICK_KEY, value=now.isoformat(), updated_at=now
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["key"], set_={"value": statement.excluded.value, "updated_at": now}
        )
    )


def last_tick_at(session) -> datetime | None:
    """When the scheduler last finished a tick (for the health check)."""
    state = session.get(SystemState, LAST_TICK_KEY)
    return state.updated_at if state is not None else None
