"""The experiment pages: bad input refused next to the field with nothing saved, only
admins change anything (CSRF on every post), promotion and stopping, blocks that a live
email uses, the campaign page's warnings, goal events on the campaign form and from
the API."""

from __future__ import annotations

import sqlalchemy as sa

from crm_app.extensions import db
from crm_app.models import Campaign, ContentBlock, StepVariant, StepVersion


def _url(campaign, step, tail="experiment"):
    return f"/campaigns/{campaign.id}/steps/{step.id}/{tail}"


def _variants(a="Subject A", b="Subject B", wa="50", wb="50"):
    return {
        "variant-A-weight": wa,
        "variant-A-subject": a,
        "variant-B-weight": wb,
        "variant-B-subject": b,
    }


def _count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_bad_variants_are_shown_next_to_the_field_and_kept_in_the_form(admin, campaigns):
    campaign = campaigns["lead"]
    step = campaign.steps[0]
    page = admin.post(_url(campaign, step), _variants(wa="70", b="Keep <this> text"))
    html = page.get_data(as_text=True)
    assert page.status_code == 422
    assert 'id="error-weights"' in html and "add up to 120" in html
    assert "Keep &lt;this&gt; text" in html  # nothing typed is lost, and it is escaped
    broken = admin.post(_url(campaign, step), _variants(a="{{ contact.shoe_size }}"))
    assert broken.status_code == 422
    assert 'id="error-variant-A-subject"' in broken.get_data(as_text=True)
    assert _count(StepVariant) == 0


def test_only_admins_start_promote_or_stop_and_every_post_needs_csrf(
    admin, staff_user, campaigns, web
):
    campaign = campaigns["lead"]
    step = campaign.steps[0]
    assert admin.post(_url(campaign, step), _variants(), csrf=False).status_code == 400
    assert admin.get(_url(campaign, step)).status_code == 200  # a GET changes nothing
    assert _count(StepVariant) == 0
    assert admin.post(_url(campaign, step), _variants()).status_code == 302
    admin.logout()
    web.login("staff@example.com", "staff-password")
    assert web.get(_url(campaign, step)).status_code == 200  # staff read the results
    b = db.session.scalar(sa.select(StepVariant).where(StepVariant.key == "B"))
    assert web.post(_url(campaign, step, f"experiment/promote/{b.id}")).status_code == 403
    assert web.post(_url(campaign, step, "experiment/stop")).status_code == 403


