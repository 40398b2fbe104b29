"""Notifications' tables: how to reach each applicant, and every delivery made or owed."""

from __future__ import annotations

import sqlalchemy as sa

from guichet_plumbing.db import UTCDateTime, new_metadata

metadata = new_metadata()

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("request_id", sa.Uuid(), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("tracking_code", sa.String(32), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("phone", sa.String(32), nullable=True),
    sa.Column("postal_address", sa.String(400), nullable=True),
    sa.Column("preference", sa.String(16), nullable=False),
    # How the request came (web, email, sms, counter, phone, mail): receipts follow (R6).
    sa.Column("channel", sa.String(16), nullable=True),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    # NULL for messages about no single request (a service's periodic digest).
    sa.Column("request_id", sa.Uuid(), nullable=True, index=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("tracking_code", sa.String(32), nullable=True, index=True),
    # One delivery per triggering event and kind: the side effect's idempotency key.
    sa.Column("event_id", sa.Uuid(), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(16), nullable=True),
    sa.Column("recipient", sa.String(400), nullable=True),
    sa.Column("subject", sa.String(300), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("event_id", "kind", name="uq_deliveries_event_kind"),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
)

# The competent service of each request (from routing), so that only its agents read its
# deliveries (R21).
request_services = sa.Table(
    "request_services",
    metadata,
    sa.Column("request_id", sa.Uuid(), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("service_code", sa.String(64), nullable=False),
)
