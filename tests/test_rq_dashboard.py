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


def test_cross_site_post_is_refused_even_for_admins(app, admin):
    empty_url = f"/admin/rq/queue/{app.config['RQ_QUEUE']}/queued/empty"
    forged = admin.post(empty_url, csrf=False, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    same_site = admin.post(empty_url, csrf=False, headers={"Origin": "http://localhost"})
    assert same_site.status_code == 200


# A queue name that breaks out of a JavaScript string: rq-dashboard 0.9.0 writes it
# between quotes, unescaped, in its jobs script (no "/" in it: a URL segment has none).
XSS_QUEUE = "q');alert(document.cookie);('"


def _redis(app):
    return redis.Redis.from_url(app.config["REDIS_URL"])


def test_a_queue_name_from_the_url_is_never_written_into_script_unescaped(app, admin):
    # A real queue of that name (the worst case): the page renders, the name is JSON.
    Queue(XSS_QUEUE, connection=_redis(app)).enqueue("builtins.print", "hello")
    page = admin.get(f"/admin/rq/0/view/jobs/{XSS_QUEUE}/queued/8/asc/1")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert XSS_QUEUE not in html
    assert '$(this).val("q\\u0027);alert(document.cookie);(\\u0027");' in html


def test_a_queue_that_does_not_exist_is_a_404(admin):
    response = admin.get(f"/admin/rq/0/view/jobs/{XSS_QUEUE}/queued/8/asc/1")
    assert response.status_code == 404
    assert XSS_QUEUE not in response.get_data(as_text=True)
    assert admin.get("/admin/rq/0/data/jobs/nope/failed/8/asc/1.json").status_code == 404
    assert admin.get("/admin/rq/7/view/queues").status_code == 404


def test_requeue_all_is_refused_on_get_and_works_on_a_same_site_post(app, admin):
    queue = Queue(app.config["RQ_QUEUE"], connection=_redis(app))
    job = queue.enqueue("builtins.print", "hello")
    queue.remove(job)
    queue.failed_job_registry.add(job, ttl=3600, exc_string="boom")

    refused = admin.get(f"/admin/rq/requeue/{queue.name}")
    assert refused.status_code == 405
    assert refused.headers["Allow"] == "POST"
    assert queue.failed_job_registry.get_job_ids() == [job.id]

    done = admin.post(
        f"/admin/rq/requeue/{queue.name}", csrf=False, headers={"Origin": "http://localhost"}
    )
    assert done.status_code == 200 and done.get_json()["count"] == 1
    assert queue.failed_job_registry.get_job_ids() == []


def test_the_dashboards_inline_script_runs_by_nonce_only(admin):
    page = admin.get("/admin/rq/")
    policy = page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    nonce = policy.split("'nonce-", 1)[1].split("'", 1)[0]
    assert f'<script type="text/javascript" nonce="{nonce}">' in html
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert "frame-ancestors 'none'" in policy


def test_the_jobs_tab_opens_on_the_apps_queue(app, admin):
    """With no queue chosen, rq-dashboard shows its "default" queue, which the app never
    uses: the tab's page asked for it, got a 404 and stayed on "Loading..."."""
    queue = app.config["RQ_QUEUE"]
    response = admin.get("/admin/rq/0/view/jobs")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/admin/rq/0/view/jobs/{queue}/queued/8/asc/1")
    page = admin.get(response.headers["Location"])
    assert page.status_code == 200
    assert admin.get(f"/admin/rq/0/data/jobs/{queue}/queued/8/asc/1.json").status_code == 200
