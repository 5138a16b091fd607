"""The workspace's sender (who speaks for contacts with no owner) and postal address
(every email's footer), set on the Settings page and read by every email and preview.

Read once per database session (kept in `session.info`): a delivery thread's session
lives for one batch, a web request's for one request, so a change is seen from the
next batch or request, and the save below refreshes the session that made it.
"""

from __future__ import annotations

from crm_app.config import Settings
from crm_app.drip.campaigns.rendering import (
    Signature,
    WorkspaceSender,
    sender_context,
    sender_from_name,
)
from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.team.audit import record_audit
from crm_app.models import User, WorkspaceSettings, utcnow
from crm_app.models.team import WORKSPACE_ROW_ID

SENDER_NAME_MAX = 120
SIGNATURE_MAX = 1000
POSTAL_ADDRESS_MAX = 500
_CACHE_KEY = "workspace_sender"


class WorkspaceSettingsError(FieldErrors):
    """Settings that cannot be saved; a message per field."""


def _row(session) -> WorkspaceSettings | None:
    return session.get(WorkspaceSettings, WORKSPACE_ROW_ID)


def workspace_sender(session, settings: Settings) -> WorkspaceSender:
    """The workspace's sender: the saved name and signature, MAIL_FROM_NAME until a
    name is saved; the address, company and website from the configuration."""
    cached = session.info.get(_CACHE_KEY)
    if cached is not None and cached[0] == settings:
        return cached[1]
    row = _row(session)
    sender = WorkspaceSender(
        name=(row.sender_name if row and row.sender_name else settings.mail_from_name),
        signature=row.sender_signature if row else "",
        email=settings.mail_from_email,
        company=settings.sender_company,
        website=settings.sender_website,
        postal_address=row.postal_address if row else "",
        footer_name=settings.sender_company or settings.mail_from_name,
    )
    session.info[_CACHE_KEY] = (settings, sender)
    return sender


def sender_preview(session, owner: User | None, settings: Settings) -> tuple[str, Signature]:
    """("Name <address>", signature) of the emails `owner`'s contacts get (None: contacts
    with no owner), by the one sender rule: what the Profile and Settings pages show."""
    workspace = workspace_sender(session, settings)
    from_line = f"{sender_from_name(owner, workspace)} <{workspace.email}>"
    return from_line, sender_context(owner, workspace)["signature"]


def saved_sender_settings(session) -> dict[str, str]:
    """What the Settings form shows: the saved values ("" when not set)."""
    row = _row(session)
    return {
        "sender_name": (row.sender_name or "") if row else "",
        "sender_signature": row.sender_signature if row else "",
        "postal_address": row.postal_address if row else "",
    }


def _lines(text: str | None) -> str:
    return "\n".join(line.strip() for line in (text or "").strip().splitlines() if line.strip())


def save_sender_settings(session, values, *, actor: User) -> list[str]:
    """Save the workspace's sender name, signature and postal address (an empty name:
    back to MAIL_FROM_NAME); returns the labels of what changed. Raises
    WorkspaceSettingsError."""
    name = " ".join((values.get("sender_name") or "").split())
    signature = (values.get("sender_signature") or "").strip().replace("\r\n", "\n")
    postal_address = _lines(values.get("postal_address"))
    errors = {}
    if len(name) > SENDER_NAME_MAX:
        errors["sender_name"] = f"At most {SENDER_NAME_MAX} characters."
    if len(signature) > SIGNATURE_MAX:
        errors["sender_signature"] = f"At most {SIGNATURE_MAX} characters."
    if len(postal_address) > POSTAL_ADDRESS_MAX:
        errors["postal_address"] = f"At most {POSTAL_ADDRESS_MAX} characters."
    if errors:
        raise WorkspaceSettingsError(errors)
    row = _row(session) or WorkspaceSettings(id=WORKSPACE_ROW_ID)
    changed = [
        label
        for label, old, new in (
            ("name", row.sender_name or "", name),
            ("signature", row.sender_signature or "", signature),
            ("postal address", row.postal_address or "", postal_address),
        )
        if old != new
    ]
    if changed:
        row.sender_name = name or None
        row.sender_signature = signature
        row.postal_address = postal_address
        row.updated_at = utcnow()
        row.updated_by_id = actor.id
        session.add(row)
        shown = f"now “{name}”" if name else "from MAIL_FROM_NAME"
        summary = f"Changed the workspace's {', '.join(changed)} (sender name {shown})"
        record_audit(session, actor, "settings.sender", "settings", None, summary)
    session.info.pop(_CACHE_KEY, None)
    return changed
