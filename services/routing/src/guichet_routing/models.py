"""Routing's tables: the tenant's services, its routing rules, and what was assigned where."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from guichet_plumbing.db import UTCDateTime, new_metadata

metadata = new_metadata()


@sa.event.listens_for(metadata, "before_create")
def _trigrams(_target: sa.MetaData, connection: sa.Connection, **_: Any) -> None:
    """The inbox's text search (ILIKE '%…%') uses trigram indexes on PostgreSQL; pg_trgm
    is a trusted extension, so the database owner may create it. SQLite scans."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    # Where a request goes when no rule matches: never nowhere.
    sa.Column("default_service", sa.String(64), nullable=False),
    # Digests go out at the tenant's local hour (R28).
    sa.Column("timezone", sa.String(64), nullable=False, server_default="Europe/Paris"),
)

services = sa.Table(
    "services",
    metadata,
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.code"), primary_key=True),
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(254), nullable=True),
    # R28: "we answer within N days", and whether agents are alerted at once or by digest.
    sa.Column("commitment_days", sa.Integer(), nullable=True),
    sa.Column("alert_mode", sa.String(16), nullable=False, server_default="immediate"),
    # Digest mode: "daily" or "weekly" (Mondays), at this local time; and the last one sent.
    sa.Column("digest_period", sa.String(16), nullable=False, server_default="daily"),
    sa.Column("digest_time", sa.String(5), nullable=False, server_default="08:00"),
    sa.Column("last_digest_at", UTCDateTime(), nullable=True),
)

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("service_code", sa.String(64), primary_key=True),
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.ForeignKeyConstraint(["tenant", "service_code"], ["services.tenant", "services.code"]),
)

