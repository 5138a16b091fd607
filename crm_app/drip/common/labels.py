"""What people read instead of the words the code stores: actors ("user:ada@x.com",
"system:worker"), enrolment sources ("type_change"), timeline kinds ("email_open").
The pages show these through Jinja filters (crm_app/web/filters.py); the core writes
timeline details with them."""

from __future__ import annotations

# How a contact came to be enrolled (Enrollment.source).
ENROLLMENT_SOURCES = {
    "manual": "by hand",
    "type": "by type",
    "auto": "when created",
    "type_change": "after a type change",
    "bulk": "in a bulk action",
    "resume": "when the campaign resumed",
}
# Actors that are not a person.
SYSTEM_ACTORS = {
    "system": "the system",
    "system:worker": "the delivery worker",
    "system:scheduler": "the scheduler",
    "sendgrid:webhook": "SendGrid",
    "system:tick": "the scheduler",
    "system:circuit-breaker": "the circuit breaker",
    "system:in-doubt": "the in-doubt check",
    "anonymous": "someone signed out",
}
# Timeline kinds whose name does not read well with "_" turned into a space.
ACTIVITY_KINDS = {
    "email_processed": "accepted by SendGrid",
    "email_delivered": "delivered",
    "email_deferred": "deferred",
    "email_open": "opened",
    "email_click": "clicked",
    "email_bounce": "bounced",
    "email_dropped": "dropped",
    "email_spamreport": "spam report",
    "email_unsubscribe": "unsubscribed",
    "email_group_unsubscribe": "unsubscribed from a group",
    "email_group_resubscribe": "resubscribed to a group",
    "goal": "goal reached",
    "email_held": "held by the frequency cap",
    "email_requeued_no_trace": "queued again (no trace at SendGrid)",
}


def enrollment_source_label(source: str) -> str:
    return ENROLLMENT_SOURCES.get(source, source.replace("_", " "))


def actor_label(actor: str) -> str:
    """A person by their email address; the app's own processes by what they are."""
    if actor in SYSTEM_ACTORS:
        return SYSTEM_ACTORS[actor]
    kind, sep, name = actor.partition(":")
    if not sep:
        return actor.replace("_", " ").replace("sendgrid", "SendGrid")
    if kind == "user":
        return name
    if kind == "api":
        return f"API token {name}"
    return f"{name} ({kind})"


def activity_kind_label(kind: str) -> str:
    return ACTIVITY_KINDS.get(kind, kind.replace("_", " "))
