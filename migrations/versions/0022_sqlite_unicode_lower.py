"""SQLite: the indexes on lower(...) rebuilt with a lower() that knows every letter

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 20:30:00

SQLite's built-in lower() lower-cases A-Z only; the app now gives every SQLite
connection a lower() that is Python's str.lower (crm_app/extensions.py), as the app
lower-cases searches and addresses. The indexes on lower(...) of existing databases
were filed by the old one ("Élodie" under "Élodie"), so they are rebuilt. search_text
is a VIRTUAL column on SQLite (0009): it is computed on read and needs nothing.

The unique index on lower(email) cannot be rebuilt while two contacts have addresses
that differ only by the case of a non-ASCII letter ("Émile@" and "émile@", which the
old lower() let in): the migration names them and stops, for a person to merge or
correct them first. PostgreSQL's lower() follows the database's ctype and changes
nothing here.
"""

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None

LOWER_INDEXES = (
    'uq_contacts_email_lower',
    'ix_contacts_name_order',
    'ix_contacts_type_name_order',
    'ix_contacts_email_order',
    'ix_contacts_company_order',
)


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        return
    if bind.execute(sa.text("SELECT lower('É')")).scalar() != 'é':
        raise RuntimeError(
            "this SQLite connection has the built-in lower(): run the migration through "
            "the app (flask db upgrade), which gives every connection the Unicode lower()"
        )
    clashes = bind.execute(
        sa.text(
            'SELECT lower(email), COUNT(*) FROM contacts NOT INDEXED GROUP BY lower(email) '
            'HAVING COUNT(*) > 1 ORDER BY 1'
        )
    ).all()
    if clashes:
        listed = ', '.join(f'{address} ({count} contacts)' for address, count in clashes[:20])
        raise RuntimeError(
            'these addresses belong to more than one contact once every letter is '
            f'lower-cased: {listed}. Merge or correct them, then run the migration again.'
        )
    for name in LOWER_INDEXES:
        op.execute(f'REINDEX {name}')


def downgrade():
    # The indexes fit the connection's lower(): with the Unicode one they stay right.
    pass
