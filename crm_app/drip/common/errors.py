"""The one shape of a refused form: a message per field, for the user."""

from __future__ import annotations


class FieldErrors(Exception):
    """Refused input; `errors` maps a form field to a message shown next to it."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors
