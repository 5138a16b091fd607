"""Content blocks (admins): list, create, edit, delete (refused while a live email
uses the block). Previews of an email show which rule each block used."""

from __future__ import annotations

from flask import Blueprint, render_template, request, url_for

from crm_app.drip.experiments.blocks import (
    MAX_RULES,
    BlockError,
    RuleInput,
    all_blocks,
    delete_block,
    live_uses_by_block,
    save_block,
)
from crm_app.drip.experiments.rules import CONTACT_FIELDS, OPS
from crm_app.extensions import db
from crm_app.models import ContentBlock
from crm_app.web.auth import actor_name, admin_required
from crm_app.web.htmx import action_response

bp = Blueprint("blocks", __name__, url_prefix="/blocks")
RULE_ROWS = 5


@bp.get("/")
@admin_required
def index():
    blocks = list(all_blocks(db.session).values())
    uses = live_uses_by_block(db.session)
    return render_template("blocks/index.html", blocks=blocks, uses=uses)


def _rules_from_form() -> list[RuleInput]:
    return [
        RuleInput(
            request.form.get(f"rule-{n}-field", ""),
            request.form.get(f"rule-{n}-op", "is"),
            request.form.get(f"rule-{n}-value", ""),
            request.form.get(f"rule-{n}-content", ""),
        )
        for n in range(1, MAX_RULES + 1)
        if f"rule-{n}-field" in request.form
    ]


def _form_of(block: ContentBlock | None) -> dict[str, str]:
    if block is None:
        return {}
    form = {"name": block.name, "default_content": block.default_content}
    for n, rule in enumerate(block.rules or [], start=1):
        for part in ("field", "op", "value", "content"):
            form[f"rule-{n}-{part}"] = rule.get(part, "")
    return form


def _form_page(block: ContentBlock | None, form, errors=None, status: int = 200):
    rows = max(RULE_ROWS, len(block.rules or []) + 2 if block is not None else RULE_ROWS)
    return render_template(
        "blocks/form.html",
        block=block,
        form=form,
        errors=errors or {},
        rows=range(1, min(rows, MAX_RULES) + 1),
        fields=CONTACT_FIELDS,
        ops=OPS,
    ), status


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def new():
    return _save(None)


@bp.route("/<int:block_id>/edit", methods=["GET", "POST"])
@admin_required
def edit(block_id: int):
    return _save(db.get_or_404(ContentBlock, block_id))


def _save(block: ContentBlock | None):
    if request.method != "POST":
        return _form_page(block, _form_of(block))
    try:
        saved = save_block(
            db.session,
            block,
            request.form.get("name", ""),
            request.form.get("default_content", ""),
            _rules_from_form(),
            actor=actor_name(),
        )
    except BlockError as refused:
        db.session.rollback()
        return _form_page(block, request.form, refused.errors, 422)
    db.session.commit()
    return action_response(url_for("blocks.index"), f"Block {saved.name} saved.")


@bp.post("/<int:block_id>/delete")
@admin_required
def delete(block_id: int):
    block = db.get_or_404(ContentBlock, block_id)
    name = block.name
    try:
        delete_block(db.session, block, actor=actor_name())
    except BlockError as refused:
        db.session.rollback()
        return action_response(url_for("blocks.index"), refused.errors["delete"], "error")
    db.session.commit()
    return action_response(url_for("blocks.index"), f"Block {name} deleted.")
