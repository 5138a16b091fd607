"""Blueprints: thin views that parse input, call the core, render a template."""

from __future__ import annotations

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError

from crm_app.extensions import login_manager


def register_web(app: Flask) -> None:
    from crm_app.web import auth, campaigns, contacts, main
    from crm_app.web.filters import register_filters

    app.register_blueprint(auth.bp)
    app.register_blueprint(main.bp)
    app.register_blueprint(contacts.bp)
    app.register_blueprint(campaigns.bp)
    register_filters(app)
    from crm_app.web.rq_dashboard_mount import mount_rq_dashboard

    mount_rq_dashboard(app)

    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see that page."
    login_manager.login_message_category = "info"

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return render_template("errors/csrf.html", reason=error.description), 400

    @app.errorhandler(403)
    def forbidden(error):
        return render_template("errors/403.html"), 403

    @app.errorhandler(404)
    def not_found(error):
        return render_template("errors/404.html"), 404
