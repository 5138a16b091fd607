"""flask seed, flask create-user, flask ensure-admin."""

from __future__ import annotations

import secrets

import click
import sqlalchemy as sa
from flask import Flask

from crm_app.drip.campaigns.seed import seed_default_campaigns
from crm_app.drip.team.accounts import reenable_admin
from crm_app.drip.team.passwords import HINT as PASSWORD_HINT
from crm_app.drip.team.users import NewUser, UserEditError
from crm_app.drip.team.users import create_user as core_create_user
from crm_app.extensions import db
from crm_app.models import ROLES, User
from crm_app.web.health import current_health


def create_user(email: str, password: str, role: str, name: str = "") -> User:
    """Through the same core (and password policy) as the Users page; ClickException
    with every refusal."""
    new = NewUser(email=email, name=name, role=role, password=password)
    try:
        # The name may wait for the profile: ensure-admin knows none (README: --name NAME).
        user = core_create_user(db.session, new, actor="cli:flask create-user", name_required=False)
    except UserEditError as refused:
        db.session.rollback()
        raise click.ClickException(" ".join(refused.errors.values())) from None
    db.session.commit()
    return user


def register_cli(app: Flask) -> None:
    @app.cli.command("seed")
    def seed_command() -> None:
        """Load the four default campaigns (safe to run again)."""
        report = seed_default_campaigns(db.session)
        db.session.commit()
        for label, names in (
            ("created", report.created),
            ("updated", report.updated),
            ("unchanged", report.unchanged),
            ("kept (edited by an admin)", report.kept_customized),
        ):
            if names:
                click.echo(f"{label}: {', '.join(names)}")

    @app.cli.command("create-user")
    @click.argument("email")
    @click.option("--role", type=click.Choice(ROLES), default="staff", show_default=True)
    @click.option("--name", default="")
    @click.option(
        "--password", prompt=True, hide_input=True, confirmation_prompt=True, help=PASSWORD_HINT
    )
    def create_user_command(email: str, role: str, name: str, password: str) -> None:
        """Create a staff or admin login (the password policy applies: see --help)."""
        create_user(email, password, role, name)
        click.echo(f"Created {role} {email}.")

    @app.cli.command("health")
    def health_command() -> None:
        """Check the database, schema, Redis, worker and scheduler; exit 1 if any fails."""
        report = current_health()
        for check in report.checks:
            click.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.name:<14} {check.detail}")
        for name, value in report.figures.items():
            click.echo(f"     {name:<14} {value}")
        if not report.ok:
            raise SystemExit(1)

    @app.cli.command("ensure-admin")
    @click.option("--email", default="admin@example.com", show_default=True)
    def ensure_admin_command(email: str) -> None:
        """Create a first admin if there is no active one, printing its generated password
        once; when every admin is disabled, `--email`'s disabled admin is enabled again."""
        admins = db.session.scalars(sa.select(User).where(User.role == "admin")).all()
        if any(admin.is_active_user for admin in admins):
            click.echo("An admin already exists.")
            return
        password = secrets.token_urlsafe(12)
        if admins:
            # Nobody could manage users any more: recover as a fresh install would.
            click.echo("Every admin is disabled.")
            same = next((a for a in admins if a.email.lower() == email.lower()), None)
            if same is not None:
                reenable_admin(db.session, same, password, actor="cli:flask ensure-admin")
                db.session.commit()
                click.echo(f"Enabled the admin again: {same.email} / password: {password}")
                return
        # No made-up name: "Admin" would sign the emails of its contacts ("I am Admin").
        # Until the admin names themselves on their profile, the workspace speaks.
        create_user(email, password, "admin")
        first = "an" if admins else "the first"
        click.echo(f"Created {first} admin: {email} / password: {password}")
