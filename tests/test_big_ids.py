"""Ids past the database's INTEGER (2^31 on PostgreSQL, 2^63 on SQLite: no row can have
one) are "not found", never a database error."""

from __future__ import annotations

import sqlalchemy as sa

from crm_app.drip.common.ids import MAX_ID
from crm_app.models import EmailEvent
from crm_app.web.converters import DatabaseIdConverter
from tests import test_webhook
from tests.test_webhook import event, post

# The Event Webhook's fixtures: a signing key the app trusts, and a sent message.
signer = test_webhook.signer
sent_message = test_webhook.sent_message

PAST_POSTGRESQL = str(2**31)
HUGE = str(2**63)
HUGER = "9" * 40


def test_every_int_in_a_url_is_bounded_by_the_largest_id(app):
    int_rules = [
        (rule.rule, converter)
        for rule in app.url_map.iter_rules()
        for converter in (rule._converters or {}).values()
        if isinstance(converter, DatabaseIdConverter)
        or type(converter).__name__ == "IntegerConverter"
    ]
    assert int_rules, "no <int:...> route found"
    for rule, converter in int_rules:
        assert isinstance(converter, DatabaseIdConverter) and converter.max == MAX_ID, rule


def test_huge_ids_in_urls_are_404_for_pages_and_actions(admin, make_contact):
    contact = make_contact("lead")
    for huge in (PAST_POSTGRESQL, HUGE, HUGER):
        for url in (
            f"/contacts/{huge}",
            f"/contacts/{huge}/edit",
            f"/campaigns/{huge}",
            f"/campaigns/{huge}/steps/{huge}/preview",
            f"/analytics/campaigns/{huge}",
            f"/analytics/campaigns/{huge}.csv",
            f"/admin/outbox/{huge}",
            f"/admin/rq/{huge}/view/queues",
        ):
            assert admin.get(url).status_code == 404, url
        for url in (
            f"/contacts/{contact.id}/enrollments/{huge}/stop",
            f"/admin/messages/{huge}/retry",
            f"/campaigns/{huge}/status",
        ):
            assert admin.post(url, {"status": "paused"}).status_code == 404, url
    assert admin.get(f"/contacts/{MAX_ID}").status_code == 404  # the largest id: a query


def test_a_huge_owner_id_in_the_contact_form_is_a_message_next_to_the_field(admin, campaigns):
    response = admin.post(
        "/contacts/new",
        {"email": "big@example.com", "contact_type": "lead", "timezone": "UTC", "owner_id": HUGE},
    )
    assert response.status_code == 422
    assert 'id="error-owner_id">Unknown owner.' in response.get_data(as_text=True)


def test_a_huge_campaign_id_in_the_enrol_form_is_refused_with_a_message(admin, make_contact):
    contact = make_contact("lead")
    response = admin.post(f"/contacts/{contact.id}/enrollments", {"campaign_id": HUGER}, htmx=True)
    assert response.status_code == 200  # the panel, with the refusal in it
    assert "Choose a campaign to enrol in." in response.get_data(as_text=True)


def test_a_signed_event_with_a_huge_message_id_is_rejected_and_the_batch_still_applies(
    web, signer, session, sent_message
):
    forged_id = event("open", None, n=2, message_id=HUGER)
    response = post(web, signer, [event("delivered", sent_message), forged_id])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"received": 2, "applied": 1, "duplicates": 0, "rejected": 1}
    rejected = session.scalar(sa.select(EmailEvent).where(EmailEvent.outcome == "rejected"))
    assert rejected.detail == "message_id out of range"


def test_huge_ids_in_query_strings_and_forms_are_ignored_not_a_500(admin, campaigns):
    campaign = campaigns["lead"]
    step = campaign.steps[0]
    base = f"/campaigns/{campaign.id}/steps/{step.id}"
    for huge in (PAST_POSTGRESQL, HUGE, HUGER):
        assert admin.get(f"{base}/preview?contact_id={huge}").status_code == 200
        compare = admin.get(f"{base}/versions/compare?a=1&b={huge}")
        assert compare.status_code in (302, 404)
        assert compare.status_code != 500
