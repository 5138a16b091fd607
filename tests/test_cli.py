"""flask seed, flask create-user and flask ensure-admin, through the CLI runner."""

from __future__ import annotations

import re

import sqlalchemy as sa

from crm_app.extensions import db
from crm_app.models import Campaign, CampaignStep, User


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_seed_twice_creates_the_four_campaigns_once(runner):
    first = runner.invoke(args=["seed"])
    assert first.exit_code == 0, first.output
    assert "created: Networking, Lead, Prospect, Client" in first.output

    second = runner.invoke(args=["seed"])
    assert second.exit_code == 0, second.output
    assert second.output.strip() == "unchanged: Networking, Lead, Prospect, Client"
    assert count(Campaign) == 4
    assert count(CampaignStep) == 8 + 6 + 5 + 4


def test_seed_keeps_a_campaign_an_admin_edited(runner, campaigns):
    from crm_app.drip.campaigns.manage import update_send_window

    lead = campaigns["lead"]
    update_send_window(db.session, lead, [5], "10:00", "12:00", actor="test")
    lead.steps[0].subject = "Our own subject"
    db.session.commit()

    result = runner.invoke(args=["seed"])
    assert result.exit_code == 0, result.output
    assert "kept (edited by an admin): Lead" in result.output
    db.session.expire_all()
    lead = db.session.get(Campaign, lead.id)
    assert lead.steps[0].subject == "Our own subject"
    assert lead.send_window_label == "Sat 10:00-12:00"


def test_seed_restores_an_unedited_default(runner, campaigns):
    client = campaigns["client"]
    client.steps[0].subject = "Changed outside the admin pages"
    db.session.commit()
    result = runner.invoke(args=["seed"])
    assert "updated: Client" in result.output
    db.session.expire_all()
    assert db.session.get(Campaign, client.id).steps[0].subject != "Changed outside the admin pages"


def test_create_user_makes_an_admin_who_can_log_in(runner, web):
    result = runner.invoke(
        args=[
            "create-user",
            "New.Admin@Example.com",
            "--role",
            "admin",
            "--password",
            "violet-harbour-lamp",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "Created admin" in result.output
    user = db.session.scalar(sa.select(User).where(User.email == "new.admin@example.com"))
    assert user.is_admin and user.check_password("violet-harbour-lamp")
    web.login("new.admin@example.com", "violet-harbour-lamp")


def test_create_user_refuses_a_duplicate_email_clearly(runner):
    args = ["create-user", "dup@example.com", "--password", "violet-harbour-lamp"]
    assert runner.invoke(args=args).exit_code == 0
    again = runner.invoke(
        args=["create-user", "DUP@example.com", "--password", "amber-quarry-socks"]
    )
    assert again.exit_code != 0
    assert "already exists" in again.output
    assert count(User) == 1


def test_create_user_refuses_a_short_password(runner):
    result = runner.invoke(args=["create-user", "short@example.com", "--password", "password"])
    assert result.exit_code != 0
    assert "at least 12 characters" in result.output
    assert count(User) == 0


def test_create_user_refuses_a_common_password_of_twelve_characters(runner):
    result = runner.invoke(args=["create-user", "c@example.com", "--password", "qwerty123456"])
    assert result.exit_code != 0
    assert "too common" in result.output
    assert count(User) == 0


def test_create_user_is_in_the_audit_log(runner):
    from crm_app.models import AuditEntry

    args = ["create-user", "cli@example.com", "--role", "admin", "--password", "amber-quarry-socks"]
    assert runner.invoke(args=args).exit_code == 0
    entry = db.session.scalar(sa.select(AuditEntry))
    assert (entry.actor, entry.action) == ("cli:flask create-user", "user.created")
    assert entry.summary == "Added Admin cli@example.com"


def test_ensure_admin_creates_one_admin_once_and_prints_its_password(runner, web):
    first = runner.invoke(args=["ensure-admin"])
    assert first.exit_code == 0, first.output
    match = re.search(r"Created the first admin: (\S+) / password: (\S+)", first.output)
    assert match
    email, password = match.groups()
    web.login(email, password)

    second = runner.invoke(args=["ensure-admin", "--email", "other@example.com"])
    assert second.exit_code == 0
    assert "An admin already exists." in second.output
    assert password not in second.output
    assert count(User) == 1


def _ensure_admin_with_only_a_disabled_admin(runner, email: str):
    """`flask ensure-admin` when the one admin, `email`, is disabled; its output."""
    from tests.conftest import make_user

    make_user(email, "admin", "admin-password").is_active_user = False
    db.session.commit()

    result = runner.invoke(args=["ensure-admin"])
    assert result.exit_code == 0, result.output
    assert "Every admin is disabled." in result.output
    return result


def test_ensure_admin_enables_a_disabled_admin_again_when_no_admin_is_active(runner, web):
    result = _ensure_admin_with_only_a_disabled_admin(runner, "admin@example.com")
    assert "An admin already exists." not in result.output
    match = re.search(r"Enabled the admin again: (\S+) / password: (\S+)", result.output)
    assert match and match.group(1) == "admin@example.com"
    web.login("admin@example.com", match.group(2))
    assert count(User) == 1


def test_ensure_admin_creates_an_admin_when_every_other_admin_is_disabled(runner, web):
    result = _ensure_admin_with_only_a_disabled_admin(runner, "old@example.com")
    match = re.search(r"Created an admin: (\S+) / password: (\S+)", result.output)
    assert match
    web.login(*match.groups())


def test_seed_keeps_a_default_campaign_running_an_ab_test(runner, admin, campaigns):
    # As after an upgrade that ships a new text for the email: the test started on the
    # old one must not see its control change under it (nor its email dropped).
    client = campaigns["client"]
    step = client.steps[0]
    step.subject = "The default of an older release"
    db.session.commit()
    form = {"variant-A-weight": "50", "variant-B-weight": "50", "variant-B-subject": "Hi"}
    url = f"/campaigns/{client.id}/steps/{step.id}/experiment"
    assert admin.post(url, form).status_code == 302
    db.session.expire_all()  # the seed reads the campaign as the request left it

    result = runner.invoke(args=["seed"])
    assert "kept (edited by an admin): Client" in result.output
    db.session.expire_all()
    assert db.session.get(CampaignStep, step.id).subject == "The default of an older release"
