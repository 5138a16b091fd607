"""The RQ dashboard is inside the app, for admins only, on the app's Redis."""

import redis
from rq import Queue


def test_admin_sees_the_dashboard_with_the_apps_queue(app, admin):
    Queue(app.config["RQ_QUEUE"], connection=redis.Redis.from_url(app.config["REDIS_URL"])).enqueue(
        "builtins.print", "hello"
    )
    page = admin.get("/admin/rq/")
    assert page.status_code == 200
    queues = admin.get("/admin/rq/0/data/queues.json")
    assert queues.status_code == 200
    names = [q["name"] for q in queues.get_json()["queues"]]
    assert app.config["RQ_QUEUE"] in names


def test_staff_get_403(staff):
    assert staff.get("/admin/rq/").status_code == 403
    assert staff.get("/admin/rq/0/data/queues.json").status_code == 403


def test_logged_out_goes_to_login(web):
    response = web.get("/admin/rq/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_cross_site_post_is_refused_even_for_admins(admin):
    forged = admin.post(
        "/admin/rq/queue/drip/queued/empty", csrf=False, headers={"Origin": "https://evil.example"}
    )
    assert forged.status_code == 403
    same_site = admin.post(
        "/admin/rq/queue/drip/queued/empty", csrf=False, headers={"Origin": "http://localhost"}
    )
    assert same_site.status_code == 200
