"""messages: the enrolment and step keys become statement triggers on PostgreSQL

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 09:00:00

Each message row the tick created checked two foreign keys, a lookup and a KEY SHARE
lock each: its enrolment (which the tick itself had just read and locked FOR UPDATE)
and its step (which that enrolment points to, under its own key). At 1,000,000
enrolments with 100,000 due (bench/delivery_bench.py's load, each run on a copy of one
freshly loaded database, three alternations): the tick's 20 INSERTs took 3.4-4.3 s with
the keys and 1.8-2.3 s without, the whole tick 10.8-13.1 s and 9.6-11.4 s, the
database's CPU 9.0-10.8 s and 7.7-9.2 s. What the keys did on a delete is now done once per DELETE statement by a trigger
on the parent table: a deleted enrolment takes its messages with it (CASCADE; the
unique key (enrollment_id, step_id) finds them), a deleted step leaves its messages
tied to no step (SET NULL: what was sent stays). Only the tick inserts messages, from
the enrolments it holds locked, so no new row can point at a parent being deleted.
SQLite keeps the keys (the model says so: `sqlite_only`).
"""

from alembic import op


# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

# (column, parent table, what a deleted parent does to its messages)
KEYS = (
    ('enrollment_id', 'enrollments', 'DELETE FROM messages WHERE enrollment_id IN (SELECT id FROM gone)'),
    ('step_id', 'campaign_steps',
     'UPDATE messages SET step_id = NULL WHERE step_id IN (SELECT id FROM gone)'),
)
ON_DELETE = {'enrollments': 'CASCADE', 'campaign_steps': 'SET NULL'}


def _postgres() -> bool:
    return op.get_bind().dialect.name == 'postgresql'


def upgrade():
    if not _postgres():
        return
    for column, parent, action in KEYS:
        op.drop_constraint(f'fk_messages_{column}_{parent}', 'messages', type_='foreignkey')
        op.execute(
            f"""
            CREATE FUNCTION messages_forget_{parent}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                {action};
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER {parent}_deleted_forget_messages
            AFTER DELETE ON {parent} REFERENCING OLD TABLE AS gone
            FOR EACH STATEMENT EXECUTE FUNCTION messages_forget_{parent}()
            """
        )


def downgrade():
    if not _postgres():
        return
    for column, parent, _ in KEYS:
        op.execute(f'DROP TRIGGER {parent}_deleted_forget_messages ON {parent}')
        op.execute(f'DROP FUNCTION messages_forget_{parent}()')
        # A row the trigger could not see go (a race with an insert) must not stop the
        # key from coming back.
        orphans = (
            f'messages.{column} IS NOT NULL AND NOT EXISTS '
            f'(SELECT 1 FROM {parent} WHERE {parent}.id = messages.{column})'
        )
        if ON_DELETE[parent] == 'CASCADE':
            op.execute(f'DELETE FROM messages WHERE {orphans}')
        else:
            op.execute(f'UPDATE messages SET {column} = NULL WHERE {orphans}')
        op.create_foreign_key(
            f'fk_messages_{column}_{parent}', 'messages', parent, [column], ['id'],
            ondelete=ON_DELETE[parent],
        )
