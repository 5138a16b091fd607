"""The password policy (crm_app/drip/team/passwords.py), used by flask create-user, the
Users page, set-password links and "change my password"."""

from __future__ import annotations

import pytest

from crm_app.drip.team.passwords import (
    MAX_LENGTH,
    common_passwords,
    new_password_errors,
    password_problem,
)


def test_the_shipped_list_holds_the_ten_thousand_most_common_passwords():
    listed = common_passwords()
    assert len(listed) == 10_000
    assert {"123456", "password", "qwerty123456", "iloveyou"} <= listed


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("password", "at least 12 characters"),
        ("Tr0ub4dor&3", "at least 12 characters"),
        ("qwerty123456", "too common"),  # 12 characters, and on the list
        ("Sunshine2024!", "too common"),  # a listed word dressed up
        ("!!Football1987", "too common"),
        ("DripCRM-2026!", "too common"),  # the product's name
        ("aaaaaaaaaaaaaaa", "too few different characters"),
        ("121212121212", "too few different characters"),
        ("dana.reyes2026", "name or email"),
        ("ReyesFamily-1980", "name or email"),
        ("x" * (MAX_LENGTH - 4) + "abcde", "at most"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password, why):
    problem = password_problem(password, email="dana.reyes@example.com", name="Dana Reyes")
    assert problem and why in problem


@pytest.mark.parametrize(
    "password",
    ["correct horse battery staple", "violet-harbour-lamp", "Zq8!vR2#mW5$", "ünïcödé pässwörd"],
)
def test_long_unpredictable_passwords_pass_without_composition_rules(password):
    assert password_problem(password, email="dana.reyes@example.com", name="Dana Reyes") is None


def test_the_confirmation_must_match():
    errors = new_password_errors("violet-harbour-lamp", "violet-harbour-lam", email="", name="")
    assert errors == {"password_confirm": "The two passwords are not the same."}
