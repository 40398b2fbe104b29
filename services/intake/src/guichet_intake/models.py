"""Intake's tables: tenants, their competent services and procedures, requests and their history."""

from __future__ import annotations

import sqlalchemy as sa

from guichet_plumbing.db import UTCDateTime, new_metadata

metadata = new_metadata()

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    # Legal dates (reception, deadlines) are local dates in this zone.
    sa.Column("timezone", sa.String(64), nullable=False),
)

services = sa.Table(
    "services",
    metadata,
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.code"), primary_key=True),
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("designation", sa.String(200), nullable=False),
    sa.Column("postal_address", sa.String(400), nullable=False),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("phone", sa.String(32), nullable=True),
)

procedures = sa.Table(
    "procedures",
    metadata,
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.code"), primary_key=True),
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("service_code", sa.String(64), nullable=False),
    sa.Column("regime", sa.String(8), nullable=False),
    sa.Column("delay_value", sa.Integer(), nullable=False),
    sa.Column("delay_unit", sa.String(8), nullable=False),
    sa.Column("acknowledgement_required", sa.Boolean(), nullable=False),
    sa.Column("location_required", sa.Boolean(), nullable=False),
    sa.Column("appeal_text", sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(["tenant", "service_code"], ["services.tenant", "services.code"]),
)

requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.code"), nullable=False),
    sa.Column("tracking_code", sa.String(32), nullable=False, unique=True),
    sa.Column("procedure_code", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("applicant", sa.JSON(), nullable=False),
    sa.Column("contact_preference", sa.String(16), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("location", sa.JSON(), nullable=True),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("reception_date", sa.Date(), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("assigned_service_code", sa.String(64), nullable=True),
    sa.Column("assigned_service_name", sa.String(200), nullable=True),
    sa.Column("acknowledgement", sa.JSON(), nullable=True),
    sa.Index("ix_requests_tenant_received", "tenant", "received_at"),
)

request_history = sa.Table(
    "request_history",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Uuid(), sa.ForeignKey("requests.id"), nullable=False, index=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("label", sa.String(400), nullable=False),
)
