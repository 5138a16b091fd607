"""An access audit over every route of the url_map: who may use it, that no read changes
a row, that a form without its CSRF token is refused, that an unknown id is a 404 and
that an id under another parent (a step of another campaign) is refused.

Each route and method has its expectation in ROUTES: a route added later and missing
from it fails test_every_route_has_an_expectation, so it is audited too. The world the
requests run against is built once for the module; every check asserts that the data
did not change, so no check depends on another's order.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import redis as redis_lib
import sqlalchemy as sa

from crm_app.drip.api.tokens import create_token
from crm_app.drip.experiments.variants import VariantInput, start_test
from crm_app.extensions import db
from crm_app.models import (
    Campaign,
    ContentBlock,
    TestSend,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from crm_app.models.types import tables_on
from tests.api_helpers import ApiClient
from tests.conftest import WebClient, _clean_database, make_user
from tests.import_helpers import csv_text, queued_import
from tests.panel_helpers import sent_email

PUBLIC = "public"  # anyone: reads, or forms with their own CSRF token (login, set password)
LOGIN = "login"  # any logged-in user
ADMIN = "admin"  # admins only
API = "api"  # a bearer token, no session, no CSRF
SIGNED = "signed"  # no session, no CSRF: the request proves itself (signature, secret)
RQ = "rq"  # admins only; rq-dashboard's own POSTs are checked by Origin, not CSRF

# (endpoint, method) -> who may use it. HEAD and OPTIONS follow GET.
ROUTES: dict[tuple[str, str], str] = {
    ("static", "GET"): PUBLIC,
    ("main.favicon", "GET"): PUBLIC,
    ("health.health", "GET"): PUBLIC,
    ("auth.login", "GET"): PUBLIC,
    ("auth.login", "POST"): PUBLIC,
    ("auth.logout_page", "GET"): PUBLIC,
    ("auth.logout", "POST"): LOGIN,
    ("account.set_password", "GET"): PUBLIC,
    ("account.set_password", "POST"): PUBLIC,
    ("unsubscribe.confirm", "GET"): PUBLIC,
    ("unsubscribe.one_click", "POST"): SIGNED,
    ("webhooks.sendgrid_events", "POST"): SIGNED,
    ("webhooks.inbound_parse", "POST"): SIGNED,
    ("main.home", "GET"): LOGIN,
    ("account.profile", "GET"): LOGIN,
    ("account.profile", "POST"): LOGIN,
    ("account.change_password", "GET"): LOGIN,
    ("account.change_password", "POST"): LOGIN,
    ("contacts.index", "GET"): LOGIN,
    ("contacts.export_csv", "GET"): LOGIN,
    ("contacts.new", "GET"): LOGIN,
    ("contacts.new", "POST"): LOGIN,
    ("contacts.detail", "GET"): LOGIN,
    ("contacts.edit", "GET"): LOGIN,
    ("contacts.edit", "POST"): LOGIN,
    ("contacts.delete", "GET"): LOGIN,
    ("contacts.delete", "POST"): LOGIN,
    ("contacts.export", "POST"): LOGIN,
    ("contacts.erase", "GET"): ADMIN,
    ("contacts.erase", "POST"): ADMIN,
    ("contacts.why", "GET"): LOGIN,
    ("contacts.enroll", "POST"): LOGIN,
    ("contacts.enroll_by_type", "POST"): LOGIN,
    ("contacts.stop", "POST"): LOGIN,
    ("contacts.stop_all_confirm", "GET"): LOGIN,
    ("contacts.stop_all", "POST"): LOGIN,
    ("contacts.record_goal", "POST"): LOGIN,
    ("contacts_bulk.confirm", "POST"): LOGIN,
    ("contacts_bulk.apply", "POST"): LOGIN,
    ("contacts_bulk.progress", "GET"): LOGIN,
    ("imports.index", "GET"): LOGIN,
    ("imports.upload", "POST"): LOGIN,
    ("imports.detail", "GET"): LOGIN,
    ("imports.start", "POST"): LOGIN,
    ("imports.resume", "POST"): LOGIN,
    ("imports.failed_rows", "GET"): LOGIN,
    ("campaigns.index", "GET"): LOGIN,
    ("campaigns.detail", "GET"): LOGIN,
    ("campaigns.new", "GET"): ADMIN,
    ("campaigns.new", "POST"): ADMIN,
    ("campaigns.edit", "GET"): ADMIN,
    ("campaigns.edit", "POST"): ADMIN,
    ("campaigns.clone", "POST"): ADMIN,
    ("campaigns.delete", "GET"): ADMIN,
    ("campaigns.delete", "POST"): ADMIN,
    ("campaigns.update_settings", "POST"): ADMIN,
    ("campaigns.update_replies", "POST"): ADMIN,
    ("campaigns.update_breaker_settings", "POST"): ADMIN,
    ("campaigns.update_status", "POST"): ADMIN,
    ("campaigns.new_step", "GET"): ADMIN,
    ("campaigns.new_step", "POST"): ADMIN,
    ("campaigns.edit_step", "GET"): ADMIN,
    ("campaigns.edit_step", "POST"): ADMIN,
    ("campaigns.live_preview", "POST"): ADMIN,
    ("campaigns.delete_step", "GET"): ADMIN,
    ("campaigns.delete_step", "POST"): ADMIN,
    ("campaigns.move_step_view", "POST"): ADMIN,
    ("campaigns.preview", "GET"): LOGIN,
    ("campaigns.test_send", "POST"): LOGIN,
    ("campaigns.test_send_detail", "GET"): LOGIN,
    ("campaigns.versions", "GET"): LOGIN,
    ("campaigns.version", "GET"): LOGIN,
    ("campaigns.compare", "GET"): LOGIN,
    ("campaigns.restore", "POST"): ADMIN,
    ("campaigns.experiment", "GET"): LOGIN,
    ("campaigns.start_experiment", "POST"): ADMIN,
    ("campaigns.promote_variant", "POST"): ADMIN,
    ("campaigns.stop_experiment", "POST"): ADMIN,
    ("campaigns.save_condition", "POST"): ADMIN,
    ("analytics.index", "GET"): LOGIN,
    ("analytics.campaign", "GET"): LOGIN,
    ("analytics.campaign_csv", "GET"): LOGIN,
    ("blocks.index", "GET"): ADMIN,
    ("blocks.new", "GET"): ADMIN,
    ("blocks.new", "POST"): ADMIN,
    ("blocks.edit", "GET"): ADMIN,
    ("blocks.edit", "POST"): ADMIN,
    ("blocks.delete", "POST"): ADMIN,
    ("suppressions.index", "GET"): ADMIN,
    ("suppressions.add", "POST"): ADMIN,
    ("suppressions.remove", "POST"): ADMIN,
    ("admin.messages", "GET"): ADMIN,
    ("admin.message_action", "POST"): ADMIN,
    ("admin.outbox", "GET"): ADMIN,
    ("admin.outbox_message", "GET"): ADMIN,
    ("users.index", "GET"): ADMIN,
    ("users.create", "POST"): ADMIN,
    ("users.edit", "GET"): ADMIN,
    ("users.edit", "POST"): ADMIN,
    ("users.toggle_active", "POST"): ADMIN,
    ("users.password_link", "POST"): ADMIN,
    ("users.set_password", "POST"): ADMIN,
    ("workspace.settings", "GET"): ADMIN,
    ("workspace.settings", "POST"): ADMIN,
    ("workspace.audit", "GET"): ADMIN,
    ("integrations.index", "GET"): ADMIN,
    ("integrations.new_token", "POST"): ADMIN,
    ("integrations.revoke", "POST"): ADMIN,
    ("integrations.new_endpoint", "POST"): ADMIN,
    ("integrations.endpoint", "GET"): ADMIN,
    ("integrations.edit_endpoint", "POST"): ADMIN,
    ("integrations.new_secret", "POST"): ADMIN,
    ("integrations.remove_endpoint", "POST"): ADMIN,
    ("integrations.redeliver_event", "POST"): ADMIN,
    ("api-docs.openapi_json", "GET"): PUBLIC,
    ("api.campaigns", "GET"): API,
    ("api.list_contacts", "GET"): API,
    ("api.upsert_contact", "POST"): API,
    ("api.get_contact", "GET"): API,
    ("api.update_contact", "PATCH"): API,
    ("api.remove_contact", "DELETE"): API,
    ("api.enroll", "POST"): API,
    ("api.record_goal", "POST"): API,
    ("api.stop_all", "POST"): API,
    ("api.change_type", "POST"): API,
    ("api.stop", "POST"): API,
    ("rq_dashboard.queues_overview", "GET"): RQ,
    ("rq_dashboard.job_info", "GET"): RQ,
    ("rq_dashboard.list_jobs", "GET"): RQ,
    ("rq_dashboard.list_queues", "GET"): RQ,
    ("rq_dashboard.list_workers", "GET"): RQ,
    ("rq_dashboard.job_view", "GET"): RQ,
    ("rq_dashboard.jobs_overview", "GET"): RQ,
    ("rq_dashboard.workers_overview", "GET"): RQ,
    ("rq_dashboard.favicon", "GET"): RQ,
    ("rq_dashboard.static", "GET"): RQ,
    ("rq_dashboard.delete_job_view", "POST"): RQ,
    ("rq_dashboard.requeue_job_view", "POST"): RQ,
    ("rq_dashboard.empty_queue", "POST"): RQ,
    ("rq_dashboard.compact_queue", "POST"): RQ,
    ("rq_dashboard.requeue_all", "POST"): RQ,
    ("rq_dashboard.requeue_all", "GET"): RQ,  # upstream's; refused with 405 by our guard
}

# Reads that write on purpose (crm_app/web/read_only_requests.writes_when_read), and
# the only tables they may touch.
WRITES_WHEN_READ = {"contacts.export_csv": {"audit_entries"}}
# The API notes when each token was last used, whatever the call.
API_NOTES = {"api_tokens"}
# A body each API action accepts, so that the id in the URL is what decides.
API_BODIES = {
    "api.enroll": lambda world: {"campaign_id": world.values["campaign_id"]},
    "api.record_goal": lambda world: {"name": "demo booked"},
    "api.change_type": lambda world: {"contact_type": "client"},
}

# Child id -> the parent id in the same URL it must belong to.
PARENT_OF = {
    "step_id": "campaign_id",
    "enrollment_id": "contact_id",
    "delivery_id": "endpoint_id",
    "variant_id": "step_id",
}

MISSING_ID = 987_654
STATE_CHANGES = ("POST", "PUT", "PATCH", "DELETE")


def _the_app():
    from crm_app import create_app

    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "SECRET_KEY": "collection",
        }
    )


def _rules() -> list[tuple[str, str, str]]:
    """(rule, endpoint, method) of every route, HEAD and OPTIONS aside."""
    return sorted(
        (rule.rule, rule.endpoint, method)
        for rule in _the_app().url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    )


RULES = _rules()


def _ids(rule_endpoint_method) -> str:
    rule, _, method = rule_endpoint_method
    return f"{method} {rule}"


def _of(*kinds: str, methods: tuple[str, ...] | None = None) -> list:
    return [
        pytest.param(r, id=_ids(r))
        for r in RULES
        if ROUTES.get(r[1:]) in kinds and (methods is None or r[2] in methods)
    ]


@dataclass
class World:
    values: dict[str, object]
    others: dict[str, object] = field(default_factory=dict)
    anon: WebClient | None = None
    staff: WebClient | None = None
    admin: WebClient | None = None
    api: ApiClient | None = None


def _state() -> dict[str, str]:
    """A hash of every table's rows."""
    digests = {}
    with db.engine.connect() as conn:
        for table in tables_on(db.metadata, conn.dialect.name):
            rows = conn.execute(sa.select(table)).all()
            digests[table.name] = hashlib.sha256(repr(sorted(map(repr, rows))).encode()).hexdigest()
    return digests


