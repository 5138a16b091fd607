"""Blueprints: thin views that parse input, call the core, render a template."""

from __future__ import annotations

from flask import Flask, make_response, render_template, request
from flask_wtf.csrf import CSRFError

from crm_app.extensions import login_manager


def register_web(app: Flask) -> None:
    from crm_app.web import auth, campaigns, contacts, main
    from crm_app.web.filters import register_filters

    app.register_blueprint(auth.bp)
    app.register_blueprint(main.bp)
    app.register_blueprint(contacts.bp)
    app.register_blueprint(campaigns.bp)
    from crm_app.web import analytics, suppressions

    app.register_blueprint(analytics.bp)
    app.register_blueprint(suppressions.bp)
    from crm_app.web import admin, health, unsubscribe, webhooks

    app.register_blueprint(webhooks.bp)
    app.register_blueprint(unsubscribe.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(admin.bp)
    register_filters(app)
    from crm_app.web.rq_dashboard_mount import mount_rq_dashboard

    mount_rq_dashboard(app)

    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see that page."
    login_manager.login_message_category = "info"

    def htmx_alert(message: str, status: int):
        # Swapped into the page's alert area, not into the fragment the request targeted.
        response = make_response(render_template("errors/_alert.html", message=message), status)
        response.headers["HX-Retarget"] = "#htmx-alerts"
        response.headers["HX-Reswap"] = "innerHTML"
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        if request.headers.get("HX-Request"):
            return htmx_alert(
                f"Refused: the security token was missing or wrong ({error.description}). "
                "Nothing was saved. Reload the page and try again.",
                400,
            )
        return render_template("errors/csrf.html", reason=error.description), 400

    @app.errorhandler(403)
    def forbidden(error):
        if request.headers.get("HX-Request"):
            return htmx_alert("Only admins can do this.", 403)
        return render_template("errors/403.html"), 403

    @app.errorhandler(404)
    def not_found(error):
        return render_template("errors/404.html"), 404