rules = sa.Table(
    "rules",
    metadata,
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.code"), primary_key=True),
    sa.Column("position", sa.Integer(), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    # {"procedures": [...], "channels": [...], "fields": [...], "neighbourhoods": [...]}
    sa.Column("conditions", sa.JSON(), nullable=False),
    sa.Column("service_code", sa.String(64), nullable=False),
    sa.Column("team_code", sa.String(64), nullable=True),
    sa.ForeignKeyConstraint(["tenant", "service_code"], ["services.tenant", "services.code"]),
)

workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.code"), primary_key=True),
    sa.Column("procedure_code", sa.String(64), primary_key=True),
    # Versions are never edited: a request keeps the one it started with.
    sa.Column("version", sa.Integer(), primary_key=True),
    sa.Column("definition", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

neighbourhoods = sa.Table(
    "neighbourhoods",
    metadata,
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.code"), primary_key=True),
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("geometry", sa.JSON(), nullable=False),  # GeoJSON, WGS 84
)

assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("request_id", sa.Uuid(), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("tracking_code", sa.String(32), nullable=False),
    sa.Column("procedure_code", sa.String(64), nullable=True),
    sa.Column("procedure_title", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("applicant_name", sa.String(200), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("service_code", sa.String(64), nullable=False),
    sa.Column("status", sa.String(64), nullable=False),
    sa.Column("status_label", sa.String(200), nullable=False),
    # Counts its status changes: intake applies them in this order, whatever order the
    # replicas' relays deliver them in (their clocks may differ).
    sa.Column("status_seq", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("workflow_version", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("closed", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("agent", sa.String(200), nullable=True),
    # The service's commitment turned into a date; NULL when it made none.
    sa.Column("due_at", UTCDateTime(), nullable=True),
    sa.Column("assigned_at", UTCDateTime(), nullable=False),
    sa.Column("rule", sa.String(1000), nullable=False),
    sa.Column("neighbourhood", sa.String(64), nullable=True),
    sa.Column("team_code", sa.String(64), nullable=True),
    # The form's fields, for automatic transitions conditioned on them.
    sa.Column("payload", sa.JSON(), nullable=True),
    # Since when the request is in its status, and when a timed transition fires (or NULL).
    sa.Column("status_since", UTCDateTime(), nullable=True),
    sa.Column("auto_at", UTCDateTime(), nullable=True),
    # R30: a report joined to another's incident (kept here, not only in `reports`, so the
    # inbox hides duplicates from its indexes instead of probing `reports` row by row).
    sa.Column("duplicate", sa.Boolean(), nullable=False, server_default=sa.false()),
    # R12: closed by a workflow's transfer that intake has not made yet: the status it left
    # and whether the citizen was told; if intake cannot make it, the request comes back.
    sa.Column("transfer_from", sa.String(64), nullable=True),
    sa.Column("transfer_told", sa.Boolean(), nullable=False, server_default=sa.false()),
    # R30: the incident that transfer closed (the first report's transfer closes the others).
    sa.Column("transfer_incident", sa.Uuid(), nullable=True),
    # When intake last said the citizen's pieces arrived: pieces that came while a
    # transfer was pending fire, once it comes back, what waits for them.
    sa.Column("pieces_arrived_at", UTCDateTime(), nullable=True),
    # Back after a transfer intake could not make: no automatic transition sends it again.
    sa.Column("transfer_refused", sa.Boolean(), nullable=False, server_default=sa.false()),
    # The inbox lists newest first by a unique cursor (received_at, request_id). Each
    # common view has a B-tree index starting with its equality filters and that order, so
    # a page stops after ~limit entries; the trailing columns let the other filters be
    # checked inside the index, without reading the rows they reject.
    sa.Index(
        "ix_assignments_inbox",
        *("tenant", "service_code", "received_at", "request_id"),
        *("team_code", "channel", "procedure_code", "neighbourhood"),
    ),
    sa.Index(
        "ix_assignments_tenant_recent",
        *("tenant", "received_at", "request_id", "channel", "procedure_code", "neighbourhood"),
        # The text search's page is checked on these, in the index.
        postgresql_include=["tracking_code", "applicant_name", "procedure_title"],
    ),
    sa.Index(
        "ix_assignments_status", "tenant", "service_code", "status", "received_at", "request_id"
    ),
    sa.Index("ix_assignments_agent", "tenant", "agent", "received_at", "request_id"),
    sa.Index("ix_assignments_auto", "auto_at"),
)

# Open requests are a few percent of the history: partial indexes keep the counts per
# status and the overdue list proportional to the work in progress, not to the archive.
_open = assignments.c.closed == sa.false()
# Counts per status read the second index only, whatever the other filters.
for _name, _columns, _included in (
    (
        "ix_assignments_open_recent",
        ("service_code", "received_at", "request_id", "due_at"),
        ["duplicate"],
    ),
    (
        "ix_assignments_open_counts",
        ("service_code", "status"),
        ["team_code", "channel", "procedure_code", "neighbourhood", "agent", "due_at", "duplicate"],
    ),
    ("ix_assignments_open_agent", ("agent", "status"), ["duplicate"]),
):
    sa.Index(
        _name,
        *(assignments.c[c] for c in ("tenant", *_columns)),
        postgresql_include=_included,
        postgresql_where=_open,
        sqlite_where=_open,
    )
# The text search (ILIKE '%…%'): trigram indexes on PostgreSQL, over every request for
# the page and over open ones for the counts. SQLite scans, which its sizes allow.
_searched = ("tracking_code", "applicant_name", "procedure_title")
sa.Index(
    "ix_assignments_open_text",
    *(assignments.c[c] for c in _searched),
    postgresql_using="gin",
    postgresql_ops=dict.fromkeys(_searched, "gin_trgm_ops"),
    postgresql_where=_open,
).ddl_if(dialect="postgresql")
for _column in _searched:
    sa.Index(
        f"ix_assignments_trgm_{_column}",
        assignments.c[_column],
        postgresql_using="gin",
        postgresql_ops={_column: "gin_trgm_ops"},
    ).ddl_if(dialect="postgresql")

status_history = sa.Table(
    "status_history",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column(
        "request_id", sa.Uuid(), sa.ForeignKey("assignments.request_id"), nullable=False, index=True
    ),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(64), nullable=False),
    sa.Column("label", sa.Text(), nullable=False),
    # Internal: who fired the transition and the agent's comment (never shown to citizens).
    sa.Column("agent", sa.String(200), nullable=True),
    sa.Column("comment", sa.Text(), nullable=True),
)

# R30: located reports of one category near one another, while the first is open, are one
# incident: one alert to the service, every reporter told when it is fixed.
incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("procedure_code", sa.String(64), nullable=False),
    # The first report: agents handle the incident through it; closing it closes the others.
    sa.Column("request_id", sa.Uuid(), sa.ForeignKey("assignments.request_id"), nullable=False),
    sa.Column("latitude", sa.Float(), nullable=False),
    sa.Column("longitude", sa.Float(), nullable=False),
    sa.Column("opened_at", UTCDateTime(), nullable=False),
    sa.Column("reporters", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("closed", sa.Boolean(), nullable=False, server_default=sa.false()),
    # Bounding-box prefilter: equality on the first three columns, a range on latitude.
    sa.Index("ix_incidents_nearby", "tenant", "procedure_code", "closed", "latitude", "longitude"),
)

reports = sa.Table(
    "reports",
    metadata,
    sa.Column("request_id", sa.Uuid(), sa.ForeignKey("assignments.request_id"), primary_key=True),
    sa.Column("incident_id", sa.Uuid(), sa.ForeignKey("incidents.id"), nullable=False, index=True),
    # True for every report but the incident's first: hidden from the inbox by default.
    sa.Column("duplicate", sa.Boolean(), nullable=False),
    sa.Column("latitude", sa.Float(), nullable=False),
    sa.Column("longitude", sa.Float(), nullable=False),
    sa.Column("address", sa.String(300), nullable=True),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("media_url", sa.String(1000), nullable=True),
)

# Radius and time window of R30, per tenant (procedure_code "*") or per procedure.
incident_policies = sa.Table(
    "incident_policies",
    metadata,
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.code"), primary_key=True),
    sa.Column("procedure_code", sa.String(64), primary_key=True),
    sa.Column("radius_m", sa.Integer(), nullable=False),
    sa.Column("window_days", sa.Integer(), nullable=False),
)

# Open311 tokens handed out before routing has seen the request (token = intake's request id).
open311_tokens = sa.Table(
    "open311_tokens",
    metadata,
    sa.Column("token", sa.Uuid(), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)
