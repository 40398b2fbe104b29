"""Answers to the citizen: channel (R6, R27), retries on a real SMTP server, no double send;
periodic digests to services (R28)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from guichet_notifications.models import deliveries, metadata
from guichet_notifications.service import Deliveries
from guichet_notifications.transports import MailboxFolder, Smtp
from guichet_plumbing import tables
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.inbox import idempotent
from guichet_plumbing.localinfra import free_port
from guichet_plumbing.observability import ServiceMetrics
from guichet_routing.events import DigestItem, ServiceDigest, StatusChanged
from tests.conftest import SmtpServer
from tests.support import received_event


def received(
    applicant: dict[str, Any],
    preference: str = "email",
    request_id: uuid.UUID | None = None,
    channel: str = "web",
) -> Envelope:
    return received_event(
        applicant=applicant, preference=preference, request_id=request_id, channel=channel
    )


def issued(request_id: uuid.UUID, kind: str = "accuse_reception") -> Envelope:
    receipt_id = uuid.uuid4()
    return Envelope(
        id=uuid.uuid4(),
        type="intake.receipt.issued.v1",
        occurred_at=datetime.now(UTC),
        tenant="admiville",
        subject=str(request_id),
        data={
            "request_id": str(request_id),
            "receipt_id": str(receipt_id),
            "tracking_code": "ABCD-EFGH-JKMN-PQRS",
            "kind": kind,
            "title": "Accusé de réception",
            "issued_at": datetime.now(UTC).isoformat(),
            "mentions": ["Votre demande a été reçue le 15 mai 2026."],
            "document_url": f"http://guichet.example/intake/v1/receipts/{receipt_id}.pdf",
        },
    )


def assigned(request_id: uuid.UUID) -> Envelope:
    return Envelope(
        id=uuid.uuid4(),
        type="routing.request.assigned.v1",
        occurred_at=datetime.now(UTC),
        tenant="admiville",
        subject=str(request_id),
        data={
            "request_id": str(request_id),
            "tracking_code": "ABCD-EFGH-JKMN-PQRS",
            "service_code": "accueil",
            "service_name": "Direction de l'accueil",
            "assigned_at": datetime.now(UTC).isoformat(),
        },
    )


@pytest.fixture
async def db(data_dir: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{data_dir / 'notifications.sqlite3'}")
    await database.create_all(metadata, tables.metadata)
    yield database
    await database.dispose()


def make(db: Database, transport: Any) -> tuple[Deliveries, Any, Any]:
    """The service, one handler taking a request (then its AR), one for assignments."""
    service = Deliveries(
        db,
        transport,
        ServiceMetrics("t"),
        sender="Guichet <g@example.org>",
        poll_interval=0.1,
        max_attempts=3,
    )
    on_contact = idempotent(db, "n.contacts", service.on_request_received, ServiceMetrics("t"))
    on_receipt = idempotent(db, "n.receipts", service.on_receipt_issued, ServiceMetrics("t"))
    on_assigned = idempotent(db, "n.assignments", service.on_request_assigned, ServiceMetrics("t"))

    async def on_received(event: Envelope, receipt: Envelope | None = None) -> None:
        await on_contact(event)
        await on_receipt(receipt or issued(uuid.UUID(event.subject)))

    return service, on_received, on_assigned


async def rows(db: Database) -> list[Any]:
    async with db.sessions() as session:
        return list(
            (await session.execute(sa.select(deliveries).order_by(deliveries.c.created_at))).all()
        )


async def test_r6_receipt_goes_to_the_applicant_email_over_real_smtp(
    db: Database, smtp_server: SmtpServer
) -> None:
    service, on_received, _ = make(db, Smtp(smtp_server.url))
    await on_received(received({"email": "camille@example.org"}))
    assert await service.send_due() == 1
    [mail] = smtp_server.mailbox.to("camille@example.org")
    assert mail["Subject"] == "Accusé de réception — demande n° ABCD-EFGH-JKMN-PQRS"
    assert "reçue le 15 mai 2026" in mail.get_content()
    assert "/v1/receipts/" in mail.get_content(), "links to the signed document"
    [row] = await rows(db)
    assert mail["Message-ID"] == f"<{row.id}@guichet>"
    assert row.status == "sent"


async def test_r27_answer_by_letter_when_the_citizen_prefers_paper(
    db: Database, smtp_server: SmtpServer
) -> None:
    service, on_received, on_assigned = make(db, Smtp(smtp_server.url))
    event = received(
        {"email": "camille@example.org", "postal_address": "3 rue des Lilas, 99999 Admiville"},
        preference="letter",
    )
    await on_received(event)
    await on_assigned(assigned(uuid.UUID(event.subject)))
    await service.send_due()
    by_kind = {r.kind: r for r in await rows(db)}
    # The receipt of an electronic submission is electronic (R2/R6); the answer follows R27.
    assert by_kind["accuse_reception"].channel == "email"
    assert by_kind["assignment"].channel == "letter"
    assert by_kind["assignment"].status == "to_print"
    assert len(smtp_server.mailbox.messages) == 1


async def test_r6_receipt_of_a_letter_follows_the_preference_not_an_email_given_with_it(
    db: Database, smtp_server: SmtpServer
) -> None:
    # A letter entered by the reception (R22) bearing an e-mail address, its sender
    # asking for answers by post: the address was neither sent from nor given for
    # receipts (R6), so the AR goes by post too. Sent online, it goes by e-mail.
    service, on_received, _ = make(db, Smtp(smtp_server.url))
    contact = {"email": "camille@example.org", "postal_address": "3 rue des Lilas, 99999 Admiville"}
    on_paper = received(contact, preference="letter", channel="mail")
    online = received(contact, preference="letter", channel="web")
    for event in (on_paper, online):
        await on_received(event)
    await service.send_due()
    channels = {r.request_id: (r.kind, r.channel, r.status) for r in await rows(db)}
    assert channels == {
        uuid.UUID(on_paper.subject): ("accuse_reception", "letter", "to_print"),
        uuid.UUID(online.subject): ("accuse_reception", "email", "sent"),
    }
    assert len(smtp_server.mailbox.messages) == 1


async def test_citizen_with_no_contact_is_flagged_unreachable(db: Database) -> None:
    _, on_received, _ = make(db, MailboxFolder(Path("/nonexistent")))
    await on_received(received({}, preference="email"))
    [row] = await rows(db)
    assert row.status == "unreachable" and row.recipient is None


async def test_answer_overtaking_the_receipt_waits_then_goes_out(
    db: Database, smtp_server: SmtpServer
) -> None:
    service, on_received, on_assigned = make(db, Smtp(smtp_server.url))
    request_id = uuid.uuid4()
    await on_assigned(assigned(request_id))
    assert [r.status for r in await rows(db)] == ["waiting_contact"]
    await on_received(received({"email": "camille@example.org"}, request_id=request_id))
    statuses = sorted(r.status for r in await rows(db))
    assert statuses == ["pending", "waiting_contact"], "addressed by the sender, not before"
    assert await service.send_due() == 2
    assert len(smtp_server.mailbox.to("camille@example.org")) == 2


class FlakySmtp:
    """A real SMTP server that refuses the first message with a temporary error."""

    def __init__(self) -> None:
        self.calls = 0
        self.accepted: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        self.calls += 1
        if self.calls == 1:
            return "451 Temporary failure, try again later"
        assert isinstance(envelope.content, bytes)
        self.accepted.append(envelope.content)
        return "250 OK"


async def test_temporary_smtp_failure_is_retried_and_sent_once(db: Database) -> None:
    handler = FlakySmtp()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        service, on_received, _ = make(db, Smtp(f"smtp://127.0.0.1:{port}"))
        await on_received(received({"email": "camille@example.org"}))
        assert await service.send_due() == 0
        [row] = await rows(db)
        assert row.status == "pending" and row.attempts == 1 and "451" in row.last_error
        async with db.transaction() as session:  # make the retry due now
            await session.execute(deliveries.update().values(next_attempt_at=None))
        assert await service.send_due() == 1
        assert await service.send_due() == 0, "a sent delivery is never sent again"
    finally:
        controller.stop()
    assert len(handler.accepted) == 1


async def test_redelivered_event_creates_one_delivery(db: Database, tmp_path: Path) -> None:
    service, on_received, _ = make(db, MailboxFolder(tmp_path / "mailbox"))
    event = received({"email": "camille@example.org"})
    receipt = issued(uuid.UUID(event.subject))
    await on_received(event, receipt)
    await on_received(event, receipt)
    assert len(await rows(db)) == 1
    assert await service.send_due() == 1
    assert len(list((tmp_path / "mailbox").glob("*.eml"))) == 1


async def test_mailbox_folder_rewrites_rather_than_doubles(db: Database, tmp_path: Path) -> None:
    service, on_received, _ = make(db, MailboxFolder(tmp_path / "mailbox"))
    await on_received(received({"email": "camille@example.org"}))
    [row] = await rows(db)
    message = service.message(row)
    await service.transport.send(message, row.recipient)
    await service.transport.send(message, row.recipient)  # a crash-and-retry
    assert len(list((tmp_path / "mailbox").glob("*.eml"))) == 1


def item(code: str, received: datetime, due: datetime | None) -> DigestItem:
    return DigestItem(
        request_id=uuid.uuid4(),
        tracking_code=code,
        procedure_title="Signalement sur la voirie",
        channel="sms",
        status_label="Reçue par le service compétent",
        received_at=received,
        due_at=due,
    )


async def test_r28_one_email_per_digest_listing_new_and_overdue_requests(
    db: Database, smtp_server: SmtpServer
) -> None:
    service, _, _ = make(db, Smtp(smtp_server.url))
    handle = idempotent(db, "n.digests", service.on_service_digest, ServiceMetrics("t"))
    digest = ServiceDigest(
        service_code="voirie",
        service_name="Service de la voirie",
        service_email="voirie@admiville.example",
        timezone="Europe/Paris",
        period_start=datetime(2026, 3, 2, 7, 0, tzinfo=UTC),
        period_end=datetime(2026, 3, 3, 7, 0, tzinfo=UTC),
        new_total=3,
        overdue_total=1,
        # Received 2 March 9:15 and 23:30 UTC: 10:15 on the 2nd and 0:30 on the 3rd in Paris.
        new=[
            item("AAAA-BBBB-CCCC-DDDD", datetime(2026, 3, 2, 9, 15, tzinfo=UTC), None),
            item("EEEE-FFFF-GGGG-HHHH", datetime(2026, 3, 2, 23, 30, tzinfo=UTC), None),
        ],
        overdue=[
            item(
                "JJJJ-KKKK-MMMM-NNNN",
                datetime(2026, 2, 20, 8, 0, tzinfo=UTC),
                datetime(2026, 2, 28, 8, 0, tzinfo=UTC),
            )
        ],
    ).envelope(tenant="admiville", subject="admiville.voirie")
    await handle(digest)
    await handle(digest)
    assert len(await rows(db)) == 1
    assert await service.send_due() == 1
    assert await service.send_due() == 0
    [mail] = smtp_server.mailbox.to("voirie@admiville.example")
    assert mail["Subject"] == (
        "Relevé du 03/03/2026 pour Service de la voirie : 3 nouvelle(s), 1 en retard"
    )
    text = mail.get_content()
    assert "du 02/03/2026 à 08:00 au 03/03/2026 à 08:00" in text
    assert (
        "n° EEEE-FFFF-GGGG-HHHH : Signalement sur la voirie (sms, reçue le 03/03/2026 à 00:30)"
        in text
    )
    assert "… et 1 autre(s), dans la corbeille." in text
    assert "échéance 28/02/2026" in text
    [row] = await rows(db)
    assert (row.kind, row.request_id, row.status) == ("service_digest", None, "sent")


def closed_by_incident(request_id: uuid.UUID, incident_id: uuid.UUID | None) -> Envelope:
    """Routing's own status event, as it closes an incident without a `notify` action."""
    now = datetime.now(UTC)
    return StatusChanged(
        request_id=request_id,
        tracking_code=f"{request_id.hex[:4].upper()}-EFGH-JKMN-PQRS",
        from_status="en_cours",
        status="reparee",
        label="Réparée",
        phase="delivery",
        final=True,
        transition="terminer",
        actions=[],
        changed_at=now,
        sequence=3,
        incident_id=incident_id,
        reporters=3 if incident_id else None,
    ).envelope(tenant="admiville", subject=str(request_id), occurred_at=now)


async def test_r30_every_reporter_told_once_when_the_incident_closes(
    db: Database, smtp_server: SmtpServer
) -> None:
    service, on_received, _ = make(db, Smtp(smtp_server.url))
    on_status = idempotent(db, "n.statuses", service.on_status_changed, ServiceMetrics("t"))
    incident = uuid.uuid4()
    addresses = [f"habitant{i}@example.org" for i in range(4)]
    events = []
    for i, address in enumerate(addresses):
        request_id = uuid.uuid4()
        await on_received(received({"email": address}, request_id=request_id))
        # The last one closed on its own, without `notify`: nothing to say.
        events.append(closed_by_incident(request_id, incident if i < 3 else None))
    for event in [*events, events[0]]:  # a redelivery changes nothing
        await on_status(event)
    await service.send_due()
    for address in addresses[:3]:
        [closing] = [m for m in smtp_server.mailbox.to(address) if "Réparée" in m["Subject"]]
        assert "signalé par 3 personnes" in closing.get_content()
    assert not [m for m in smtp_server.mailbox.to(addresses[3]) if "Réparée" in m["Subject"]]
