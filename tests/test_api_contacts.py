"""API: contacts, through the same core as the pages (rules, enrolment, timeline)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_app.models import Activity, Contact, Enrollment

PROBLEM = "application/problem+json"


def _activity(session, contact_id: int) -> list[tuple[str, str]]:
    return [
        tuple(row)
        for row in session.execute(
            sa.select(Activity.kind, Activity.actor)
            .where(Activity.contact_id == contact_id)
            .order_by(Activity.id)
        )
    ]


def test_create_enrols_by_type_with_the_token_as_the_actor(api, session, campaigns):
    response = api.post(
        "/api/v1/contacts",
        {"email": "Ann@Example.com", "contact_type": "lead", "first_name": "Ann",
         "custom_fields": {"plan": "pro"}},
    )  # fmt: skip

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert response.headers["Location"] == f"/api/v1/contacts/{body['id']}"
    assert body["email"] == "Ann@example.com" and body["custom_fields"] == {"plan": "pro"}
    (enrollment,) = body["enrollments"]
    assert (enrollment["campaign_name"], enrollment["status"], enrollment["enrolled_by"]) == (
        "Lead",
        "active",
        "api:crm-sync",
    )
    assert _activity(session, body["id"]) == [
        ("created", "api:crm-sync"),
        ("enrolled", "api:crm-sync"),
    ]


def test_create_with_a_known_email_updates_only_the_given_fields(api, session, make_contact):
    contact = make_contact("lead", email="bob@example.com", company="Initech", first_name="Bob")

    response = api.post("/api/v1/contacts", {"email": "BOB@example.com", "company": "Globex"})

    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == contact.id
    assert (body["company"], body["first_name"], body["contact_type"]) == ("Globex", "Bob", "lead")
    assert session.scalar(sa.select(sa.func.count(Contact.id))) == 1


def test_invalid_fields_are_a_422_problem_with_a_message_per_field(api, session, campaigns):
    response = api.post(
        "/api/v1/contacts",
        {"email": "not-an-email", "contact_type": "alien", "timezone": "Mars/Base"},
    )

    assert response.status_code == 422
    assert response.content_type == PROBLEM
    problem = response.get_json()
    assert problem["status"] == 422 and problem["title"] == "Unprocessable Entity"
    assert problem["type"].endswith(":validation") and problem["detail"]
    assert set(problem["errors"]) == {"email", "contact_type", "timezone"}
    assert all(isinstance(m, list) and m for m in problem["errors"].values())
    assert session.scalar(sa.select(sa.func.count(Contact.id))) == 0  # nothing saved


def test_wrong_shapes_are_a_422_problem_before_the_core(api, campaigns):
    response = api.post(
        "/api/v1/contacts", {"email": "a@example.com", "owner_id": "x", "favourite": 1}
    )

    assert response.status_code == 422 and response.content_type == PROBLEM
    assert set(response.get_json()["errors"]) == {"owner_id", "favourite"}


@pytest.mark.parametrize(
    ("custom_fields", "message"),
    [
        ({"my plan": "pro"}, 'The name "my plan" is not a field name'),
        ({"a:b": "v"}, 'The name "a:b" is not a field name'),
        ({"": "x"}, 'The name "" is not a field name'),
        ({"plan": "line one\nline two"}, 'The value of "plan" holds a line break'),
        ({"plan": "one\u2028two"}, 'The value of "plan" holds a line break'),
    ],
)
def test_custom_fields_the_contact_form_cannot_hold_are_a_422(
    api, admin, session, make_contact, custom_fields, message
):
    """Such a contact was saved, and then its edit form refused every save (or, for "a:b",
    saved it back as another field)."""
    contact = make_contact("lead", email="cf@example.com", custom_fields={"plan": "pro"})

    created = api.post(
        "/api/v1/contacts", {"email": "new@example.com", "custom_fields": custom_fields}
    )
    updated = api.patch(f"/api/v1/contacts/{contact.id}", {"custom_fields": custom_fields})

    for response in (created, updated):
        assert response.status_code == 422 and response.content_type == PROBLEM
        assert response.get_json()["errors"]["custom_fields"][0].startswith(message)
    assert session.scalar(sa.select(sa.func.count(Contact.id))) == 1
    # What the API does accept, the contact's form saves again as it is.
    accepted = api.patch(f"/api/v1/contacts/{contact.id}", {"custom_fields": {"zoë_1": "😀 שלום"}})
    assert accepted.status_code == 200
    form = {"email": "cf@example.com", "contact_type": "lead", "timezone": "UTC",
            "custom_fields": "zoë_1: 😀 שלום"}  # fmt: skip
    assert admin.post(f"/contacts/{contact.id}/edit", form).status_code == 302
    session.expire_all()
    assert session.get(Contact, contact.id).custom_fields == {"zoë_1": "😀 שלום"}


def test_a_line_break_in_a_one_line_field_is_a_422(api, admin, session, make_contact):
    """The contact form's inputs drop a line break: "Ann\\nMarie" was saved back as
    "AnnMarie" by the next edit of any field. The notes keep theirs."""
    contact = make_contact("lead", email="ann@example.com", first_name="Ann")

    created = api.post(
        "/api/v1/contacts",
        {
            "email": "new@example.com",
            "contact_type": "lead",
            "first_name": "Ann\nMarie",
            "company": "Acme\r\nLtd",
        },
    )
    updated = api.patch(f"/api/v1/contacts/{contact.id}", {"title": "Head of\nSales"})

    assert created.status_code == 422 and updated.status_code == 422
    assert set(created.get_json()["errors"]) == {"first_name", "company"}
    assert updated.get_json()["errors"]["title"] == ["One line only: remove the line break."]
    assert session.scalar(sa.select(sa.func.count(Contact.id))) == 1
    notes = api.patch(f"/api/v1/contacts/{contact.id}", {"notes": "Met at the fair.\nCall back."})
    assert notes.status_code == 200 and notes.get_json()["notes"] == "Met at the fair.\nCall back."
    # The same rule for the form (a browser cannot send one; a script can).
    form = {"email": "ann@example.com", "contact_type": "lead", "timezone": "UTC",
            "first_name": "Ann", "company": "Acme\nLtd"}  # fmt: skip
    page = admin.post(f"/contacts/{contact.id}/edit", form)
    assert page.status_code == 422
    assert 'id="error-company">One line only: remove the line break.' in page.get_data(as_text=True)


def test_a_missing_email_is_a_422_problem(api, campaigns):
    response = api.post("/api/v1/contacts", {"first_name": "Nobody"})

    assert response.status_code == 422
    assert "email" in response.get_json()["errors"]


def test_a_body_that_is_not_json_is_a_400_problem(api, campaigns):
    response = api.post(
        "/api/v1/contacts", data="{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400 and response.content_type == PROBLEM


def test_a_body_that_is_not_sent_as_json_is_a_415_problem_and_changes_nothing(api, make_contact):
    contact = make_contact("lead", first_name="Ann")
    body = '{"first_name": "Changed"}'
    for content_type in ("application/x-www-form-urlencoded", "text/plain"):
        response = api.request(
            "PATCH", f"/api/v1/contacts/{contact.id}", data=body,
            headers={"Content-Type": content_type},
        )  # fmt: skip

        assert response.status_code == 415 and response.content_type == PROBLEM
        assert "application/json" in response.get_json()["detail"]
    assert api.get(f"/api/v1/contacts/{contact.id}").get_json()["first_name"] == "Ann"
    # A call without a body needs no content type.
    assert api.request("DELETE", f"/api/v1/contacts/{contact.id}").status_code == 204
    document = api.get("/api/v1/openapi.json").get_json()
    assert "415" in document["paths"]["/api/v1/contacts/{contact_id}"]["patch"]["responses"]


def test_a_body_over_the_limit_is_a_413_problem(app, api, campaigns, monkeypatch):
    monkeypatch.setitem(app.config, "API_MAX_BODY_BYTES", 1000)

    response = api.post("/api/v1/contacts", {"email": "a@example.com", "notes": "x" * 2000})

    assert response.status_code == 413 and response.content_type == PROBLEM


def test_get_returns_the_contact_with_its_enrolments(api, make_contact):
    contact = make_contact("prospect", email="pat@example.com")

    response = api.get(f"/api/v1/contacts/{contact.id}")

    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] == "pat@example.com"
    assert [e["campaign_name"] for e in body["enrollments"]] == ["Prospect"]


def test_an_unknown_contact_is_a_404_problem(api, campaigns):
    response = api.get("/api/v1/contacts/999")

    assert response.status_code == 404 and response.content_type == PROBLEM
    assert response.get_json()["detail"] == "No contact has the id 999."


def test_an_unknown_path_or_method_is_a_problem_too(api, campaigns):
    assert api.get("/api/v1/nothing-here").content_type == PROBLEM
    response = api.request("PUT", "/api/v1/campaigns")
    assert response.status_code == 405 and response.content_type == PROBLEM


def test_patch_with_a_new_type_stops_the_old_campaign_and_enrols_in_the_new(
    api, session, make_contact
):
    contact = make_contact("lead", email="lee@example.com")

    response = api.patch(f"/api/v1/contacts/{contact.id}", {"contact_type": "client"})

    assert response.status_code == 200
    by_campaign = {e["campaign_name"]: e for e in response.get_json()["enrollments"]}
    assert by_campaign["Lead"]["status"] == "stopped"
    assert by_campaign["Lead"]["end_reason"] == "type changed to client"
    assert by_campaign["Client"]["status"] == "active"
    assert ("type_changed", "api:crm-sync") in _activity(session, contact.id)


def test_patch_refuses_a_taken_email(api, make_contact):
    make_contact("lead", email="one@example.com")
    other = make_contact("lead", email="two@example.com")

    response = api.patch(f"/api/v1/contacts/{other.id}", {"email": "ONE@example.com"})

    assert response.status_code == 422
    assert response.get_json()["errors"]["email"] == [
        "Another contact already has this email address."
    ]


def test_delete_removes_the_contact(api, session, make_contact):
    contact_id = make_contact("lead").id

    response = api.delete(f"/api/v1/contacts/{contact_id}")

    assert response.status_code == 204
    session.expire_all()
    assert session.scalar(sa.select(sa.func.count(Contact.id))) == 0
    assert session.scalar(sa.select(sa.func.count(Enrollment.id))) == 0
    assert api.delete(f"/api/v1/contacts/{contact_id}").status_code == 404


def test_list_pages_by_cursor_without_skipping_or_repeating(api, make_contact):
    ids = [make_contact("lead").id for _ in range(5)]

    seen, cursor = [], None
    while True:
        url = "/api/v1/contacts?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(url).get_json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        make_contact("lead")  # added meanwhile: at the end, not shifting the pages

    assert seen[:5] == ids and len(seen) == len(set(seen))


def test_list_filters_by_type_email_search_and_update_time(api, make_contact):
    make_contact("lead", email="lena@example.com", company="Acme")
    client = make_contact("client", email="carl@example.com", company="Globex")

    def ids(query: str) -> list[int]:
        return [c["id"] for c in api.get(f"/api/v1/contacts?{query}").get_json()["items"]]

    assert ids("type=client") == [client.id]
    assert ids("email=CARL@example.com") == [client.id]
    assert ids("q=globex") == [client.id]
    assert len(ids("updated_since=2000-01-01T00:00:00Z")) == 2
    assert ids("updated_since=2999-01-01T00:00:00Z") == []
    response = api.get("/api/v1/contacts?limit=1000")
    assert response.status_code == 422 and "limit" in response.get_json()["errors"]


def test_an_unknown_type_filter_is_a_422_listing_the_types(api, make_contact):
    make_contact("lead")
    for unknown in ("zzz", "Lead"):
        response = api.get(f"/api/v1/contacts?type={unknown}")
        assert response.status_code == 422, unknown
        assert response.content_type == PROBLEM
        assert response.get_json()["errors"] == {
            "type": ["Choose one of: networking, lead, prospect, client."]
        }


def test_numbers_and_times_past_the_databases_range_are_answered_not_a_500(api, make_contact):
    # Each was a 500 on PostgreSQL: ids are INTEGER there, and a UTC time past 9999.
    contact = make_contact("lead", email="lena@example.com")

    def ids(query: str) -> list[int]:
        response = api.get(f"/api/v1/contacts?{query}")
        assert response.status_code == 200, query
        return [c["id"] for c in response.get_json()["items"]]

    assert ids("cursor=2147483648") == [] and ids("cursor=99999999999999999999") == []
    assert ids("cursor=-99999999999") == [contact.id]
    assert ids("updated_since=0001-01-01T00:00:00%2B14:00") == [contact.id]
    assert ids("updated_since=9999-12-31T23:59:59-14:00") == []
    for owner_id in (2147483648, 99999999999999999999):
        response = api.patch(f"/api/v1/contacts/{contact.id}", {"owner_id": owner_id})
        assert response.status_code == 422
        assert response.get_json()["errors"] == {"owner_id": ["Unknown owner."]}


def test_a_read_token_reads(read_api, make_contact):
    make_contact("lead")

    assert read_api.get("/api/v1/contacts").status_code == 200
    assert read_api.get("/api/v1/campaigns").status_code == 200


def test_a_create_racing_another_for_the_same_new_email_updates_it(
    api, session, make_contact, monkeypatch
):
    from crm_app.drip.api import records

    # The other request created the contact after this one looked the address up.
    real_lookup, lookups = records.find_by_email, []

    def late_lookup(session, email):
        lookups.append(email)
        return None if len(lookups) == 1 else real_lookup(session, email)

    monkeypatch.setattr(records, "find_by_email", late_lookup)
    contact = make_contact("lead", email="race@example.com", first_name="Ann", company="Initech")

    response = api.post("/api/v1/contacts", {"email": "race@example.com", "company": "Globex"})

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["id"] == contact.id
    assert (body["company"], body["first_name"]) == ("Globex", "Ann")
    assert session.scalar(sa.select(sa.func.count(Contact.id))) == 1
    assert len(lookups) == 2  # the first missed it


def test_a_create_losing_the_insert_to_another_for_the_same_email_updates_it(
    api, session, campaigns, monkeypatch
):
    from crm_app.drip.audience import contacts

    # The other request committed between this one's checks and its insert: the unique
    # index refuses the row. SQLite cannot interleave so (it runs one writer at a time,
    # and a reader that fell behind a commit may not write).
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite serialises the two writers")
    real_validate, made = contacts.validate, []

    def validate_then_lose_the_race(s, data, existing=None):
        cleaned = real_validate(s, data, existing=existing)
        if not made:  # the other request, on its own connection
            monkeypatch.setattr(contacts, "validate", real_validate)
            with Session(s.get_bind()) as other:
                data = contacts.ContactInput(email="race@example.com", contact_type="lead")
                made.append(contacts.create_contact(other, data, actor="test").id)
                other.commit()
        return cleaned

    monkeypatch.setattr(contacts, "validate", validate_then_lose_the_race)

    response = api.post(
        "/api/v1/contacts",
        {"email": "race@example.com", "contact_type": "lead", "company": "Globex"},
    )

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["id"] == made[0]
    assert response.get_json()["company"] == "Globex"
    assert session.scalar(sa.select(sa.func.count(Contact.id))) == 1


def test_a_body_nested_too_deeply_is_a_400_like_any_malformed_json(api, make_contact):
    contact = make_contact("lead")
    deep = '{"email": "x@y.com", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    json_body = {"Content-Type": "application/json"}
    for method, url, body in (
        ("POST", "/api/v1/contacts", '{"email":'),
        ("POST", "/api/v1/contacts", deep),
        ("PATCH", f"/api/v1/contacts/{contact.id}", deep),
    ):
        response = api.request(method, url, data=body, headers=json_body)
        assert response.status_code == 400, (method, body[:20])
        assert response.content_type == PROBLEM
        assert response.get_json()["errors"] == {"body": ["Invalid JSON body."]}
