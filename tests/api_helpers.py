"""The API tests' client and tokens (the fixtures: tests/conftest_integrations.py)."""

from __future__ import annotations

from crm_app.drip.api.tokens import create_token
from crm_app.extensions import db


class ApiClient:
    """The Flask test client speaking JSON with a bearer token; each request in an app
    context of its own, as in production."""

    def __init__(self, client, secret: str | None):
        self.client = client
        self.secret = secret

    def request(self, method: str, url: str, *, token: str | None = "default", **kw):
        headers = dict(kw.pop("headers", {}))
        secret = self.secret if token == "default" else token
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        with self.client.application.app_context():
            return self.client.open(url, method=method, headers=headers, **kw)

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post(self, url, json=None, *, key: str | None = None, **kw):
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.request("POST", url, json=json, headers=headers, **kw)

    def patch(self, url, json=None, **kw):
        return self.request("PATCH", url, json=json, **kw)

    def delete(self, url, **kw):
        return self.request("DELETE", url, **kw)


def make_token(scope: str = "read_write", name: str = "crm-sync") -> str:
    _, secret = create_token(db.session, name, scope, actor="user:admin@example.com")
    db.session.commit()
    return secret
