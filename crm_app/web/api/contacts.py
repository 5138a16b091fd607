"""API: contacts (create or upsert by email, read, update, delete, list)."""

from __future__ import annotations

from flask import abort, url_for

from crm_app.drip.api import records
from crm_app.drip.audience.contacts import ContactValidationError, delete_contact
from crm_app.extensions import db
from crm_app.models import Contact
from crm_app.web.api import bp, documented, idempotent
from crm_app.web.api.auth import current_token
from crm_app.web.api.problems import refused
from crm_app.web.api.schemas import (
    ContactCreate,
    ContactDetailOut,
    ContactFields,
    ContactList,
    ContactListQuery,
)


def contact_or_404(contact_id: int) -> Contact:
    contact = db.session.get(Contact, contact_id)
    if contact is None:
        abort(404, description=f"No contact has the id {contact_id}.")
    return contact


def detail(contact: Contact) -> Contact:
    """The contact with its enrolments, as this transaction left them."""
    db.session.flush()
    return records.contact_with_enrollments(db.session, contact.id)


@bp.route("/contacts", methods=["GET"], tags=["contacts"])
@bp.arguments(ContactListQuery, location="query", as_kwargs=True)
@bp.response(200, ContactList)
@documented(401, 429)
def list_contacts(limit, cursor=None, q="", contact_type="", email="", updated_since=None):
    """List contacts by id, a page at a time (cursor), with filters."""
    found = records.list_contacts(
        db.session,
        after_id=cursor,
        limit=limit,
        query=q,
        contact_type=contact_type,
        email=email,
        updated_since=updated_since,
    )
    return {"items": found.items, "next_cursor": found.next_cursor}


@bp.route("/contacts", methods=["POST"], tags=["contacts"])
@idempotent
@bp.arguments(ContactCreate)
@bp.response(201, ContactDetailOut, description="Created (and enrolled by its type)")
@bp.alt_response(200, schema=ContactDetailOut, description="Updated the contact with this email")
@documented(401, 403, 409, 413, 415, 422, 429)
def upsert_contact(fields):
    """Create a contact, enrolled in its type's campaign; an existing email is updated
    with the given fields instead."""
    try:
        contact, created = records.upsert_contact(db.session, fields, actor=current_token().actor)
    except ContactValidationError as invalid:
        return refused(invalid)
    location = url_for("api.get_contact", contact_id=contact.id)
    return detail(contact), 201 if created else 200, {"Location": location}


@bp.route("/contacts/<int:contact_id>", methods=["GET"], tags=["contacts"])
@bp.response(200, ContactDetailOut)
@documented(401, 404, 429)
def get_contact(contact_id: int):
    """A contact with its enrolments."""
    return detail(contact_or_404(contact_id))


@bp.route("/contacts/<int:contact_id>", methods=["PATCH"], tags=["contacts"])
@bp.arguments(ContactFields(partial=True))
@bp.response(200, ContactDetailOut)
@documented(401, 403, 404, 413, 415, 422, 429)
def update_contact(changes, contact_id: int):
    """Change the given fields. A new type stops the old type's campaign and enrols in
    the new one's."""
    contact = contact_or_404(contact_id)
    try:
        records.patch_contact(db.session, contact, changes, actor=current_token().actor)
    except ContactValidationError as invalid:
        return refused(invalid)
    return detail(contact)


@bp.route("/contacts/<int:contact_id>", methods=["DELETE"], tags=["contacts"])
@bp.response(204)
@documented(401, 403, 404, 429)
def remove_contact(contact_id: int):
    """Delete a contact, its enrolments and its timeline."""
    delete_contact(db.session, contact_or_404(contact_id), actor=current_token().actor)
    return ""