def _changed(before: dict[str, str]) -> set[str]:
    after = _state()
    return {name for name in before if before[name] != after[name]}


@pytest.fixture(scope="module")
def world(_migrated_app):
    """Two of each kind of record (so an id can be taken from the wrong parent), and a
    client per role. Built once: every check below leaves the data as it found it."""
    with _migrated_app.app_context():
        _clean_database()
        redis_lib.Redis.from_url(_migrated_app.config["REDIS_URL"]).flushdb()
        make_user("admin@example.com", "admin", "admin-password")
        staff_user = make_user("staff@example.com", "staff", "staff-password")

        from crm_app.drip.audience.contacts import ContactInput, create_contact
        from crm_app.drip.campaigns.seed import seed_default_campaigns

        seed_default_campaigns(db.session)
        db.session.commit()
        by_type = {c.contact_type: c for c in db.session.scalars(sa.select(Campaign))}
        lead, client = by_type["lead"], by_type["client"]
        people = []
        for n, kind in enumerate(("lead", "client")):
            person = create_contact(
                db.session,
                ContactInput(
                    email=f"person{n}@example.com",
                    contact_type=kind,
                    timezone="UTC",
                    first_name=f"Person{n}",
                    last_name="Example",
                ),
                actor="test",
            )
            db.session.commit()
            people.append(person)
        message = sent_email(db.session, people[0])
        variants = []
        for step in (lead.steps[0], lead.steps[1]):
            inputs = [VariantInput("A", "50", subject="A"), VariantInput("B", "50", subject="B")]
            variants.append(start_test(db.session, step, inputs, {"name": "Sam"}, actor="test"))
        endpoints, deliveries = [], []
        for n in range(2):
            endpoint = WebhookEndpoint(
                url=f"https://hooks{n}.example.com/", event_types=["contact.created"], secret="s"
            )
            db.session.add(endpoint)
            db.session.flush()
            delivery = WebhookDelivery(
                endpoint_id=endpoint.id,
                event_id=f"evt_{n}",
                event_type="contact.created",
                body="{}",
                status="failed",
            )
            db.session.add(delivery)
            endpoints.append(endpoint)
            deliveries.append(delivery)
        block = ContentBlock(name="intro", default_content="Hello", rules=[])
        test_send = TestSend(step_id=lead.steps[0].id, template_version=1, to_email="t@example.com")
        db.session.add_all([block, test_send])
        token, token_secret = create_token(db.session, "crm-sync", "read_write", actor="test")
        db.session.commit()
        contact_import = queued_import(
            db.session, csv_text([["x@example.com", "X", "Y", "Co", "lead", "UTC"]])
        )
        contact_import.finished_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
        values = {
            "campaign_id": lead.id,
            "step_id": lead.steps[0].id,
            "number": 1,
            "variant_id": variants[0][0].id,
            "test_id": test_send.id,
            "contact_id": people[0].id,
            "enrollment_id": people[0].enrollments[0].id,
            "import_id": contact_import.id,
            "message_id": message.id,
            "action": "retry",
            "block_id": block.id,
            "token_id": token.id,
            "endpoint_id": endpoints[0].id,
            "delivery_id": deliveries[0].id,
            "user_id": staff_user.id,
            "job_id": "no-such-job",
            "token": "not-a-token",
            "secret": "not-the-secret",
            "filename": "app.css",
            "instance_number": 0,
            "queue_name": _migrated_app.config["RQ_QUEUE"],
            "registry_name": "queued",
            "per_page": 8,
            "order": "asc",
            "page": 1,
        }
        others = {
            "step_id": client.steps[0].id,
            "enrollment_id": people[1].enrollments[0].id,
            "delivery_id": deliveries[1].id,
            "variant_id": variants[1][0].id,
        }
        built = World(values, others)
        built.anon = WebClient(_migrated_app.test_client())
        built.staff = WebClient(_migrated_app.test_client())
        built.staff.login("staff@example.com", "staff-password")
        built.admin = WebClient(_migrated_app.test_client())
        built.admin.login("admin@example.com", "admin-password")
        built.api = ApiClient(_migrated_app.test_client(), token_secret)
        yield built
        db.session.remove()


