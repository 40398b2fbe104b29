"""Notifications' application factory."""

from __future__ import annotations

from fastapi import FastAPI

from guichet_notifications import api
from guichet_notifications.events import (
    PUBLISHED,
    ReceiptIssued,
    RequestAssigned,
    RequestReceived,
    ServiceAlerted,
    ServiceDigest,
    SourceNoticed,
    StatusChanged,
)
from guichet_notifications.models import metadata
from guichet_notifications.service import Deliveries
from guichet_notifications.settings import NotificationsSettings
from guichet_notifications.transports import MailboxFolder, MailTransport, Smtp
from guichet_plumbing.bus import Bus
from guichet_plumbing.runtime import ServiceRuntime, create_service_app


def create_app(settings: NotificationsSettings | None = None, *, bus: Bus | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    runtime = ServiceRuntime("notifications", settings, metadata, bus)
    transport: MailTransport = (
        Smtp(settings.smtp_url)
        if settings.smtp_url
        else MailboxFolder(settings.resolved_mailbox_dir())
    )
    deliveries = Deliveries(
        runtime.db,
        transport,
        runtime.metrics,
        sender=settings.sender,
        poll_interval=settings.sender_poll_interval,
        max_attempts=settings.max_attempts,
    )
    runtime.publishes(e.event_type for e in PUBLISHED)
    runtime.consume("contacts", [RequestReceived.event_type], deliveries.on_request_received)
    runtime.consume("receipts", [ReceiptIssued.event_type], deliveries.on_receipt_issued)
    runtime.consume("assignments", [RequestAssigned.event_type], deliveries.on_request_assigned)
    runtime.consume("statuses", [StatusChanged.event_type], deliveries.on_status_changed)
    runtime.consume("alerts", [ServiceAlerted.event_type], deliveries.on_service_alerted)
    runtime.consume("digests", [ServiceDigest.event_type], deliveries.on_service_digest)
    runtime.consume("abuse-notices", [SourceNoticed.event_type], deliveries.on_source_noticed)
    runtime.on_startup(deliveries.start)
    app = create_service_app(
        runtime,
        title="Guichet — notifications",
        description="Réponses à l'usager sur le canal de son choix (courriel, courrier papier) "
        "et alertes aux agents.",
        routers=[api.router],
    )
    app.state.deliveries = deliveries
    return app
