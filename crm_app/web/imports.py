"""CSV import pages (staff and admins): upload, map the columns, watch the progress,
download the failed rows. The work is crm_app/drip/audience/imports.py and an RQ job."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from crm_app.config import settings_of
from crm_app.drip.audience.contacts import owner_choices
from crm_app.drip.audience.import_files import ImportFileError
from crm_app.drip.audience.imports import (
    ImportSetupError,
    ImportStateError,
    configure_import,
    create_import,
    delimiter_name,
    failed_rows_csv,
    first_failures,
    import_state,
    recent_imports,
    resume_import,
    setup_values,
    target_choices,
)
from crm_app.drip.common.timezones import TIMEZONE_CHOICES
from crm_app.extensions import db
from crm_app.models import CONTACT_TYPES, ContactImport, utcnow
from crm_app.queue import enqueue_import
from crm_app.web.auth import actor_name
from crm_app.web.body_limits import body_limit
from crm_app.web.body_limits import too_large as generic_too_large
from crm_app.web.htmx import action_response, render_fragment_or_page

bp = Blueprint("imports", __name__, url_prefix="/imports")


def _index(errors: dict | None = None, status: int = 200):
    settings = settings_of(current_app)
    result = recent_imports(
        db.session,
        page=request.args.get("page", 1, type=int),
        now=utcnow(),
        stall_seconds=settings.import_stall_seconds,
    )
    page = render_fragment_or_page(
        "imports/_upload.html",
        "imports/index.html",
        target="upload-form",
        result=result,
        errors=errors or {},
        max_mb=settings.import_max_bytes // (1024 * 1024),
    )
    return page, status


@bp.errorhandler(RequestEntityTooLarge)
def _upload_too_large(error: RequestEntityTooLarge):
    """body_limits refused the upload by its Content-Length, before CSRF or the view read
    a byte of it: say so next to the file field rather than on the generic 413 page.
    The view's login_required has not run yet: a visitor gets the generic page, not the
    list of imports."""
    if request.endpoint != "imports.upload" or not current_user.is_authenticated:
        return generic_too_large(error)
    limit = settings_of(current_app).import_max_bytes
    too_large = f"The file is larger than the limit of {limit / (1024 * 1024):.0f} MB. "
    too_large += "Split it into smaller files and import them one after the other."
    return _index({"file": too_large}, 413)


@bp.get("/")
@login_required
def index():
    return _index()


@bp.post("/")
@body_limit("import_upload_max_bytes")
@login_required
def upload():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _index({"file": "Choose a CSV file to upload."}, 422)
    try:
        contact_import = create_import(
            db.session,
            filename=upload.filename,
            content=upload.read(),
            actor=actor_name(),
            max_bytes=settings_of(current_app).import_max_bytes,
            default_owner_id=current_user.id,
        )
    except ImportFileError as refused:
        db.session.rollback()
        return _index(refused.errors, 422)
    db.session.commit()
    return action_response(
        url_for("imports.detail", import_id=contact_import.id),
        f"Read {contact_import.total_rows} row{'' if contact_import.total_rows == 1 else 's'} "
        f"from {contact_import.filename}: "
        "check the columns, then start the import.",
    )


def _setup(contact_import: ContactImport, values, errors, status: int = 200):
    page = render_fragment_or_page(
        "imports/_setup.html",
        "imports/setup.html",
        target="import-setup",
        contact_import=contact_import,
        values=values,
        errors=errors,
        choices=target_choices(),
        types=CONTACT_TYPES,
        owners=owner_choices(db.session),
        timezones=TIMEZONE_CHOICES,
        delimiter=delimiter_name(contact_import),
    )
    return page, status


@bp.get("/<int:import_id>")
@login_required
def detail(import_id: int):
    contact_import = db.get_or_404(ContactImport, import_id)
    if contact_import.status == "draft":
        return _setup(contact_import, setup_values(contact_import), {})
    settings = settings_of(current_app)
    state = import_state(contact_import, now=utcnow(), stall_seconds=settings.import_stall_seconds)
    # The progress panel polls this URL, and gets the panel alone.
    return render_fragment_or_page(
        "imports/_progress.html",
        "imports/detail.html",
        target="import-progress",
        contact_import=contact_import,
        state=state,
        failures=first_failures(db.session, contact_import),
    )


def _enqueue_and_answer(contact_import: ContactImport, message: str):
    """After the commit: put the job on the queue. If Redis is down the import waits,
    shown as stalled, and Resume queues it again."""
    url = url_for("imports.detail", import_id=contact_import.id)
    try:
        enqueue_import(contact_import.id)
    except RedisError as error:
        current_app.logger.warning("import %s not queued: %s", contact_import.id, error)
        return action_response(
            url, "Saved, but the job queue cannot be reached: press Resume later.", "error"
        )
    return action_response(url, message)


@bp.post("/<int:import_id>/start")
@login_required
def start(import_id: int):
    contact_import = db.get_or_404(ContactImport, import_id)
    try:
        configure_import(db.session, contact_import, request.form, actor=actor_name())
    except ImportSetupError as invalid:
        db.session.rollback()
        return _setup(contact_import, request.form, invalid.errors, 422)
    except ImportStateError as refused:
        db.session.rollback()
        url = url_for("imports.detail", import_id=import_id)
        return action_response(url, str(refused), "error")
    db.session.commit()
    return _enqueue_and_answer(contact_import, f"Importing {contact_import.filename}.")


@bp.post("/<int:import_id>/resume")
@login_required
def resume(import_id: int):
    contact_import = db.get_or_404(ContactImport, import_id)
    stall_seconds = settings_of(current_app).import_stall_seconds
    try:
        resume_import(
            db.session,
            contact_import,
            actor=actor_name(),
            now=utcnow(),
            stall_seconds=stall_seconds,
        )
    except ImportStateError as refused:
        db.session.rollback()
        url = url_for("imports.detail", import_id=import_id)
        return action_response(url, str(refused), "error")
    db.session.commit()
    done = contact_import.rows_done
    return _enqueue_and_answer(contact_import, f"Resumed after row {done}.")


@bp.get("/<int:import_id>/failed-rows.csv")
@login_required
def failed_rows(import_id: int):
    contact_import = db.get_or_404(ContactImport, import_id)
    return Response(
        stream_with_context(failed_rows_csv(db.session, contact_import)),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="import-{import_id}-failed-rows.csv"'
        },
    )
