"""Abusive senders (R9, CRPA L112-11): electronic sends only; kept and flagged, no receipt;
the source is told, and blockable only then and only for a significant number of sends."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from guichet_intake.models import requests
from guichet_intake.schemas import MissingPiecesCreate, PiecesReceived
from guichet_intake.service import IntakeService
from guichet_notifications.models import deliveries
from guichet_notifications.models import metadata as notifications_metadata
from guichet_notifications.service import Deliveries
from guichet_notifications.transports import MailboxFolder
from guichet_plumbing import tables
from guichet_plumbing.db import Database
from guichet_plumbing.inbox import idempotent
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.problems import Problem
from tests.intake.helpers import CAMILLE, outbox_events, submit

AT = datetime(2026, 5, 15, 9, 0, tzinfo=UTC)
SOURCE = "email:camille.martin@example.org"


async def flood(intake: IntakeService, sends: int) -> list[bool]:
    """`sends` different requests within minutes, two per hour allowed: which were flagged."""
    intake.settings.abuse_max_per_hour = 2
    flags = []
    for i in range(sends):
        created = await submit(intake, AT + timedelta(minutes=i), payload={"n": i})
        flags.append(created["acknowledgement"] is None)
    return flags


async def flooded_then_blocked(intake: IntakeService, *at: datetime) -> None:
    """SOURCE floods, is told (R9), then blocked at each instant of `at`."""
    assert await flood(intake, 5) == [False, False, True, True, True]
    await intake.notice_source("admiville", SOURCE, "envois en nombre")
    for when in at:
        await intake.block_source("admiville", SOURCE, "Envois en nombre", now=when)


async def test_r9_repetition_flagged_from_the_third_identical_send_not_a_single_retry(
    intake: IntakeService,
) -> None:
    """R23: a citizen resending once after a lost answer gets a receipt, and is not counted as
    abusive. Needs `_abuse` to flag a repetition only once `abuse_repeat_min_count` (3)
    identical sends fall in the window."""
    first = await submit(intake, AT)
    retry = await submit(intake, AT + timedelta(minutes=3))
    third = await submit(intake, AT + timedelta(minutes=5))
    assert first["acknowledgement"] is not None
    assert retry["acknowledgement"] is not None, "one retry is not abuse"
    assert third["acknowledgement"] is None
    assert third["receipts"] == []
    assert "abusif" in third["history"][-1]["label"]
    received = await outbox_events(intake.db, "intake.request.received.v1")
    assert [e.data["abusive"] for e in received] == [False, False, True]
    later = await submit(intake, AT + timedelta(minutes=30))
    assert later["acknowledgement"] is not None, "outside the window it is a new request"


async def test_r9_flood_from_one_source_is_flagged(intake: IntakeService) -> None:
    intake.settings.abuse_max_per_hour = 3
    flags = []
    for i in range(5):
        created = await submit(intake, AT + timedelta(minutes=i), payload={"n": i})
        flags.append(created["acknowledgement"] is None)
    assert flags == [False, False, False, True, True]


async def test_r9_source_blocked_only_after_notice(intake: IntakeService) -> None:
    assert await flood(intake, 5) == [False, False, True, True, True]
    [flagged] = (await intake.sources("admiville")).items
    assert flagged.source == SOURCE
    assert flagged.flagged_requests == 3
    with pytest.raises(Problem) as premature:
        await intake.block_source("admiville", SOURCE, "Envois en nombre")
    assert premature.value.status == 409
    await intake.notice_source("admiville", SOURCE, "envois en nombre")
    await intake.block_source("admiville", SOURCE, "Envois en nombre")
    with pytest.raises(Problem) as blocked:
        await submit(intake, AT + timedelta(hours=2), payload={"autre": True})
    assert blocked.value.status == 403
    await intake.unblock_source("admiville", SOURCE)
    assert (await submit(intake, AT + timedelta(hours=3), payload={"x": 1}))["acknowledgement"]


async def test_r9_repetition_is_named_even_inside_a_flood(intake: IntakeService) -> None:
    """The flood count stops at the threshold; the repeated content is still found among
    everything the source sent within the window, and named as such."""
    intake.settings.abuse_max_per_hour = 3
    intake.settings.abuse_repeat_min_count = 2
    for i in range(6):
        await submit(intake, AT + timedelta(minutes=i), payload={"n": i})
    again = await submit(intake, AT + timedelta(minutes=6), payload={"n": 0})
    assert again["acknowledgement"] is None
    assert "même contenu" in again["history"][-1]["label"]
    other = await submit(intake, AT + timedelta(minutes=7), payload={"n": 99})
    assert "plus de 3 envois" in other["history"][-1]["label"]


async def test_r9_block_needs_a_significant_number_of_flagged_sends(
    intake: IntakeService,
) -> None:
    assert intake.settings.abuse_block_min_flagged == 3
    assert await flood(intake, 4) == [False, False, True, True]
    await intake.notice_source("admiville", SOURCE, "envois en nombre")
    with pytest.raises(Problem) as too_few:
        await intake.block_source("admiville", SOURCE, "Envois en nombre")
    assert too_few.value.status == 409
    assert "2 envoi(s) signalé(s)" in too_few.value.detail
    assert "au moins 3" in too_few.value.detail
    await submit(intake, AT + timedelta(minutes=4), payload={"n": 4})  # the third flagged
    await intake.block_source("admiville", SOURCE, "Envois en nombre")
    assert [s.blocked_at is not None for s in (await intake.sources("admiville")).items] == [True]


async def test_r9_notice_reaches_the_source_at_its_address_once(
    intake: IntakeService, data_dir: Path
) -> None:
    await flood(intake, 3)
    await intake.notice_source("admiville", SOURCE, "envois en nombre", now=AT + timedelta(hours=1))
    [noticed] = await outbox_events(intake.db, "intake.source.noticed.v1")
    assert noticed.data["source"] == SOURCE
    assert noticed.data["email"] == "camille.martin@example.org"
    assert noticed.data["notice"][0] == (
        "Des envois reçus de votre part par Commune d'Admiville ont été identifiés comme "
        "abusifs : envois en nombre."
    )
    db = Database(f"sqlite:///{data_dir / 'notifications.sqlite3'}")
    await db.create_all(notifications_metadata, tables.metadata)
    try:
        mails = Deliveries(
            db,
            MailboxFolder(data_dir / "mailbox"),
            ServiceMetrics("r9"),
            sender="Guichet <guichet@admiville.example>",
            poll_interval=1,
            max_attempts=1,
        )
        consume = idempotent(db, "n.abuse", mails.on_source_noticed, ServiceMetrics("r9"))
        await consume(noticed)
        await consume(noticed)  # redelivered by the bus
        async with db.sessions() as session:
            [delivery] = (await session.execute(sa.select(deliveries))).all()
    finally:
        await db.dispose()
    assert delivery.kind == "source_notice"
    assert (delivery.channel, delivery.recipient) == ("email", "camille.martin@example.org")
    assert delivery.request_id == uuid.UUID(noticed.subject)
    assert "L112-11" in delivery.body


async def test_r9_notice_to_a_source_that_never_sent_anything_is_refused(
    intake: IntakeService,
) -> None:
    with pytest.raises(Problem) as unknown:
        await intake.notice_source("admiville", "email:personne@example.org", "essai")
    assert unknown.value.status == 404
    assert await outbox_events(intake.db, "intake.source.noticed.v1") == []


async def test_r9_counter_entries_are_neither_flagged_nor_blocked(intake: IntakeService) -> None:
    """L112-11 concerns electronic sends: an agent entering requests at the counter is never
    flagged nor refused (R22). Needs the submission path to check blocking and abuse only
    when `data.channel.electronic`."""
    await flood(intake, 5)
    await intake.notice_source("admiville", SOURCE, "envois en nombre")
    await intake.block_source("admiville", SOURCE, "Envois en nombre")
    for minutes in (10, 11, 12):
        at_counter = await submit(
            intake, AT + timedelta(minutes=minutes), channel="counter", entered_by="agent-042"
        )
        assert at_counter["acknowledgement"]["kind"] == "accuse_reception"
    assert [s.flagged_requests for s in (await intake.sources("admiville")).items] == [3]


async def test_r9_blocked_attempts_are_counted(intake: IntakeService) -> None:
    """Refused sends leave a trace. Needs the submission path to call
    `self.blocked_attempts.inc()` where it refuses a blocked source."""
    await flood(intake, 5)
    await intake.notice_source("admiville", SOURCE, "envois en nombre")
    await intake.block_source("admiville", SOURCE, "Envois en nombre")
    for minutes in (20, 21):
        with pytest.raises(Problem):
            await submit(intake, AT + timedelta(minutes=minutes), payload={"m": minutes})
    [family] = intake.blocked_attempts.collect()
    assert [s.value for s in family.samples if s.name.endswith("_total")] == [2.0]


async def test_r9_what_agents_entered_for_a_source_is_not_its_sending(
    intake: IntakeService,
) -> None:
    """R22: requests an agent entered from the applicant's calls count neither towards the
    flood nor as repetitions of the applicant's own sends. Needs the R9 reads (session and
    PostgreSQL paths) to count electronic channels only."""
    intake.settings.abuse_max_per_hour = 2
    for minutes in (0, 1):
        await submit(
            intake, AT + timedelta(minutes=minutes), channel="phone", entered_by="agent-042"
        )
    online = await submit(intake, AT + timedelta(minutes=2))
    retry = await submit(intake, AT + timedelta(minutes=3))
    assert online["acknowledgement"] is not None
    assert retry["acknowledgement"] is not None, "one retry is not abuse"


async def test_r9_a_flagged_send_gets_no_ar_when_its_pieces_arrive(intake: IntakeService) -> None:
    """A flagged send is owed no AR, even once its file is complete (and recording its
    pieces is no server error)."""
    for minutes in (0, 3, 5):
        flagged = await submit(intake, AT + timedelta(minutes=minutes))
    assert flagged["acknowledgement"] is None
    code = flagged["tracking_code"]
    await intake.request_pieces(
        code,
        MissingPiecesCreate(pieces=["Justificatif de domicile"], due_on=date(2026, 6, 1)),
        now=AT + timedelta(days=1),
    )
    done = await intake.pieces_received(code, PiecesReceived(), now=AT + timedelta(days=2))
    assert [r.kind.value for r in done.receipts] == ["demande_pieces"]
    assert done.history[-1].status == "pieces_received"


async def test_r9_r23_a_backlog_read_late_is_neither_a_repetition_nor_counted(
    intake: IntakeService,
) -> None:
    # A citizen sends the same e-mail on Friday 15, Saturday 16 and Sunday 17 May 2026 (no
    # AE came: the mailbox connector was down); it reads all three on Monday 18 May within
    # two minutes. Sends of three days are no repetition within ten minutes (R9), and the
    # connector's failure is not held against the sender (R23).
    monday = datetime(2026, 5, 18, 7, 0, tzinfo=UTC)
    flags = []
    for i, day in enumerate((15, 16, 17)):
        created = await submit(
            intake, monday + timedelta(minutes=i), channel="email", received_on=date(2026, 5, day)
        )
        flags.append(created["acknowledgement"] is None)
    assert flags == [False, False, False]
    # Nor do they count against what the sender sends today: once more is no repetition.
    today = await submit(intake, monday + timedelta(minutes=3), channel="email")
    assert today["acknowledgement"] is not None


async def test_r9_r23_a_weekend_backlog_is_not_a_flood(intake: IntakeService) -> None:
    # Three sends an hour allowed; four different e-mails of Friday to Sunday read on Monday.
    intake.settings.abuse_max_per_hour = 3
    monday = datetime(2026, 5, 18, 7, 0, tzinfo=UTC)
    flags = []
    for i, day in enumerate((15, 15, 16, 17)):
        created = await submit(
            intake,
            monday + timedelta(minutes=i),
            channel="email",
            received_on=date(2026, 5, day),
            payload={"n": i},
        )
        flags.append(created["acknowledgement"] is None)
    assert flags == [False, False, False, False]
    # A flood sent today is still one: the backlog only leaves it uncounted.
    for i in range(4, 8):
        created = await submit(
            intake, monday + timedelta(minutes=i), channel="email", payload={"n": i}
        )
        flags.append(created["acknowledgement"] is None)
    assert flags[4:] == [False, False, False, True]
    # And a send of Sunday read after that flood was no part of it.
    sunday = await submit(
        intake,
        monday + timedelta(minutes=9),
        channel="email",
        received_on=date(2026, 5, 17),
        payload={"n": 9},
    )
    assert sunday["acknowledgement"] is not None


async def test_r9_r23_a_courriel_that_arrived_before_the_block_is_received(
    intake: IntakeService,
) -> None:
    # The source is blocked on Wednesday 20 May 2026 (Paris time). An e-mail that reached the
    # mailbox on Tuesday 19 May, read late, was sent before the block: it is received. One
    # that arrived on 20 May is refused like any send of that day.
    await flooded_then_blocked(intake, datetime(2026, 5, 20, 8, 0, tzinfo=UTC))
    read = datetime(2026, 5, 21, 7, 0, tzinfo=UTC)
    before = await submit(
        intake, read, channel="email", received_on=date(2026, 5, 19), payload={"autre": 1}
    )
    assert before["reception_date"] == "2026-05-19"
    for arrived in (date(2026, 5, 20), None):
        with pytest.raises(Problem) as blocked:
            await submit(intake, read, channel="email", received_on=arrived, payload={"autre": 2})
        assert blocked.value.slug == "source-blocked"


async def test_r9_r23_yesterdays_backlog_read_just_after_midnight_is_not_counted(
    intake: IntakeService,
) -> None:
    # Three sends an hour allowed. Three e-mails of Tuesday 19 May, read late at 00:05 Paris
    # on Wednesday 20 May (22:05 UTC): the sender's one e-mail of 00:20 is no flood, though
    # the window then starts on the 19th.
    intake.settings.abuse_max_per_hour = 3
    read = datetime(2026, 5, 19, 22, 5, tzinfo=UTC)
    for i in range(3):
        await submit(
            intake,
            read + timedelta(minutes=i),
            channel="email",
            received_on=date(2026, 5, 19),
            payload={"n": i},
        )
    today = await submit(intake, read + timedelta(minutes=15), channel="email", payload={"n": 9})
    assert today["acknowledgement"] is not None


async def test_r9_a_block_restated_later_keeps_its_first_day(intake: IntakeService) -> None:
    # Blocked on Monday 18 May; the reason restated on Friday 22 May. An e-mail that arrived
    # on Wednesday 20 May, read late, came after the block: refused.
    await flooded_then_blocked(
        intake, *(datetime(2026, 5, day, 8, 0, tzinfo=UTC) for day in (18, 22))
    )
    with pytest.raises(Problem) as blocked:
        await submit(
            intake,
            datetime(2026, 5, 23, 8, 0, tzinfo=UTC),
            channel="email",
            received_on=date(2026, 5, 20),
            payload={"autre": 1},
        )
    assert blocked.value.slug == "source-blocked"


async def test_r9_r23_a_same_day_backlog_is_judged_by_when_it_arrived(
    intake: IntakeService,
) -> None:
    # The mailbox connector stops on Monday 18 May 2026 and catches up at 12:00 Paris: the
    # same e-mail had arrived at 9:00, 10:00 and 11:00, and is read within two minutes with
    # each instant of arrival. An hour apart, they are no repetition within ten minutes
    # (R9), and the connector's lag is not the sender's (R23).
    read = datetime(2026, 5, 18, 10, 0, tzinfo=UTC)
    flags = []
    for i in range(3):
        arrived = datetime(2026, 5, 18, 7 + i, 0, tzinfo=UTC)
        created = await submit(
            intake, read + timedelta(minutes=i), channel="email", arrived_at=arrived
        )
        flags.append(created["acknowledgement"] is None)
        assert (created["reception_date"], created["arrived_at"]) == (
            "2026-05-18",
            f"2026-05-18T0{7 + i}:00:00Z",
        )
    assert flags == [False, False, False]
    # A connector that reads each send within minutes of its arrival leaves R9 its say:
    # the same content three times in three minutes, from another address, is a repetition.
    other = {"name": "Dominique Petit", "email": "dominique.petit@example.org"}
    flags = []
    for i in range(3):
        created = await submit(
            intake,
            read + timedelta(minutes=10 + i),
            channel="email",
            applicant=other,
            arrived_at=read + timedelta(minutes=9 + i),
        )
        flags.append(created["acknowledgement"] is None)
    assert flags == [False, False, True]


async def test_r9_r23_a_courriel_that_arrived_before_the_block_that_day_is_received(
    intake: IntakeService,
) -> None:
    # The source is blocked at 10:00 Paris (08:00 UTC) on Wednesday 20 May 2026. An e-mail
    # that reached the mailbox at 9:30 that morning, read at 11:00, was sent before the
    # block: received. One that arrived at 10:30 is refused.
    await flooded_then_blocked(intake, datetime(2026, 5, 20, 8, 0, tzinfo=UTC))
    read = datetime(2026, 5, 20, 9, 0, tzinfo=UTC)
    before = await submit(
        intake,
        read,
        channel="email",
        arrived_at=datetime(2026, 5, 20, 7, 30, tzinfo=UTC),
        payload={"autre": 1},
    )
    assert before["acknowledgement"] is not None
    with pytest.raises(Problem) as blocked:
        await submit(
            intake,
            read,
            channel="email",
            arrived_at=datetime(2026, 5, 20, 8, 30, tzinfo=UTC),
            payload={"autre": 2},
        )
    assert blocked.value.slug == "source-blocked"


async def test_r9_a_source_whose_address_an_earlier_version_kept_with_a_tab_is_told(
    intake: IntakeService,
) -> None:
    # Stored before free text refused control characters: the notice still goes, the tab
    # read as a space, rather than the source never told (and so never blockable).
    address = {"street": "1 rue Haute", "postal_code": "75001", "city": "Paris"}
    await submit(
        intake,
        AT,
        applicant={**CAMILLE, "postal_address": address},
        payload={"n": 0},
    )
    async with intake.db.transaction() as session:
        kept = {**CAMILLE, "postal_address": {**address, "street": "1 rue\tHaute"}}
        await session.execute(sa.update(requests).values(applicant=kept))
    await intake.notice_source("admiville", SOURCE, "envois en nombre", now=AT)
    [noticed] = await outbox_events(intake.db, "intake.source.noticed.v1")
    assert noticed.data["postal_address"] == "1 rue Haute, 75001 Paris"
