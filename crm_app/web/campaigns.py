from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")


@bp.get("/")
@login_required
def index():
    return render_template("campaigns/index.html")
