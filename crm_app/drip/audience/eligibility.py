"""Who may be mailed: the one place the rule lives (the contact's email status, an
erasure, and the suppression list, whose erased addresses are kept only as hashes).
Enrolment refuses, and delivery skips, by this rule."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache

import sqlalchemy as sa

from crm_app.drip.audience.address_hash import address_hash, app_erasure_key, normalize_email
from crm_app.drip.common.sql import in_named_values, in_values, is_postgres
from crm_app.models import Contact, HashedSuppression, Suppression

# What a hashed entry's reason reads as when it blocks a contact.
ERASED_REASON = "erased"

# Why an address is on the suppression list, as people say it.
SUPPRESSION_REASON_LABELS = {
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed from a group",
    "bounce": "bounced",
    "dropped": "dropped by SendGrid",
    "spamreport": "reported as spam",
    "manual": "suppressed by staff",
}
# A contact's email status other than "ok": a short label, and the reason as a sentence.
EMAIL_STATUS_LABELS = {
    "unsubscribed": "unsubscribed",
    "bounced": "bounced",
    "complained": "reported as spam",
}
EMAIL_STATUS_REASONS = {
    "unsubscribed": "the contact unsubscribed",
    "bounced": "the contact's address bounced",
    "complained": "the contact reported an email as spam",
}


def suppression_reasons(
    session, emails: Iterable[str], *, hash_key: bytes | None = None
) -> dict[str, str]:
    """{lowercased address: suppression reason} for those of `emails` on the list, by
    address or by the hash of an erased address ("erased"): one query for a whole chunk
    of messages (pass it to `mailing_block_reason`). `hash_key`: the erasure key (see
    address_hash.py), else the running app's."""
    wanted = {normalize_email(email) for email in emails}
    if not wanted:
        return {}
    key = hash_key or app_erasure_key()
    by_hash = {address_hash(address, key): address for address in wanted}
    values = {"emails": list(wanted), "hashes": list(by_hash)}
    reasons: dict[str, str] = {}
    for value, reason in session.execute(_suppressions_statement(is_postgres(session)), values):
        if value in by_hash:  # a hash: 64 hex digits never look like an address
            reasons[by_hash[value]] = reason  # an erasure outranks any other reason
        else:
            reasons.setdefault(value, reason)
    return reasons


@cache
def _suppressions_statement(postgres: bool) -> sa.CompoundSelect:
    """Built once (a delivery chunk and a contact page each run it): the addresses and
    the hashes bound by name."""
    plain = sa.select(Suppression.email, Suppression.reason).where(
        in_named_values(postgres, Suppression.email, "emails")
    )
    hashed = sa.select(HashedSuppression.email_hash, HashedSuppression.reason).where(
        in_named_values(postgres, HashedSuppression.email_hash, "hashes")
    )
    return sa.union_all(plain, hashed)


@cache
def suppression_reason_column() -> sa.ColumnElement:
    """`suppression_reasons` for one address, as a column of another statement (the
    contact page reads it with its campaigns): the list's reason for the address bound
    as `address`, or its erasure hash bound as `address_hash`, which outranks it. Bind
    them with `suppression_values`."""
    plain = sa.select(Suppression.reason).where(Suppression.email == sa.bindparam("address"))
    hashed = sa.select(HashedSuppression.reason).where(
        HashedSuppression.email_hash == sa.bindparam("address_hash")
    )
    return sa.func.coalesce(hashed.scalar_subquery(), plain.scalar_subquery())


def suppression_values(email: str, *, hash_key: bytes | None = None) -> dict[str, str]:
    """The values `suppression_reason_column` is bound with, for this address."""
    address = normalize_email(email)
    return {
        "address": address,
        "address_hash": address_hash(address, hash_key or app_erasure_key()),
    }


def describe_suppression(reason: str) -> str:
    if reason == ERASED_REASON:
        return "the address was erased at the person's request (GDPR)"
    label = SUPPRESSION_REASON_LABELS.get(reason, reason)
    return f"the address is on the suppression list ({label})"


def mailing_block_reason(
    session,
    contact: Contact,
    *,
    suppressions: Mapping[str, str] | None = None,
    hash_key: bytes | None = None,
) -> str | None:
    """Why this contact may not be mailed, or None. The one place this rule lives.

    `suppressions`: the suppression list already read for this contact's address
    (`suppression_reasons`), instead of one query here. The list's reason comes first:
    an address an admin suppressed reads "suppressed by staff", not "unsubscribed"."""
    if contact.erased_at is not None:
        return "the contact's personal data was erased"
    if suppressions is None:
        suppressions = suppression_reasons(session, [contact.email], hash_key=hash_key)
    suppressed = suppressions.get(normalize_email(contact.email))
    if suppressed is not None:
        return describe_suppression(suppressed)
    if contact.email_status != "ok":
        return EMAIL_STATUS_REASONS.get(contact.email_status, contact.email_status)
    return None


def not_mailed_label(
    email_status: str, suppression_reason: str | None, *, erased: bool = False
) -> str | None:
    """Why a contact is not mailed, in a word or two (the contact list's marker, the
    contact page's status), or None when it may be mailed: the same rule as
    `mailing_block_reason`, in its order, from values a list query has already read
    (`erased`: the contact's erased_at is set)."""
    if erased:
        return ERASED_REASON
    if suppression_reason is not None:
        return SUPPRESSION_REASON_LABELS.get(suppression_reason, suppression_reason)
    if email_status != "ok":
        return EMAIL_STATUS_LABELS.get(email_status, email_status)
    return None


def erased_addresses(session, emails: Iterable[str], *, hash_key: bytes | None = None) -> set[str]:
    """Those of `emails` (normalised) whose hash is on the list: addresses of erased
    people, which must not be written down again in plain text. One query."""
    key = hash_key or app_erasure_key()
    by_hash = {address_hash(email, key): normalize_email(email) for email in emails}
    if not by_hash:
        return set()
    found = session.scalars(
        sa.select(HashedSuppression.email_hash).where(
            in_values(session, HashedSuppression.email_hash, by_hash)
        )
    )
    return {by_hash[value] for value in found}
