"""The password policy: one rule wherever a password is chosen (`flask create-user`,
the Users page, a set-password link, "change my password").

Why this rule (OWASP ASVS 4.0.3 V2.1, NIST SP 800-63B 5.1.1.2):
- at least 12 characters (V2.1.1) and at most 128 (V2.1.2), any characters, spaces
  included, and no "one digit, one symbol" composition rules (V2.1.9): length and
  unpredictability make a password strong, composition rules only make it
  "Password1!";
- not one of the 10,000 most common passwords (V2.1.7), shipped in the repository
  (common_passwords.txt, see common_passwords.NOTICE), nor one of them dressed up
  with digits or symbols around it ("Sunshine2024!"), nor the product's name;
- not the user's own email address or name (context-specific words, 800-63B);
- at least 5 different characters ("aaaaaaaaaaaa", "121212121212").
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

MIN_LENGTH = 12
MAX_LENGTH = 128
MIN_DISTINCT_CHARACTERS = 5
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")
# Words anyone guessing at this app's logins would try first.
PRODUCT_WORDS = frozenset({"drip", "dripcrm", "drip crm", "crm"})
# Digits, punctuation and spaces around a word ("!!sunshine2024").
_PADDING = re.compile(r"^[\W\d_]+|[\W\d_]+$")

TOO_COMMON = (
    "This password is too common: it is among the first that attackers try. "
    "Choose a less predictable one, such as three or four unrelated words."
)
PERSONAL = "Do not use your name or email address in your password."
HINT = (
    f"At least {MIN_LENGTH} characters. A few unrelated words make a strong, "
    "memorable password; common passwords are refused."
)


class PasswordError(ValueError):
    """A password the policy refuses; the message is for the person choosing it."""


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list, lower-case (read once per process)."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.lower() for line in lines if line)


def _personal_words(email: str, name: str) -> set[str]:
    """Parts of who the user is that must not be (in) their password."""
    email = email.strip().lower()
    local_part = email.partition("@")[0]
    words = {email, local_part, *re.split(r"[._+-]", local_part)}
    words |= set(name.lower().split()) | {"".join(name.lower().split())}
    return {word for word in words if len(word) >= 4}


def password_problem(password: str, *, email: str = "", name: str = "") -> str | None:
    """Why `password` may not be chosen (a sentence shown next to the field), or None."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters (this one has {len(password)})."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    lowered = password.lower()
    if len(set(lowered)) < MIN_DISTINCT_CHARACTERS:
        return "This password repeats too few different characters: it is easy to guess."
    core = _PADDING.sub("", lowered)
    if {lowered, core} & (common_passwords() | PRODUCT_WORDS):
        return TOO_COMMON
    if any(word in lowered for word in _personal_words(email, name)):
        return PERSONAL
    return None


def check_password(password: str, *, email: str = "", name: str = "") -> None:
    """Raise PasswordError when the policy refuses `password`."""
    problem = password_problem(password, email=email, name=name)
    if problem:
        raise PasswordError(problem)


def new_password_errors(
    password: str, confirmation: str, *, email: str, name: str
) -> dict[str, str]:
    """A new-password form's errors, by field: `password` and `password_confirm`."""
    problem = password_problem(password, email=email, name=name)
    if problem:
        return {"password": problem}
    if password != confirmation:
        return {"password_confirm": "The two passwords are not the same."}
    return {}
