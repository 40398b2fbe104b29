"""Plumbing tables that every service database carries beside its own."""

from __future__ import annotations

import sqlalchemy as sa

from guichet_plumbing.db import UTCDateTime, new_metadata

metadata = new_metadata()

outbox = sa.Table(
    "outbox",
    metadata,
    # The sequence gives the relay a stable publication order.
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("payload", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("published_at", UTCDateTime(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
)
# Partial index: the relay only ever scans what is still unpublished.
sa.Index(
    "ix_outbox_unpublished",
    outbox.c.seq,
    postgresql_where=outbox.c.published_at.is_(None),
    sqlite_where=outbox.c.published_at.is_(None),
)

processed_events = sa.Table(
    "processed_events",
    metadata,
    sa.Column("consumer", sa.String(128), primary_key=True),
    sa.Column("event_id", sa.Uuid(), primary_key=True),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("processed_at", UTCDateTime(), nullable=False),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("scope", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=False),
    sa.Column("body", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# R21: every read of a personal file by an agent, kept where the file is, for the DPO.
access_log = sa.Table(
    "access_log",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(300), nullable=False),
    sa.Column("roles", sa.String(200), nullable=False),
    # R25: the citizen an aidant acted for, traced beside the aidant.
    sa.Column("acting_for", sa.String(200), nullable=True),
    sa.Column("file", sa.String(128), nullable=False),
    sa.Column("service", sa.String(64), nullable=True),
    sa.Column("purpose", sa.String(200), nullable=False),
    sa.Index("ix_access_log_tenant", "tenant", "id"),
)
