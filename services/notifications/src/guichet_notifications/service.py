"""Turning events into deliveries, and sending them.

A delivery row is written in the consumer's transaction (one per event and
kind), then the sender sends it. The delivery id is the e-mail's Message-ID:
should a crash fall between the SMTP acceptance and the "sent" mark, the one
resend carries the same Message-ID and mail clients show it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from guichet_notifications import repository
from guichet_notifications.events import (
    DigestItem,
    ReceiptIssued,
    RequestAssigned,
    RequestReceived,
    ServiceAlerted,
    ServiceDigest,
    SourceNoticed,
    StatusChanged,
)
from guichet_notifications.schemas import DeliveryList, DeliveryPublic, DeliveryStatus
from guichet_notifications.transports import MailTransport
from guichet_plumbing.access_log import record_read
from guichet_plumbing.auth import SYSTEM, Kind, Principal
from guichet_plumbing.db import Database, after_commit
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.observability import ServiceMetrics

log = logging.getLogger(__name__)

SIGNATURE = (
    "\n\nCe message vous est adressé automatiquement ; pour toute question, "
    "contactez le service indiqué ci-dessus en rappelant votre numéro de suivi."
)


# Receipts of an electronic exchange go back electronically, to the sender's address (R2, R6).
ELECTRONIC_RECEIPTS = {"accuse_reception", "accuse_enregistrement"}
PAPER_CHANNELS = {"counter", "phone", "mail"}


def _channel_for(contact: Any, kind: str) -> tuple[str | None, str | None, DeliveryStatus]:
    """Channel, recipient and initial status for one delivery (R6, R27).

    Receipts of a request sent electronically go to the applicant's e-mail when there is
    one (R6: the address sent from, or given with it); other answers, and the receipts of
    a request that came on paper, by phone or at the counter, follow the applicant's
    preference. No SMS transport exists yet, so an SMS preference falls back to e-mail,
    then paper.
    """
    on_paper = contact.channel in PAPER_CHANNELS
    wants_letter = contact.preference == "letter" and (kind not in ELECTRONIC_RECEIPTS or on_paper)
    if contact.email and not wants_letter:
        return "email", contact.email, DeliveryStatus.pending
    if contact.postal_address:
        return "letter", contact.postal_address, DeliveryStatus.to_print
    return None, None, DeliveryStatus.unreachable


def render_receipt(event: ReceiptIssued) -> tuple[str, str]:
    subject = f"{event.title} — demande n° {event.tracking_code}"
    lines = [
        "Bonjour,",
        "",
        *event.mentions,
        "",
        f"Le document signé, qui fait foi, est disponible ici : {event.document_url}",
        f"Pour suivre votre demande, munissez-vous de son numéro : {event.tracking_code}.",
    ]
    return subject, "\n".join(lines) + SIGNATURE


def render_assignment(event: RequestAssigned) -> tuple[str, str]:
    subject = f"Votre demande n° {event.tracking_code} a été transmise au service compétent"
    body = (
        f"Bonjour,\n\nVotre demande n° {event.tracking_code} a été transmise au "
        f"service compétent : {event.service_name}. Il vous répondra directement."
    )
    return subject, body + SIGNATURE


def render_digest(event: ServiceDigest) -> tuple[str, str]:
    """One e-mail per digest: the new requests of the period, then those past the commitment,
    dated in the tenant's time zone."""
    zone = ZoneInfo(event.timezone)
    end = event.period_end.astimezone(zone)
    start = event.period_start.astimezone(zone)

    def line(item: DigestItem) -> str:
        due = f", échéance {item.due_at.astimezone(zone):%d/%m/%Y}" if item.due_at else ""
        return (
            f"- n° {item.tracking_code} : {item.procedure_title} ({item.channel}, reçue le "
            f"{item.received_at.astimezone(zone):%d/%m/%Y à %H:%M}{due}) — {item.status_label}"
        )

    def section(title: str, total: int, items: list[DigestItem]) -> list[str]:
        if total == 0:
            return [f"{title} : aucune.", ""]
        more = (
            [f"… et {total - len(items)} autre(s), dans la corbeille."]
            if total > len(items)
            else []
        )
        return [f"{title} : {total}", *map(line, items), *more, ""]

    subject = (
        f"Relevé du {end:%d/%m/%Y} pour {event.service_name} : {event.new_total} nouvelle(s), "
        f"{event.overdue_total} en retard"
    )
    lines = [
        "Bonjour,",
        "",
        f"Voici le relevé des demandes de {event.service_name} du {start:%d/%m/%Y à %H:%M} "
        f"au {end:%d/%m/%Y à %H:%M}.",
        "",
        *section("Nouvelles demandes", event.new_total, event.new),
        *section(
            "Demandes en retard sur l'engagement du service", event.overdue_total, event.overdue
        ),
        "Elles vous attendent dans la corbeille.",
    ]
    return subject, "\n".join(lines)


