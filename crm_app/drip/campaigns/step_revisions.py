"""The revision an email's editor was opened at, and the save it refuses: one made
after someone else saved the email (two tabs, two colleagues) would undo their change
without anyone seeing it. Nothing is saved; the form shows what changed."""

from __future__ import annotations

import sqlalchemy as sa

from crm_app.drip.campaigns.impact import days
from crm_app.drip.campaigns.versions import version_of
from crm_app.drip.common.labels import actor_label
from crm_app.models import CampaignStep


class StepChangedMeanwhile(Exception):
    """Someone else saved the email after this form was opened: saving it would undo
    their change without anyone seeing it. Nothing was saved; `step` is read afresh."""

    def __init__(self, step: CampaignStep, opened_version: int, opened_delay: int, saved_by: str):
        self.step = step
        self.opened_version = opened_version
        self.text_changed = step.version != opened_version
        changes = []
        if self.text_changed:
            by = f", saved by {actor_label(saved_by)}" if saved_by else ""
            changes.append(
                f"its text is now version {step.version}{by} (you opened version {opened_version})"
            )
        if step.delay_days != opened_delay:
            changes.append(
                f"its delay is now {days(step.delay_days)} (you opened it at {days(opened_delay)})"
            )
        self.message = (
            "This email was changed by someone else since you opened it: "
            f"{'; '.join(changes) or 'it was saved again'}. Nothing was saved."
        )
        super().__init__(self.message)


def step_revision(step: CampaignStep) -> str:
    """What the editor's form carries: the text version and the delay it shows. Every
    saved text is a new version; a new delay alone is not, so it is part of it too."""
    return f"{step.version}-{step.delay_days}"


def _opened_at(revision: str) -> tuple[int, int]:
    version, _, delay = revision.partition("-")
    try:
        return int(version), int(delay)
    except ValueError:
        return -1, -1  # not one step_revision made: matches no saved email


def refuse_if_changed_meanwhile(session, step: CampaignStep, revision: str) -> None:
    """StepChangedMeanwhile unless the email is still at `revision`. The comparison is
    the UPDATE's WHERE, which also takes the row's lock (PostgreSQL; SQLite's write
    lock) until the commit: of two saves of one revision at once, the second waits,
    then finds the first's and is refused, instead of both passing a check made apart."""
    if not revision:
        return
    version, delay = _opened_at(revision)
    table = CampaignStep.__table__
    unchanged = table.c.version == version, table.c.delay_days == delay
    claimed = session.execute(
        sa.update(table)
        .where(table.c.id == step.id, *unchanged)
        .values(updated_at=table.c.updated_at)  # a no-op write: only the lock and the test
    ).rowcount
    session.refresh(step)  # what the other save left, when there was one
    if not claimed:
        latest = version_of(session, step.id, step.version) if step.version != version else None
        raise StepChangedMeanwhile(step, version, delay, latest.saved_by if latest else "")
