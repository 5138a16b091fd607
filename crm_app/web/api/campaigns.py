"""API: the campaigns (to enrol by id)."""

from __future__ import annotations

from crm_app.drip.api.records import list_campaigns
from crm_app.extensions import db
from crm_app.web.api import bp, documented
from crm_app.web.api.schemas import CampaignList


@bp.route("/campaigns", methods=["GET"], tags=["campaigns"])
@bp.response(200, CampaignList)
@documented(401, 429)
def campaigns():
    """Every campaign, with its status and number of emails."""
    items = [
        {
            "id": campaign.id,
            "slug": campaign.slug,
            "name": campaign.name,
            "status": campaign.status,
            "contact_type": campaign.contact_type,
            "steps": steps,
        }
        for campaign, steps in list_campaigns(db.session)
    ]
    return {"items": items}