def test_promote_from_the_page_saves_a_new_version(admin, campaigns):
    campaign = campaigns["lead"]
    step = campaign.steps[0]
    admin.post(_url(campaign, step), _variants(b="Winner {{ contact.first_name }}"))
    b = db.session.scalar(sa.select(StepVariant).where(StepVariant.key == "B"))
    page = admin.get(_url(campaign, step)).get_data(as_text=True)
    assert "Not enough data yet" in page and "Preview variant B" in page
    answer = admin.post(_url(campaign, step, f"experiment/promote/{b.id}"), follow_redirects=True)
    assert "Variant B promoted" in answer.get_data(as_text=True)
    db.session.expire_all()
    step = db.session.get(type(step), step.id)
    assert step.subject == "Winner {{ contact.first_name }}"
    notes = db.session.scalars(sa.select(StepVersion.note).where(StepVersion.step_id == step.id))
    assert any("promoted variant B" in note for note in notes)
    # The analytics page lists the test with its variants.
    analytics = admin.get(f"/analytics/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'id="ab-tests"' in analytics and "promoted" in analytics and "lost" in analytics


def test_stop_ends_the_test_without_a_new_version(admin, campaigns):
    campaign = campaigns["lead"]
    step = campaign.steps[0]
    version = step.version
    admin.post(_url(campaign, step), _variants())
    admin.post(_url(campaign, step, "experiment/stop"))
    db.session.expire_all()
    outcomes = set(db.session.scalars(sa.select(StepVariant.outcome)))
    assert outcomes == {"stopped"} and db.session.get(type(step), step.id).version == version


def test_block_pages_refuse_bad_input_and_a_delete_while_live(admin, campaigns):
    bad = admin.post("/blocks/new", {"name": "Intro!", "default_content": "", "rule-1-field": ""})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and 'id="error-name"' in html
    assert 'id="error-default_content"' in html
    assert _count(ContentBlock) == 0
    ok = admin.post(
        "/blocks/new",
        {
            "name": "intro",
            "default_content": "Hello",
            "rule-1-field": "industry",
            "rule-1-op": "is",
            "rule-1-value": "Manufacturing",
            "rule-1-content": "Hello factory",
        },
    )
    assert ok.status_code == 302
    block = db.session.scalar(sa.select(ContentBlock))
    assert block.rules[0]["value"] == "Manufacturing"
    # An email that uses it: saved through the editor; one naming an unknown block is not.
    step = campaigns["lead"].steps[0]
    form = {
        "subject": "{{ block('intro') }}",
        "body_html": step.body_html,
        "body_text": step.body_text,
        "delay_days": str(step.delay_days),
    }
    assert admin.post(_url(campaigns["lead"], step, "edit"), form).status_code == 302
    unknown = admin.post(
        _url(campaigns["lead"], step, "edit"), form | {"subject": "{{ block('nope') }}"}
    )
    assert unknown.status_code == 422 and "No content block named" in unknown.get_data(as_text=True)
    refused = admin.post(f"/blocks/{block.id}/delete", follow_redirects=True)
    assert "Used by live emails: Lead, email 1" in refused.get_data(as_text=True)
    assert _count(ContentBlock) == 1


def test_the_blocks_page_finds_every_use_reading_each_live_email_once(
    admin, campaigns, monkeypatch
):
    from crm_app.drip.experiments import blocks as blocks_core

    for name in ("intro", "outro", "unused"):
        db.session.add(ContentBlock(name=name, rules=[], default_content=name))
    lead, client = campaigns["lead"], campaigns["client"]
    lead.steps[0].subject = "{{ block('intro') }}"
    lead.steps[1].body_text += "{{ block('intro') }} {{ block('outro') }}"
    db.session.add(
        StepVariant(step_id=lead.steps[1].id, key="B", weight=50, subject="{{ block('outro') }}")
    )
    client.steps[0].subject = "{{ block('unused') }}"
    client.status = "archived"  # an archived campaign's email is not a live use
    db.session.commit()
    live_texts = (
        3
        * db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Campaign)
            .join(Campaign.steps)
            .where(Campaign.status != "archived")
        )
        + 3
    )  # and the variant's subject and bodies
    parsed = []
    real_block_names = blocks_core.block_names
    monkeypatch.setattr(
        blocks_core, "block_names", lambda text: parsed.append(text) or real_block_names(text)
    )

    page = admin.get("/blocks/").get_data(as_text=True)

    assert len(parsed) == live_texts  # not once per block
    cards = {name: page.split(f'id="block-{name}"', 1)[1].split("</li>", 1)[0] for name in
             ("intro", "outro", "unused")}  # fmt: skip
    assert "Used by: Lead, email 1; Lead, email 2." in cards["intro"]
    assert "Used by: Lead, email 2; Lead, email 2 (variant B)." in cards["outro"]
    assert "Not used by a live email." in cards["unused"]


def test_condition_form_and_the_warning_for_a_vanished_custom_field(admin, campaigns, make_contact):
    campaign = campaigns["lead"]
    step = campaign.steps[1]
    bad = admin.post(
        _url(campaign, step, "condition"),
        {"kind": "field", "field": "shoe", "op": "is", "value": ""},
    )
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "Unknown field" in html and "Enter the value" in html
    make_contact("lead", custom_fields={"plan": "pro"})
    good = {"kind": "field", "field": "custom.plan", "op": "is", "value": "pro"}
    assert admin.post(_url(campaign, step, "condition"), good).status_code == 302
    page = admin.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Send only if</strong> custom.plan is &#34;pro&#34;" in page
    assert "condition-warning" not in page
    # The field vanishes from every contact: the campaign page warns.
    for contact in db.session.scalars(sa.select(type(make_contact("lead")))):
        contact.custom_fields = {}
    db.session.commit()
    page = admin.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "No contact has the field custom.plan any more" in page


def test_goal_events_on_the_campaign_form_and_a_goal_from_the_api_converts(
    admin, api, campaigns, make_contact
):
    campaign = campaigns["lead"]
    form = {
        "name": campaign.name,
        "description": campaign.description,
        "contact_type": "lead",
        "goal_contact_type": "prospect",
        "reentry": "resume",
        "goal_events": "x" * 91,
    }
    too_long = admin.post(f"/campaigns/{campaign.id}/edit", form)
    assert too_long.status_code == 422 and 'id="error-goal_events"' in too_long.get_data(
        as_text=True
    )
    assert (
        admin.post(
            f"/campaigns/{campaign.id}/edit",
            form | {"goal_events": "Demo booked\n\ndemo BOOKED\nSigned"},
        ).status_code
        == 302
    )
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).goal_events == "Demo booked\nSigned"

    contact = make_contact("lead")
    answer = api.post(f"/api/v1/contacts/{contact.id}/goals", {"name": "signed"})
    assert answer.status_code == 201
    db.session.expire_all()
    enrollment = db.session.get(type(contact), contact.id).enrollments[0]
    assert enrollment.converted_at is not None and enrollment.end_reason == "converted: goal signed"


