"""The data of bench/pages_bench.py: a migrated database with the four campaigns and a
login, then N contacts (realistic names, companies, titles, industries and custom
fields), each with one active enrolment and one activity, loaded with COPY."""

from __future__ import annotations

import json
import os
import random
import time
from datetime import UTC, datetime, timedelta

import psycopg
import sqlalchemy as sa

PASSWORD = "bench-password"

FIRST_NAMES = (
    "Ada Akira Ana Anna Ben Carla Chen Dan Elena Emma Eva Felix Hana Hiro Ines Ivan James "
    "Jin Julia Kai Kenji Lara Lea Leo Liam Lina Luis Maya Mia Mika Nina Noah Olga Omar "
    "Paul Rosa Sara Sofia Tom Yuki Zoe"
).split()
# 100 family names: "tanaka" matches about 1 % of the contacts.
LAST_NAMES = (
    "Abe Adams Alvarez Bauer Becker Brown Castro Chen Clark Cohen Costa Cruz Davis Dubois "
    "Evans Fischer Fontaine Garcia Gomez Gonzalez Green Hall Hansen Harris Hill Hoffmann "
    "Horvat Ito Jackson Jansen Johnson Jones Kato Kim King Klein Koch Kowalski Kumar Lambert "
    "Larsen Lee Lewis Lopez Martin Martinez Meyer Miller Moore Morel Moreau Muller Murphy "
    "Nagy Nakamura Nguyen Nielsen Novak Ortiz Park Patel Perez Petit Popescu Quinn Ramos "
    "Reyes Richter Roberts Robin Rossi Roux Russo Sanchez Sato Schmidt Schneider Schulz "
    "Silva Singh Smith Suzuki Takahashi Tanaka Taylor Thomas Torres Varga Wagner Walker "
    "Wang Watanabe Weber White Wilson Wright Yamamoto Young Zhang"
).split()
COMPANIES = (
    "Acme Globex Initech Umbrella Stark Wayne Wonka Hooli Vehement Massive Soylent Tyrell "
    "Cyberdyne Aperture Oscorp Gringotts Monarch Nakatomi Vandelay Pied"
).split()
COMPANY_KINDS = ("Ltd", "GmbH", "Inc", "Labs", "Group", "Partners", "Systems", "Studio")
TITLES = (
    "CEO", "CTO", "Head of Sales", "Marketing Manager", "Engineer", "Buyer", "Founder",
    "Operations Lead", "Consultant", "Product Manager",
)  # fmt: skip
INDUSTRIES = (
    "Software", "Retail", "Manufacturing", "Healthcare", "Finance", "Logistics",
    "Education", "Energy", "Media", "Hospitality",
)  # fmt: skip
INTERESTS = ("automation", "reporting", "pricing", "integrations", "security", "onboarding")
SOURCES = ("webinar", "referral", "trade show", "website", "partner")
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney")
TYPES = ("networking", "lead", "prospect", "client")


def naive(moment: datetime) -> datetime:
    """UTCDateTime stores naive UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def prepare_app(url: str) -> dict:
    """Migrate, seed the four campaigns and add the bench's login; returns what the load
    needs (campaign id and name by type, the user's id)."""
    os.environ.setdefault("SECRET_KEY", "bench-secret-key")
    from flask_migrate import upgrade

    from crm_app import create_app
    from crm_app.drip.campaigns.seed import seed_default_campaigns
    from crm_app.extensions import db
    from crm_app.models import Campaign, User

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None})
    with app.app_context():
        upgrade()
        seed_default_campaigns(db.session)
        user = User(email="bench@example.com", role="admin", name="Bench")
        user.set_password(PASSWORD)
        db.session.add(user)
        db.session.commit()
        campaigns = {
            c.contact_type: (c.id, c.name, c.steps[0].id)
            for c in db.session.scalars(sa.select(Campaign))
        }
        info = {"campaigns": campaigns, "user_id": user.id}
        db.session.remove()
        db.engine.dispose()
    return info


def contact_row(i: int, rng: random.Random, owner_id: int, now: datetime) -> tuple:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    company = f"{rng.choice(COMPANIES)} {rng.choice(COMPANY_KINDS)}"
    custom = {"interest": rng.choice(INTERESTS), "source": rng.choice(SOURCES)}
    created = naive(now - timedelta(seconds=rng.uniform(0, 730 * 86400)))
    return (
        i, first, last, f"user{i}@example{i % 50}.com", "", company, rng.choice(TITLES),
        rng.choice(INDUSTRIES), TYPES[i % 4], rng.choice(ZONES),
        owner_id if i % 2 else None, "", json.dumps(custom), "ok", created, created,
    )  # fmt: skip


def load(conn: psycopg.Connection, count: int, info: dict, seed: int) -> None:
    """COPY `count` contacts, each with one active enrolment in its type's campaign and
    one "enrolled" activity."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    campaigns = info["campaigns"]
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        with cur.copy(
            "COPY contacts (id, first_name, last_name, email, phone, company, title, industry,"
            " contact_type, timezone, owner_id, notes, custom_fields, email_status, created_at,"
            " updated_at) FROM STDIN"
        ) as copy:
            created = {}
            for i in range(1, count + 1):
                row = contact_row(i, rng, info["user_id"], now)
                created[i] = row[-1]
                copy.write_row(row)
        with cur.copy(
            "COPY enrollments (id, contact_id, campaign_id, status, current_step_id, next_send_at,"
            " source, enrolled_by, enrolled_at, end_reason) FROM STDIN"
        ) as copy:
            for i in range(1, count + 1):
                campaign_id, _, first_step_id = campaigns[TYPES[i % 4]]
                due = naive(now + timedelta(seconds=rng.uniform(0, 30 * 86400)))
                row = (i, i, campaign_id, "active", first_step_id, due, "auto", "bench")
                copy.write_row((*row, created[i], ""))
        with cur.copy(
            "COPY activities (contact_id, kind, detail, actor, campaign_id, enrollment_id,"
            " created_at) FROM STDIN"
        ) as copy:
            for i in range(1, count + 1):
                campaign_id, name, _ = campaigns[TYPES[i % 4]]
                copy.write_row(
                    (i, "enrolled", f"Enrolled in {name} (auto)", "bench", campaign_id, i,
                     created[i])
                )  # fmt: skip
        for table in ("contacts", "enrollments"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
    conn.commit()
    print(f"  {count:,} contacts, enrolments and activities copied in "
          f"{time.perf_counter() - t0:.1f}s")  # fmt: skip
    t0 = time.perf_counter()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")  # what autovacuum does after a load: stats + visibility
    # The load's dirty pages written out now, not by the checkpointer during the timed
    # loops (a run whose bare route fell from 2,300 to 1,100 requests/s waited on the disk).
    try:
        conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        pass  # not a superuser: the checkpointer will write them when it does
    os.sync()
    print(f"  VACUUM ANALYZE and CHECKPOINT in {time.perf_counter() - t0:.1f}s")
