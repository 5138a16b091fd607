"""Blueprints: thin views that parse input, call the core, render a template."""

from __future__ import annotations

from flask import Flask, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from crm_app.extensions import db, login_manager
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
        blocks,
        campaign_emails,
        campaign_tests,
        campaign_versions,
        campaigns,
        contacts,
        contacts_bulk,
        experiments,
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
    from crm_app.web.navigation import main_nav
    from crm_app.web.rq_dashboard_mount import mount_rq_dashboard

    # Before any route is added: their <int:...> ids then have an upper bound.
    app.url_map.converters["int"] = DatabaseIdConverter
    for blueprint in (
        auth.bp,
        main.bp,
        contacts.bp,
        imports.bp,
        contacts_bulk.bp,
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
        blocks.bp,
    ):
        app.register_blueprint(blueprint)
    register_api(app)
    register_filters(app)
    app.add_template_global(main_nav, "main_nav")
    mount_rq_dashboard(app)

    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see that page."
    login_manager.login_message_category = "info"
    _register_error_pages(app)


def _register_error_pages(app: Flask) -> None:
    """Refusals as pages, or for htmx as an alert (a page swapped into a fragment would
    break the layout)."""
    from crm_app.web.auth import signed_out

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        # The token lives in the session: no session (expired, logged out elsewhere) is
        # the usual cause, and the person needs to hear that, not about tokens.
        if not current_user.is_authenticated and request.endpoint != "auth.login":
            return signed_out()
        message = "This page is out of date, so nothing was saved. Reload it and try again."
        if request.htmx:
            return htmx_alert(message, 400)
        return render_template("errors/csrf.html", message=message), 400

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
        if request.htmx:
            # An action on a record deleted meanwhile (in another tab, by a colleague):
            # not a fault of ours, and trying again will not help.
            return htmx_alert(
                "This record no longer exists (it may have been deleted), so nothing was saved.",
                404,
            )
        return render_template("errors/404.html"), 404

    @app.errorhandler(500)
    def server_error(error):
        # A failed statement leaves the session unusable; the page must not depend on
        # it either (500.html is standalone: no user, no database).
        db.session.rollback()
        if request.htmx:
            return htmx_alert(
                "Something went wrong on our side, so nothing was saved. Please try again.",
                500,
            )
        return render_template("errors/500.html"), 500
