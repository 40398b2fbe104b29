"""Routing's tables: the tenant's services, its routing rules, and what was assigned where."""

from __future__ import annotations

import sqlalchemy as sa

from guichet_plumbing.db import UTCDateTime, new_metadata

metadata = new_metadata()

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    # Where a request goes when no rule matches: never nowhere.
    sa.Column("default_service", sa.String(64), nullable=False),
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
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("workflow_version", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("closed", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("agent", sa.String(200), nullable=True),
    # The service's commitment turned into a date; NULL when it made none.
    sa.Column("due_at", UTCDateTime(), nullable=True),
    sa.Column("assigned_at", UTCDateTime(), nullable=False),
    sa.Column("rule", sa.String(1000), nullable=False),
    sa.Column("neighbourhood", sa.String(64), nullable=True),
    # The inbox lists a service's requests newest first, by a unique cursor.
    sa.Index("ix_assignments_inbox", "tenant", "service_code", "received_at", "request_id"),
)

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
