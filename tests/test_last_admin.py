"""The workspace keeps one active admin even when two admins disable or demote each
other at the same moment: the second change waits for the first and is refused."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_app.drip.team.accounts import set_active
from crm_app.drip.team.users import UserEditError, profile_values, update_user
from crm_app.extensions import db
from crm_app.models import User
from tests.conftest import make_user


def _remove_admin(session: Session, how: str, email: str, actor_email: str) -> None:
    user = session.scalar(sa.select(User).where(User.email == email))
    actor = session.scalar(sa.select(User).where(User.email == actor_email))
    if how == "disable":
        set_active(session, user, False, actor=actor)
    else:
        update_user(session, user, profile_values(user) | {"role": "staff"}, actor=actor)


@pytest.mark.parametrize(
    ("first", "second"),
    [("disable", "disable"), ("demote", "demote"), ("disable", "demote")],
)
def test_two_admins_removing_each_other_at_once_leave_one_active_admin(app, first, second):
    make_user("ann@example.com", "admin", "ann-password")
    make_user("bob@example.com", "admin", "bob-password")
    engine = db.engine
    outcome: dict[str, object] = {}

    with Session(engine) as ann_session:
        # Ann removes Bob: checked and written, not yet committed.
        _remove_admin(ann_session, first, "bob@example.com", "ann@example.com")

        def bob_removes_ann() -> None:
            with Session(engine) as bob_session:
                try:
                    _remove_admin(bob_session, second, "ann@example.com", "bob@example.com")
                    bob_session.commit()
                    outcome["bob"] = "saved"
                except UserEditError as refused:
                    bob_session.rollback()
                    outcome["bob"] = refused.errors

        bob = threading.Thread(target=bob_removes_ann)
        bob.start()
        bob.join(0.5)  # Bob's check runs while Ann's change is still open
        ann_session.commit()
        bob.join(10)
        assert not bob.is_alive()

    assert outcome["bob"] != "saved"
    assert "only active admin" in next(iter(outcome["bob"].values()))
    db.session.expire_all()
    active_admins = db.session.scalars(
        sa.select(User.email).where(User.role == "admin", User.is_active_user.is_(True))
    ).all()
    assert active_admins == ["ann@example.com"]
