"""api and outbound webhooks: API tokens, Idempotency-Key answers, webhook endpoints,
deliveries and attempts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 04:19:37.773592

"""
from alembic import op
import sqlalchemy as sa

import crm_app.models.types


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

UTC_DATETIME = crm_app.models.types.UTCDateTime
PENDING = sa.text("status = 'pending'")


def upgrade():
    # API tokens: only a sha256 of each secret is kept.
    op.create_table(
        'api_tokens',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.Column('scope', sa.String(length=16), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('token_prefix', sa.String(length=16), nullable=False),
        sa.Column('created_by', sa.String(length=120), nullable=False),
        sa.Column('created_at', UTC_DATETIME(), nullable=False),
        sa.Column('revoked_at', UTC_DATETIME(), nullable=True),
        sa.Column('last_used_at', UTC_DATETIME(), nullable=True),
        sa.CheckConstraint("scope IN ('read', 'read_write')", name=op.f('ck_api_tokens_scope')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash')),
    )

    # One row per (token, Idempotency-Key): the unique key is what stops two requests
    # with the same key from both running.
    op.create_table(
        'api_idempotency_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('response_status', sa.Integer(), nullable=True),
        sa.Column('response_body', sa.Text(), nullable=True),
        sa.Column('response_headers', sa.JSON(), nullable=False),
        sa.Column('created_at', UTC_DATETIME(), nullable=False),
        sa.Column('locked_at', UTC_DATETIME(), nullable=False),
        sa.CheckConstraint(
            "status IN ('in_progress', 'done')", name=op.f('ck_api_idempotency_keys_status')
        ),
        sa.ForeignKeyConstraint(
            ['token_id'], ['api_tokens.id'],
            name=op.f('fk_api_idempotency_keys_token_id_api_tokens'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_idempotency_keys')),
        sa.UniqueConstraint('token_id', 'key', name='uq_api_idempotency_keys_token_key'),
    )
    op.create_index(
        'ix_api_idempotency_keys_created_at', 'api_idempotency_keys', ['created_at']
    )

    op.create_table(
        'webhook_endpoints',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('description', sa.String(length=200), nullable=False),
        sa.Column('event_types', sa.JSON(), nullable=False),
        sa.Column('secret', sa.String(length=100), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('created_by', sa.String(length=120), nullable=False),
        sa.Column('created_at', UTC_DATETIME(), nullable=False),
        sa.Column('updated_at', UTC_DATETIME(), nullable=False),
        sa.Column('failing_since', UTC_DATETIME(), nullable=True),
        sa.Column('disabled_reason', sa.Text(), nullable=False),
        sa.Column('deleted_at', UTC_DATETIME(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints')),
    )

    # One delivery per (event, endpoint); event_id is the webhook-id receivers dedupe on.
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.String(length=40), nullable=False),
        sa.Column('event_type', sa.String(length=40), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', UTC_DATETIME(), nullable=True),
        sa.Column('enqueued_at', UTC_DATETIME(), nullable=True),
        sa.Column('claimed_at', UTC_DATETIME(), nullable=True),
        sa.Column('last_attempt_at', UTC_DATETIME(), nullable=True),
        sa.Column('response_status', sa.Integer(), nullable=True),
        sa.Column('duration_ms', sa.Integer(), nullable=True),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('created_at', UTC_DATETIME(), nullable=False),
        sa.Column('delivered_at', UTC_DATETIME(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f('ck_webhook_deliveries_status'),
        ),
        sa.ForeignKeyConstraint(
            ['endpoint_id'], ['webhook_endpoints.id'],
            name=op.f('fk_webhook_deliveries_endpoint_id_webhook_endpoints'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
        sa.UniqueConstraint(
            'endpoint_id', 'event_id', name='uq_webhook_deliveries_endpoint_event'
        ),
    )
    # The sweep's query: pending deliveries by due time (a partial index stays small).
    op.create_index(
        'ix_webhook_deliveries_due', 'webhook_deliveries', ['next_attempt_at'],
        sqlite_where=PENDING, postgresql_where=PENDING,
    )
    # An endpoint's delivery log, newest first.
    op.create_index(
        'ix_webhook_deliveries_endpoint_id', 'webhook_deliveries', ['endpoint_id', 'id']
    )

    op.create_table(
        'webhook_attempts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('delivery_id', sa.Integer(), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('attempted_at', UTC_DATETIME(), nullable=False),
        sa.Column('response_status', sa.Integer(), nullable=True),
        sa.Column('duration_ms', sa.Integer(), nullable=False),
        sa.Column('succeeded', sa.Boolean(), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ['delivery_id'], ['webhook_deliveries.id'],
            name=op.f('fk_webhook_attempts_delivery_id_webhook_deliveries'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts')),
    )
    op.create_index('ix_webhook_attempts_delivery_id', 'webhook_attempts', ['delivery_id'])


def downgrade():
    op.drop_index('ix_webhook_attempts_delivery_id', table_name='webhook_attempts')
    op.drop_table('webhook_attempts')
    op.drop_index('ix_webhook_deliveries_endpoint_id', table_name='webhook_deliveries')
    op.drop_index(
        'ix_webhook_deliveries_due', table_name='webhook_deliveries',
        sqlite_where=PENDING, postgresql_where=PENDING,
    )
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_endpoints')
    op.drop_index('ix_api_idempotency_keys_created_at', table_name='api_idempotency_keys')
    op.drop_table('api_idempotency_keys')
    op.drop_table('api_tokens')