class Deliveries:
    """Consumer effects and the sending loop of the notifications service."""

    def __init__(
        self,
        db: Database,
        transport: MailTransport,
        metrics: ServiceMetrics,
        *,
        sender: str,
        poll_interval: float,
        max_attempts: int,
    ) -> None:
        self.db = db
        self.transport = transport
        self.sender = sender
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = metrics.counter(
            "guichet_notifications_sent", "Deliveries sent, by channel.", ("channel",)
        )
        self.failures = metrics.counter(
            "guichet_notifications_send_failures", "Failed send attempts."
        )

    async def on_request_received(self, session: AsyncSession, envelope: Envelope) -> None:
        """Learn how to reach the applicant; receipts may have arrived first and wait."""
        event = RequestReceived.model_validate(envelope.data)
        await repository.insert_contact(
            session,
            {
                "request_id": event.request_id,
                "tenant": envelope.tenant,
                "tracking_code": event.tracking_code,
                "name": event.applicant.name,
                "email": event.applicant.email,
                "phone": event.applicant.phone,
                "postal_address": event.applicant.postal_address,
                "preference": event.contact_preference,
                "channel": event.channel,
            },
        )
        after_commit(session, self._wake.set)

    async def on_receipt_issued(self, session: AsyncSession, envelope: Envelope) -> None:
        event = ReceiptIssued.model_validate(envelope.data)
        contact = await repository.get_contact(session, event.request_id)
        subject, body = render_receipt(event)
        await self._add(
            session,
            envelope,
            event.request_id,
            event.tracking_code,
            event.kind,
            subject,
            body,
            contact,
        )
        after_commit(session, self._wake.set)

    async def on_request_assigned(self, session: AsyncSession, envelope: Envelope) -> None:
        event = RequestAssigned.model_validate(envelope.data)
        await repository.set_request_service(
            session, event.request_id, envelope.tenant, event.service_code
        )
        contact = await repository.get_contact(session, event.request_id)
        subject, body = render_assignment(event)
        await self._add(
            session,
            envelope,
            event.request_id,
            event.tracking_code,
            "assignment",
            subject,
            body,
            contact,
        )
        after_commit(session, self._wake.set)

    async def on_status_changed(self, session: AsyncSession, envelope: Envelope) -> None:
        """The workflow said to tell the citizen (action `notify`): send the new status.

        R30: when an incident closes, every reporter is told, whatever the actions; each
        reporter's request has its own event, hence its own delivery."""
        event = StatusChanged.model_validate(envelope.data)
        closes_incident = event.final and event.incident_id is not None
        if "notify" not in event.actions and not closes_incident:
            return
        contact = await repository.get_contact(session, event.request_id)
        subject = f"Votre demande n° {event.tracking_code} : {event.label}"
        body = (
            f"Bonjour,\n\nVotre demande n° {event.tracking_code} a changé d'étape : {event.label}."
        )
        if closes_incident and (event.reporters or 0) > 1:
            body += (
                f"\n\nCe problème nous avait été signalé par {event.reporters} personnes : "
                "merci pour votre signalement, chacune d'elles reçoit ce message."
            )
        await self._add(
            session,
            envelope,
            event.request_id,
            event.tracking_code,
            "status",
            subject,
            body + SIGNATURE,
            contact,
        )
        after_commit(session, self._wake.set)

    async def on_service_alerted(self, session: AsyncSession, envelope: Envelope) -> None:
        """R28: the agents of a service that asked for it hear of each new request at once."""
        event = ServiceAlerted.model_validate(envelope.data)
        due = f" Engagement de réponse : {event.due_at:%d/%m/%Y}." if event.due_at else ""
        await repository.insert_delivery(
            session,
            {
                "id": uuid.uuid4(),
                "request_id": event.request_id,
                "tenant": envelope.tenant,
                "tracking_code": event.tracking_code,
                "event_id": envelope.id,
                "kind": "agent_alert",
                "channel": "email",
                "recipient": event.service_email,
                "subject": f"Nouvelle demande n° {event.tracking_code} : {event.procedure_title}",
                "body": (
                    f"Bonjour,\n\nUne nouvelle demande est arrivée pour {event.service_name} "
                    f"(canal : {event.channel}) : « {event.procedure_title} », n° "
                    f"{event.tracking_code}.{due}\n\nElle vous attend dans la corbeille."
                ),
                "status": DeliveryStatus.pending.value,
                "created_at": datetime.now(UTC),
            },
        )
        after_commit(session, self._wake.set)

    async def on_service_digest(self, session: AsyncSession, envelope: Envelope) -> None:
        """R28: a service consulting its queue periodically gets one e-mail per digest."""
        event = ServiceDigest.model_validate(envelope.data)
        subject, body = render_digest(event)
        await repository.insert_delivery(
            session,
            {
                "id": uuid.uuid4(),
                "request_id": None,
                "tenant": envelope.tenant,
                "tracking_code": None,
                "event_id": envelope.id,
                "kind": "service_digest",
                "channel": "email",
                "recipient": event.service_email,
                "subject": subject[:300],
                "body": body,
                "status": DeliveryStatus.pending.value,
                "created_at": datetime.now(UTC),
            },
        )
        after_commit(session, self._wake.set)

    async def on_source_noticed(self, session: AsyncSession, envelope: Envelope) -> None:
        """R9: the notice goes to the address the abusive sends came from (e-mail, else post).

        Idempotent through the inbox and the (event, kind) key of the delivery."""
        event = SourceNoticed.model_validate(envelope.data)
        subject = f"{event.title} — demande n° {event.tracking_code}"
        body = "\n".join(["Bonjour,", "", *event.notice])
        # Addressed to the source itself, whatever the contact details of the request say.
        contact = SimpleNamespace(
            email=event.email, postal_address=event.postal_address, preference="email", channel=None
        )
        await self._add(
            session,
            envelope,
            event.request_id,
            event.tracking_code,
            "source_notice",
            subject,
            body + SIGNATURE,
            contact,
        )
        after_commit(session, self._wake.set)

    async def _add(
        self,
        session: AsyncSession,
        envelope: Envelope,
        request_id: uuid.UUID,
        tracking_code: str,
        kind: str,
        subject: str,
        body: str,
        contact: Any | None,
    ) -> None:
        if contact is None:
            channel, recipient, status = None, None, DeliveryStatus.waiting_contact
        else:
            channel, recipient, status = _channel_for(contact, kind)
        await repository.insert_delivery(
            session,
            {
                "id": uuid.uuid4(),
                "request_id": request_id,
                "tenant": envelope.tenant,
                "tracking_code": tracking_code,
                "event_id": envelope.id,
                "kind": kind,
                "channel": channel,
                "recipient": recipient,
                "subject": subject,
                "body": body,
                "status": status.value,
                "created_at": datetime.now(UTC),
            },
        )

    def message(self, delivery: Any) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = delivery.recipient
        message["Subject"] = delivery.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = f"<{delivery.id}@guichet>"
        message["X-Guichet-Delivery"] = str(delivery.id)
        message["X-Guichet-Tracking-Code"] = delivery.tracking_code or ""
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(delivery.body)
        return message

    async def send_due(self) -> int:
        """Send one batch of due e-mails; returns how many went out."""
        sent = 0
        async with self.db.transaction() as session:
            # Answers whose event overtook the receipt (topics are not ordered together)
            # are addressed here, once both are committed, whatever order they came in.
            for waiting in await repository.waiting_with_contact(session):
                channel, recipient, status = _channel_for(waiting, waiting.kind)
                await repository.update_delivery(
                    session,
                    waiting.id,
                    {"channel": channel, "recipient": recipient, "status": status.value},
                )
            now = datetime.now(UTC)
            for delivery in await repository.due_deliveries(session, now, limit=20):
                try:
                    await self.transport.send(self.message(delivery), delivery.recipient)
                except Exception as exc:  # any transport failure is retried, then reported
                    self.failures.inc()
                    attempts = delivery.attempts + 1
                    log.warning("delivery %s failed (attempt %d): %s", delivery.id, attempts, exc)
                    await repository.update_delivery(
                        session,
                        delivery.id,
                        {
                            "attempts": attempts,
                            "last_error": str(exc)[:500],
                            "status": (
                                DeliveryStatus.failed
                                if attempts >= self.max_attempts
                                else DeliveryStatus.pending
                            ).value,
                            "next_attempt_at": now + timedelta(seconds=min(2**attempts, 3600)),
                        },
                    )
                    continue
                await repository.update_delivery(
                    session,
                    delivery.id,
                    {
                        "status": DeliveryStatus.sent.value,
                        "attempts": delivery.attempts + 1,
                        "sent_at": datetime.now(UTC),
                        "last_error": None,
                    },
                )
                self.sent.labels(delivery.channel).inc()
                sent += 1
        return sent

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sending deliveries failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)

    async def start(self) -> Callable[[], Awaitable[None]]:
        self._task = asyncio.create_task(self.run(), name="notifications-sender")
        return self.stop

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @staticmethod
    async def _readable(
        session: AsyncSession, rows: Sequence[Any], principal: Principal
    ) -> list[Any]:
        """R21: the deliveries of the caller's services' requests, each read journaled."""
        services = await repository.request_services_of(
            session, sorted({r.request_id for r in rows})
        )
        allowed = {
            request_id: place for request_id, place in services.items() if principal.handles(*place)
        }
        for request_id, (tenant, service) in allowed.items():
            await record_read(
                session,
                principal,
                tenant=tenant,
                file=str(request_id),
                service=service,
                purpose="consultation des envois",
            )
        return [r for r in rows if r.request_id in allowed]

    async def list(
        self,
        *,
        request_id: uuid.UUID | None,
        tracking_code: str | None,
        principal: Principal = SYSTEM,
    ) -> DeliveryList:
        async with self.db.transaction() as session:
            rows = await repository.list_deliveries(
                session, request_id=request_id, tracking_code=tracking_code
            )
            if principal.kind is not Kind.system:
                rows = await self._readable(session, rows, principal)
        return DeliveryList(
            items=[
                DeliveryPublic(
                    id=r.id,
                    request_id=r.request_id,
                    tracking_code=r.tracking_code,
                    kind=r.kind,
                    channel=r.channel,
                    recipient=r.recipient,
                    subject=r.subject,
                    status=DeliveryStatus(r.status),
                    attempts=r.attempts,
                    created_at=r.created_at,
                    sent_at=r.sent_at,
                )
                for r in rows
            ]
        )