def test_not_enough_data_is_said_once_not_once_per_metric(admin, campaigns):
    campaign = campaigns["lead"]
    step = campaign.steps[0]
    admin.post(_url(campaign, step), _variants())
    page = admin.get(_url(campaign, step)).get_data(as_text=True)
    verdicts = page.split('<ul id="verdicts">', 1)[1].split("</ul>", 1)[0]
    assert verdicts.count("<li") == 1
    assert verdicts.count("Not enough data yet: each variant needs at least") == 1
    assert "(A, B not yet)" in verdicts


def test_a_variant_left_blank_is_the_email_as_it_is_and_two_equal_ones_are_refused(
    admin, campaigns
):
    campaign = campaigns["lead"]
    step = campaign.steps[0]
    page = admin.get(_url(campaign, step)).get_data(as_text=True)
    assert "a variant left blank sends the email as it is" in page

    same = admin.post(_url(campaign, step), _variants(a="", b=step.subject))
    assert same.status_code == 422
    assert "Variants A and B send the same email" in same.get_data(as_text=True)
    both_blank = admin.post(_url(campaign, step), _variants(a="", b=""))
    assert both_blank.status_code == 422
    assert _count(StepVariant) == 0

    started = admin.post(_url(campaign, step), _variants(a="", b="A new subject to try"))
    assert started.status_code == 302
    variants = db.session.scalars(sa.select(StepVariant).order_by(StepVariant.key)).all()
    assert [(v.key, v.subject, v.body_html, v.body_text) for v in variants] == [
        ("A", "", "", ""),  # the control: the email's own text
        ("B", "A new subject to try", "", ""),
    ]


def test_the_text_of_an_email_under_test_is_not_changed_until_the_test_ends(admin, campaigns):
    # Variant A is the control (blank: the email as it is); B changes the subject. A new
    # text mid-test would make A's figures mix two emails (here: make A equal to B).
    campaign = campaigns["lead"]
    step = campaign.steps[0]
    edit = {
        "subject": "First try",
        "body_html": step.body_html,
        "body_text": step.body_text,
        "delay_days": str(step.delay_days),
    }
    assert admin.post(_url(campaign, step, "edit"), edit).status_code == 302  # version 2
    assert admin.post(_url(campaign, step), _variants(a="", b="Subject B")).status_code == 302
    versions = _count(StepVersion)

    page = admin.post(_url(campaign, step, "edit"), edit | {"subject": "Subject B"})
    assert page.status_code == 422
    assert "runs an A/B test: promote a winner or stop the test" in page.get_data(as_text=True)
    admin.post(_url(campaign, step, "versions/1/restore"))
    db.session.expire_all()
    step = db.session.get(type(step), step.id)
    assert (step.subject, step.version, _count(StepVersion)) == ("First try", 2, versions)

    # A new delay is no change of text: it is saved.
    longer = edit | {"delay_days": str(step.delay_days + 1)}
    assert admin.post(_url(campaign, step, "edit"), longer).status_code == 302

    admin.post(_url(campaign, step, "experiment/stop"))
    assert (
        admin.post(_url(campaign, step, "edit"), longer | {"subject": "Subject B"}).status_code
        == 302
    )
    db.session.expire_all()
    assert db.session.get(type(step), step.id).subject == "Subject B"


def test_an_archived_campaign_whose_variant_lost_its_block_is_not_restored(admin, campaigns):
    # An archived campaign's emails are no live use: their block can be deleted. Restored
    # as is, every contact reaching variant B's email would get a failed email instead.
    lead = campaigns["lead"]
    step = lead.steps[1]
    block = {"name": "intro", "default_content": "Hello"}
    assert admin.post("/blocks/new", block).status_code == 302
    started = admin.post(_url(lead, step), _variants(b="{{ block('intro') }} from us"))
    assert started.status_code == 302
    assert admin.post(f"/campaigns/{lead.id}/status", {"status": "archived"}).status_code == 302
    block_id = db.session.scalar(sa.select(ContentBlock.id))
    assert admin.post(f"/blocks/{block_id}/delete").status_code == 302
    assert _count(ContentBlock) == 0

    refused = admin.post(f"/campaigns/{lead.id}/status", {"status": "active"})
    assert refused.status_code == 422
    assert "email 2 (variant B): &#39;intro&#39;" in refused.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Campaign, lead.id).status == "archived"

    assert admin.post("/blocks/new", block).status_code == 302
    assert admin.post(f"/campaigns/{lead.id}/status", {"status": "active"}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Campaign, lead.id).status == "active"
