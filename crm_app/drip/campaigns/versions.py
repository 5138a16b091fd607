"""An email's version history: every saved text is a version (subject, HTML, plain
text, who, when); any two compare side by side; restoring one saves it as a new
version. Each sent message names the version it used (messages.step_id and
template_version), so the message pages link here. Callers commit."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from crm_app.models import CampaignStep, StepVersion, utcnow

DIFF_FIELDS = (("subject", "Subject"), ("body_html", "HTML body"), ("body_text", "Plain-text body"))


def record_version(
    session, step: CampaignStep, *, actor: str, note: str = "", now: datetime | None = None
) -> StepVersion:
    """The step's text as it is now, as version `step.version`."""
    version = StepVersion(
        step=step,
        version=step.version,
        subject=step.subject,
        body_html=step.body_html,
        body_text=step.body_text,
        saved_by=actor,
        saved_at=now or utcnow(),
        note=note,
    )
    session.add(version)
    return version


def versions_of(session, step: CampaignStep) -> list[StepVersion]:
    """Newest first."""
    return list(
        session.scalars(
            sa.select(StepVersion)
            .where(StepVersion.step_id == step.id)
            .order_by(StepVersion.version.desc())
        )
    )


def version_of(session, step_id: int, number: int) -> StepVersion | None:
    return session.scalar(
        sa.select(StepVersion).where(StepVersion.step_id == step_id, StepVersion.version == number)
    )


# ---------------------------------------------------------------- diff


@dataclass(frozen=True)
class DiffRow:
    """One line of a side-by-side diff; a side is None where the other has a line alone.
    kind: "same", "changed", "removed" (left only), "added" (right only), or "folded"
    (unchanged lines left out; `left` says how many)."""

    kind: str
    left_number: int | None
    left: str | None
    right_number: int | None
    right: str | None


@dataclass
class FieldDiff:
    label: str
    rows: list[DiffRow] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(row.kind not in ("same", "folded") for row in self.rows)


def _side_by_side(before: str, after: str) -> list[DiffRow]:
    """Line pairs from difflib's opcodes: a replaced block pairs its lines in order, and
    the longer side's extra lines stand alone. Plain text: the template escapes it."""
    left, right = before.splitlines(), after.splitlines()
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        span = max(i2 - i1, j2 - j1)
        for k in range(span):
            i, j = i1 + k, j1 + k
            has_left, has_right = i < i2, j < j2
            if tag == "equal":
                kind = "same"
            elif has_left and has_right:
                kind = "changed"
            else:
                kind = "removed" if has_left else "added"
            rows.append(
                DiffRow(
                    kind,
                    i + 1 if has_left else None,
                    left[i] if has_left else None,
                    j + 1 if has_right else None,
                    right[j] if has_right else None,
                )
            )
    return rows


def _fold_unchanged(rows: list[DiffRow], context: int) -> list[DiffRow]:
    """Keep `context` unchanged lines around each change; a longer unchanged run becomes
    one "folded" row saying how many lines it hides (long emails, phone screens)."""
    near = set()
    for index, row in enumerate(rows):
        if row.kind != "same":
            near.update(range(index - context, index + context + 1))
    folded: list[DiffRow] = []
    hidden = 0
    for index, row in enumerate(rows):
        if row.kind == "same" and index not in near:
            hidden += 1
            continue
        if hidden:
            folded.append(DiffRow("folded", None, f"{hidden} unchanged line(s)", None, None))
            hidden = 0
        folded.append(row)
    if hidden:
        folded.append(DiffRow("folded", None, f"{hidden} unchanged line(s)", None, None))
    return folded


def diff_versions(older: StepVersion, newer: StepVersion, context: int = 2) -> list[FieldDiff]:
    """Subject, HTML and plain text of two versions, line by line, side by side, each
    change with `context` unchanged lines around it."""
    return [
        FieldDiff(
            label,
            _fold_unchanged(_side_by_side(getattr(older, name), getattr(newer, name)), context),
        )
        for name, label in DIFF_FIELDS
    ]
