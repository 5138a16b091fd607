"""email_events: the message key becomes a trigger on PostgreSQL

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 19:30:00

Each event the webhook stores checked its foreign key to `messages` row by row (a
lookup and a KEY SHARE lock per event): 10 of the 25 ms a 1,000-event INSERT took.
The key did one job, ON DELETE SET NULL when a message goes (with its enrolment, when
a contact or a campaign is deleted). On PostgreSQL a statement-level trigger on
`messages` now does that job, once per DELETE statement; the webhook only ever stores
message ids it has just read. SQLite keeps the key (it cannot drop one without
rebuilding the table; the model says so: `sqlite_only`).
"""

from alembic import op


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

KEY = 'fk_email_events_message_id_messages'


def _postgres() -> bool:
    return op.get_bind().dialect.name == 'postgresql'


def upgrade():
    if not _postgres():
        return
    op.drop_constraint(KEY, 'email_events', type_='foreignkey')
    op.execute(
        """
        CREATE FUNCTION email_events_forget_messages() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE email_events SET message_id = NULL
            WHERE message_id IN (SELECT id FROM gone);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER messages_deleted_forget_events
        AFTER DELETE ON messages REFERENCING OLD TABLE AS gone
        FOR EACH STATEMENT EXECUTE FUNCTION email_events_forget_messages()
        """
    )


def downgrade():
    if not _postgres():
        return
    op.execute('DROP TRIGGER messages_deleted_forget_events ON messages')
    op.execute('DROP FUNCTION email_events_forget_messages()')
    # A message id the trigger could not see go (a race with an insert) must not stop
    # the key from coming back.
    op.execute(
        'UPDATE email_events SET message_id = NULL WHERE message_id IS NOT NULL '
        'AND NOT EXISTS (SELECT 1 FROM messages WHERE messages.id = email_events.message_id)'
    )
    op.create_foreign_key(
        KEY, 'email_events', 'messages', ['message_id'], ['id'], ondelete='SET NULL'
    )
