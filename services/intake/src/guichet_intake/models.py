"""Intake's tables: tenants, competent services, procedures, requests and everything
the law attaches to them (receipts, missing pieces, signing keys, abusive sources)."""

from __future__ import annotations

import sqlalchemy as sa

from guichet_plumbing.db import UTCDateTime, new_metadata

metadata = new_metadata()
# A sender's key for R9 (`service._source`): longer ones are kept as their digest.
SOURCE_MAX_LENGTH = 254

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    # Legal dates (reception, deadlines) are local dates in this zone.
    sa.Column("timezone", sa.String(64), nullable=False),
    # Public holidays of the territory (`holidays` subdivision: 57, 6AE, 972, ...);
    # NULL is metropolitan France.
    sa.Column("territory", sa.String(16), nullable=True),
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
    sa.Column("extend_to_working_day", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("acknowledgement_required", sa.Boolean(), nullable=False),
    sa.Column("location_required", sa.Boolean(), nullable=False),
    sa.Column("identification", sa.String(16), nullable=False, server_default="none"),
    sa.Column("required_pieces", sa.JSON(), nullable=False),
    sa.Column("required_information", sa.JSON(), nullable=False),
    sa.Column("appeal_text", sa.Text(), nullable=True),
    sa.Column("teleservice_url", sa.String(500), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(["tenant", "service_code"], ["services.tenant", "services.code"]),
)

requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    # No foreign key to `tenants`: its check would KEY SHARE-lock the tenant's one row in
    # every concurrent submission, and PostgreSQL turns those shared locks into a new
    # MultiXact almost per request (3 ms of backend CPU each under load, `bench/`). The
    # tenant is checked against the catalogue before anything is stored, and tenants are
    # never deleted.
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("tracking_code", sa.String(32), nullable=False, unique=True),
    sa.Column("procedure_code", sa.String(64), nullable=True),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("applicant", sa.JSON(), nullable=False),
    sa.Column("contact_preference", sa.String(16), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("location", sa.JSON(), nullable=True),
    sa.Column("entered_by", sa.String(200), nullable=True),
    # R15: the citizen's pseudonymous identifier for this service (never the FranceConnect
    # sub), and that service; NULL for anonymous requests.
    sa.Column("owner", sa.String(64), nullable=True),
    sa.Column("owner_family", sa.String(64), nullable=True),
    # Salted hashes of the e-mail and phone given at submission: the anonymous applicant's
    # second factor to follow the request with its tracking code.
    sa.Column("follow_proofs", sa.JSON(), nullable=False, server_default="[]"),
    # Who sent it, normalised, to spot abusive repetition (R9).
    sa.Column("source", sa.String(SOURCE_MAX_LENGTH), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("reception_date", sa.Date(), nullable=False),
    # R13: after a transfer in, the first administration's reception date.
    sa.Column("first_received_on", sa.Date(), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("abusive", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("abuse_reason", sa.String(300), nullable=True),
    # An e-mail or SMS entered a day or more after it arrived (`received_on`), or the same
    # day but later than R9's repetition window (`arrived_at`): its sending rhythm is
    # unknown, so R9 neither judges it nor counts it. NULL on rows stored before.
    sa.Column("read_late", sa.Boolean(), nullable=True),
    # The instant the collectivité's mailbox received an e-mail or SMS, when its connector
    # gives it (`arrived_at`): the day of reception, and how late it was read.
    sa.Column("arrived_at", UTCDateTime(), nullable=True),
    # The legal regime is fixed at reception: a later catalogue edit changes no running clock.
    sa.Column("regime", sa.String(8), nullable=True),
    sa.Column("delay_value", sa.Integer(), nullable=True),
    sa.Column("delay_unit", sa.String(8), nullable=True),
    sa.Column("extend_to_working_day", sa.Boolean(), nullable=False, server_default=sa.false()),
    # So are its kind and its means of appeal, which every AR of the request states (R5).
    sa.Column("procedure_kind", sa.String(16), nullable=True),
    sa.Column("appeal_text", sa.Text(), nullable=True),
    sa.Column("registration_due_on", sa.Date(), nullable=True),
    sa.Column("receipt_due_on", sa.Date(), nullable=True),
    sa.Column("receipt_issued_at", UTCDateTime(), nullable=True),
    sa.Column("clock_state", sa.String(16), nullable=False, server_default="none"),
    sa.Column("decision_last_day", sa.Date(), nullable=True),
    sa.Column("decision_due_at", UTCDateTime(), nullable=True),
    sa.Column("implicit_decision", sa.String(16), nullable=True),
    # When the service's workflow answered it (a final status): no silence can decide it
    # any more, even if the service takes it back afterwards (R10).
    sa.Column("answered_at", UTCDateTime(), nullable=True),
    sa.Column("assigned_service_code", sa.String(64), nullable=True),
    sa.Column("assigned_service_name", sa.String(200), nullable=True),
    sa.Column("transferred_to", sa.String(300), nullable=True),
    # What the competent service's workflow says, in the citizen's words.
    sa.Column("status_detail", sa.String(200), nullable=True),
    # The rank of the workflow's last status applied here (routing counts them): one
    # delivered late, of a lower rank, is only written to the history.
    sa.Column("status_seq", sa.Integer(), nullable=True),
    # Whether that status closes the file (the workflow's answer) or not (a reopening).
    sa.Column("workflow_final", sa.Boolean(), nullable=True),
    # R9's read at every submission must find no other index it could use: on a table
    # not yet analysed, PostgreSQL's cached plan for that prepared read took a tenant-led
    # index and filtered the tenant's whole hour by source (2.4 ms of database per
    # request instead of 0.4, until autovacuum's first ANALYZE). Hence partial indexes
    # for the scans below, which only look at rows with a date set.
    sa.Index("ix_requests_source", "tenant", "source", "received_at"),
    # The scheduler's and the overdue listing's scans.
    sa.Index(
        "ix_requests_decision_due",
        "decision_due_at",
        postgresql_where=sa.text("decision_due_at IS NOT NULL"),
        sqlite_where=sa.text("decision_due_at IS NOT NULL"),
    ),
    sa.Index(
        "ix_requests_receipt_due",
        "tenant",
        "receipt_due_on",
        postgresql_where=sa.text("receipt_due_on IS NOT NULL"),
        sqlite_where=sa.text("receipt_due_on IS NOT NULL"),
    ),
)

request_history = sa.Table(
    "request_history",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Uuid(), sa.ForeignKey("requests.id"), nullable=False, index=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(64), nullable=False),
    sa.Column("label", sa.Text(), nullable=False),
)

pieces_requests = sa.Table(
    "pieces_requests",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("request_id", sa.Uuid(), sa.ForeignKey("requests.id"), nullable=False, index=True),
    sa.Column("pieces", sa.JSON(), nullable=False),
    sa.Column("requested_on", sa.Date(), nullable=False),
    sa.Column("due_on", sa.Date(), nullable=False),
    sa.Column("received_on", sa.Date(), nullable=True),
    sa.Column("requested_by", sa.String(200), nullable=True),
)

receipts = sa.Table(
    "receipts",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("request_id", sa.Uuid(), sa.ForeignKey("requests.id"), nullable=False, index=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("issued_at", UTCDateTime(), nullable=False),
    sa.Column("document", sa.JSON(), nullable=False),
    sa.Column("token", sa.Text(), nullable=False),
)

# R12: a transfer to another administration, signed and stored before it is sent, so that
# the remote call holds no transaction and a crash between sending and recording loses
# nothing: the sweep sends the same hand-over again (signed anew if its key was retired
# meanwhile: receivers refuse retired keys), and records it once.
outgoing_transfers = sa.Table(
    "outgoing_transfers",
    metadata,
    sa.Column("request_id", sa.Uuid(), sa.ForeignKey("requests.id"), primary_key=True),
    sa.Column("administration_name", sa.String(200), nullable=False),
    sa.Column("administration_url", sa.Text(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("token", sa.Text(), nullable=False),
    sa.Column("requested_at", UTCDateTime(), nullable=False),
    # Sent anew in place of a refused one asked earlier: when that one was asked, which
    # says whether silence's rejection since leaves it owed (`_still_owed`, R12).
    sa.Column("first_asked_at", UTCDateTime(), nullable=True),
    # No one else sends it before then: an attempt in progress, or the next retry.
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    # The first failed attempt: a day of failures from then gives it up (`_GIVE_UP`),
    # however late a workflow's act was read.
    sa.Column("first_failed_at", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.String(200), nullable=True),
    # Refused for good by the receiver: not tried again, kept (and counted for operators)
    # while the request stays open here, until an agent sends it elsewhere.
    sa.Column("refused_at", UTCDateTime(), nullable=True),
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(100), primary_key=True),
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.code"), nullable=False, index=True),
    # In production the key store is the database; restrict its access accordingly.
    sa.Column("private_pem", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("retired_at", UTCDateTime(), nullable=True),
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(SOURCE_MAX_LENGTH), primary_key=True),
    sa.Column("noticed_at", UTCDateTime(), nullable=True),
    sa.Column("blocked_at", UTCDateTime(), nullable=True),
    sa.Column("reason", sa.String(300), nullable=True),
)

# -- identity and access ----------------------------------------------------------------------

# Agents the collectivité's identity provider authenticates, and what they may do here:
# roles in this tenant, for these services (R21). Kept by the tenant's administrator.
agent_accounts = sa.Table(
    "agent_accounts",
    metadata,
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.code"), primary_key=True),
    # The identity provider's `sub`.
    sa.Column("subject", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("roles", sa.JSON(), nullable=False),
    sa.Column("services", sa.JSON(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# Other administrations' systems (OAuth 2 client credentials), per tenant. Secrets are
# stored hashed; after a rotation the previous one keeps working for a grace period.
api_clients = sa.Table(
    "api_clients",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.code"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("scopes", sa.JSON(), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("previous_secret_hash", sa.String(64), nullable=True),
    sa.Column("previous_valid_until", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# R25: a citizen's recorded mandate to an aidant (France Services, social worker: an agent
# with the mediator role) or to a legal representative (a citizen, known by the identity
# FranceConnect will vouch for). The holder reaches the citizen's requests, and acts for
# them; every access names both.
mandates = sa.Table(
    "mandates",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.code"), nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    # aidant: the agent's subject; representant_legal: a keyed hash of their pivot identity.
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("holder_label", sa.String(200), nullable=False),
    sa.Column("grantor_label", sa.String(200), nullable=False),
    # The grantor's pseudonym for each service of the tenant (R15: no FranceConnect sub).
    sa.Column("owners", sa.JSON(), nullable=False),
    sa.Column("granted_at", UTCDateTime(), nullable=False),
    sa.Column("expires_on", sa.Date(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
)
