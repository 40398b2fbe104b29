"""Gateway tables: the audit trail of consultations (rule R16)."""

from __future__ import annotations

import sqlalchemy as sa

from guichet_plumbing.db import UTCDateTime, new_metadata

metadata = new_metadata()

# Who asked, when, for which procedure and purpose, with what outcome. Never the
# civil status sent nor the data returned: the trail must not become a copy of them.
consultations = sa.Table(
    "consultations",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("procedure", sa.String(128), nullable=False),
    sa.Column("purpose", sa.String(64), nullable=False),
    sa.Column("consent", sa.Boolean(), nullable=False),
    sa.Column("agent_id", sa.String(128), nullable=False),
    sa.Column("recipient", sa.String(14), nullable=False),
    sa.Column("dataset", sa.String(32), nullable=False),
    sa.Column("provider", sa.String(64), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=False),
    sa.Column("upstream_code", sa.String(16), nullable=True),
)
# The audit listing filters by tenant (and procedure) and pages newest first.
sa.Index(
    "ix_consultations_tenant_listing",
    consultations.c.tenant,
    consultations.c.occurred_at,
    consultations.c.id,
)
sa.Index(
    "ix_consultations_procedure_listing",
    consultations.c.tenant,
    consultations.c.procedure,
    consultations.c.occurred_at,
    consultations.c.id,
)