def _url(rule: str, values: dict) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: str(values[m.group(1)]), rule)


def _send(client: WebClient, method: str, url: str, *, csrf: bool = True, htmx: bool = False):
    if method == "GET":
        response = client.get(url, htmx=htmx, buffered=True)
        if response.status_code == 308:  # rq-dashboard's aliases of its overview page
            response = client.get(response.headers["Location"], htmx=htmx, buffered=True)
        return response
    if method == "POST":
        return client.post(url, {}, csrf=csrf, htmx=htmx)
    with client._fresh_context():
        return client.client.open(url, method=method)


def test_every_route_has_an_expectation():
    routes = {(endpoint, method) for _, endpoint, method in RULES}
    unknown = sorted(routes - ROUTES.keys())
    assert not unknown, (
        f"routes without an access expectation: {unknown}. Add each to ROUTES in "
        "tests/test_route_access.py as PUBLIC, LOGIN, ADMIN, API, SIGNED or RQ."
    )
    assert not ROUTES.keys() - routes, f"expectations of no route: {ROUTES.keys() - routes}"


@pytest.mark.parametrize("route", _of(LOGIN, ADMIN, RQ))
def test_logged_out_requests_go_to_the_login_page_and_change_nothing(world, route):
    rule, endpoint, method = route
    url = _url(rule, world.values)
    before = _state()
    response = _send(world.anon, method, url)
    assert response.status_code == 302, (url, response.status_code)
    assert response.headers["Location"].startswith("/login"), url
    # htmx: a read goes to the login page, an action says "signed out" next to itself.
    htmx = _send(world.anon, method, url, htmx=True)
    assert htmx.status_code == 401, (url, htmx.status_code)
    login_link = htmx.headers.get("HX-Redirect") or htmx.get_data(as_text=True)
    assert "/login" in login_link, url
    assert not _changed(before), url


