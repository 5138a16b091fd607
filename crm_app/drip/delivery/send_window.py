"""The send window at send time. The tick queues an email only inside its campaign's
window, but one queued near the close may wait behind others (a backlog, a slow pace
set for an IP warm-up) until the window has closed: it then waits for the next opening
rather than arriving at night, unless the window closed less than
SEND_WINDOW_GRACE_MINUTES ago (a queue minutes behind still sends).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from crm_app.drip.campaigns.schedule import clamp_to_send_window, is_inside_send_window
from crm_app.drip.delivery.frequency_cap import hold_until
from crm_app.models import Message


def window_reopens(message: Message, now: datetime, grace: timedelta) -> datetime | None:
    """When this email may go, if its window (the contact's clock) closed more than
    `grace` ago; None while it is open or closed only just."""
    campaign, zone = message.campaign, message.contact.timezone
    if is_inside_send_window(now, campaign, zone):
        return None
    if is_inside_send_window(now - grace, campaign, zone):
        return None
    return clamp_to_send_window(
        now, zone, campaign.send_weekdays, campaign.send_start, campaign.send_end
    )


def hold_for_window(session, message: Message, until: datetime, actor: str) -> bool:
    """queued -> skipped ("held by the send window until ..."), due again at the
    opening, as the frequency cap holds (frequency_cap.hold_until)."""
    reason = (
        f"held by the send window until {until:%Y-%m-%d %H:%M} UTC"
        " (it closed before the email could go)"
    )
    return hold_until(session, message, until, reason, actor)
