"""Blueprints: thin views that parse input, call the core, render a template."""

from __future__ import annotations

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError

from crm_app.extensions import login_manager
from crm_app.web.htmx import htmx_alert


def register_web(app: Flask) -> None:
    from crm_app.web import (
        admin,
        analytics,
        auth,
        campaigns,
        contacts,
        contacts_bulk,
        health,
        main,
        suppressions,
        unsubscribe,
        webhooks,
    )
    from crm_app.web.filters import register_filters
    from crm_app.web.rq_dashboard_mount import mount_rq_dashboard

    for blueprint in (
        auth.bp,
        main.bp,
        contacts.bp,
        contacts_bulk.bp,
        campaigns.bp,
        analytics.bp,
        suppressions.bp,
        webhooks.bp,
        unsubscribe.bp,
        health.bp,
        admin.bp,
    ):
        app.register_blueprint(blueprint)
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
        if request.htmx:
            return htmx_alert("Only admins can do this.", 403)
        return render_template("errors/403.html"), 403

    @app.errorhandler(404)
    def not_found(error):
        return render_template("errors/404.html"), 404