@pytest.mark.parametrize("route", _of(API))
def test_the_api_without_a_token_is_401_and_changes_nothing(world, route):
    rule, _, method = route
    url = _url(rule, world.values)
    before = _state()
    response = _send(world.anon, method, url)
    assert response.status_code == 401, (url, response.status_code)
    assert response.is_json and "person0" not in response.get_data(as_text=True)
    # A session is not a token: a logged-in admin's browser cannot be made to call it.
    assert _send(world.admin, method, url, csrf=False).status_code == 401, url
    assert not _changed(before), url


@pytest.mark.parametrize("route", _of(ADMIN, RQ))
def test_staff_are_refused_admin_pages_and_actions(world, route):
    rule, endpoint, method = route
    url = _url(rule, world.values)
    before = _state()
    for htmx in (False, True):
        response = _send(world.staff, method, url, htmx=htmx)
        assert response.status_code == 403, (url, htmx, response.status_code)
        assert "person0@example.com" not in response.get_data(as_text=True)
    assert not _changed(before), url


@pytest.mark.parametrize("route", _of(PUBLIC, LOGIN, ADMIN, RQ, methods=("GET",)))
def test_reads_change_no_row(world, route):
    rule, endpoint, method = route
    url = _url(rule, world.values)
    if endpoint == "rq_dashboard.requeue_all":
        return  # a state change upstream: refused on GET (below)
    for verb in ("GET", "HEAD", "OPTIONS"):
        before = _state()
        with world.admin._fresh_context():
            response = world.admin.client.open(url, method=verb, buffered=True)
        if response.status_code == 308:
            with world.admin._fresh_context():
                response = world.admin.client.open(
                    response.headers["Location"], method=verb, buffered=True
                )
        unready = endpoint == "health.health" and response.status_code == 503  # no worker here
        assert response.status_code < 500 or unready, (verb, url, response.status_code)
        assert _changed(before) <= WRITES_WHEN_READ.get(endpoint, set()), (verb, url)


