"""Blueprints: thin views that parse input, call the core, render a template."""

from __future__ import annotations

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError

from crm_app.extensions import login_manager
from crm_app.web.api.problems import is_api_request, problem_for
from crm_app.web.htmx import htmx_alert


def register_web(app: Flask) -> None:
    # The campaign blueprint's other pages (the email editor, versions, previews and
    # tests) register their views on import.
    from crm_app.web import (  # noqa: F401
        account,
        admin,
        analytics,
        auth,
        campaign_emails,
        campaign_tests,
        campaign_versions,
        campaigns,
        contacts,
        health,
        imports,
        integrations,
        main,
        suppressions,
        unsubscribe,
        users,
        webhooks,
        workspace,
    )
    from crm_app.web.api import register_api
    from crm_app.web.converters import DatabaseIdConverter
    from crm_app.web.filters import register_filters
    from crm_app.web.rq_dashboard_mount import mount_rq_dashboard

    # Before any route is added: their <int:...> ids then have an upper bound.
    app.url_map.converters["int"] = DatabaseIdConverter
    for blueprint in (
        auth.bp,
        main.bp,
        contacts.bp,
        imports.bp,
        campaigns.bp,
        analytics.bp,
        suppressions.bp,
        webhooks.bp,
        unsubscribe.bp,
        health.bp,
        admin.bp,
        users.bp,
        account.bp,
        workspace.bp,
        integrations.bp,
    ):
        app.register_blueprint(blueprint)
    register_api(app)
    register_filters(app)
    mount_rq_dashboard(app)

    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see that page."
    login_manager.login_message_category = "info"
    _register_error_pages(app)


def _register_error_pages(app: Flask) -> None:
    """Refusals as pages, or for htmx as an alert (a page swapped into a fragment would
    break the layout)."""

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        if request.htmx:
            return htmx_alert(
                f"Refused: the security token was missing or wrong ({error.description}). "
                "Nothing was saved. Reload the page and try again.",
                400,
            )
        return render_template("errors/csrf.html", reason=error.description), 400

    @app.errorhandler(403)
    def forbidden(error):
        if is_api_request():
            return problem_for(error)
        if request.htmx:
            return htmx_alert("Only admins can do this.", 403)
        return render_template("errors/403.html"), 403

    @app.errorhandler(404)
    def not_found(error):
        if is_api_request():  # an unknown URL under /api: no blueprint handler applies
            return problem_for(error)
        return render_template("errors/404.html"), 404