@pytest.mark.parametrize(
    "url",
    ["/admin/rq/0/view/job/gone", "/admin/rq/0/data/job/gone.json", "/admin/rq/job/gone/requeue"],
)
def test_a_job_rq_no_longer_has_is_404_in_the_dashboard(world, url):
    # An admin follows a link to a job that RQ has since expired.
    if url.endswith("requeue"):
        with world.admin._fresh_context():
            response = world.admin.client.post(url, headers={"Origin": "http://localhost"})
    else:
        response = world.admin.get(url)
    assert response.status_code == 404, url


def test_rq_dashboard_requeue_all_is_refused_on_get(world):
    url = _url("/admin/rq/requeue/<queue_name>", world.values)
    assert world.admin.get(url).status_code == 405


@pytest.mark.parametrize("route", _of(PUBLIC, LOGIN, ADMIN, methods=STATE_CHANGES))
def test_state_changes_without_the_csrf_token_are_refused(world, route):
    rule, endpoint, method = route
    url = _url(rule, world.values)
    before = _state()
    for htmx in (False, True):
        response = _send(world.admin, method, url, csrf=False, htmx=htmx)
        assert response.status_code == 400, (url, htmx, response.status_code)
    assert not _changed(before), url


@pytest.mark.parametrize("route", _of(RQ, methods=STATE_CHANGES))
def test_rq_dashboard_posts_from_another_site_are_refused(world, route):
    rule, _, method = route
    url = _url(rule, world.values)
    with world.admin._fresh_context():
        response = world.admin.client.post(url, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403, url


@pytest.mark.parametrize("route", _of(SIGNED))
def test_signed_routes_refuse_what_is_not_signed(world, route):
    rule, _, method = route
    url = _url(rule, world.values)
    before = _state()
    with world.anon._fresh_context():
        response = world.anon.client.open(
            url, method=method, json=[{"event": "open", "email": "person0@example.com"}]
        )
    assert 400 <= response.status_code < 500, (url, response.status_code)
    assert not _changed(before), url


def _int_args(rule: str) -> list[str]:
    return re.findall(r"<int:([^>]+)>", rule)


@pytest.mark.parametrize(
    "route",
    [
        p
        for p in _of(LOGIN, ADMIN, API)
        if set(_int_args(p.values[0][0])) - {"number", "per_page", "page"}
    ],
)
def test_an_unknown_id_is_404(world, route):
    rule, endpoint, method = route
    for name in set(_int_args(rule)) - {"number", "per_page", "page"}:
        url = _url(rule, {**world.values, name: MISSING_ID})
        before = _state()
        if ROUTES[(endpoint, method)] == API:
            body = API_BODIES.get(endpoint, lambda world: {})(world)
            response = world.api.request(method, url, json=body)
        else:
            response = _send(world.admin, method, url)
        assert response.status_code == 404, (url, response.status_code)
        assert not _changed(before) - API_NOTES, url


@pytest.mark.parametrize(
    "route",
    [p for p in _of(LOGIN, ADMIN) if set(_int_args(p.values[0][0])) & PARENT_OF.keys()],
)
def test_an_id_under_another_parent_is_refused(world, route):
    """/campaigns/<lead>/steps/<a step of Client> never acts on the Client's step."""
    rule, endpoint, method = route
    for child in set(_int_args(rule)) & PARENT_OF.keys():
        if PARENT_OF[child] not in _int_args(rule):
            continue
        url = _url(rule, {**world.values, child: world.others[child]})
        before = _state()
        response = _send(world.admin, method, url)
        assert response.status_code == 404, (url, response.status_code)
        assert not _changed(before), url
