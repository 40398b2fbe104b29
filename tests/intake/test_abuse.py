"""Abusive senders (R9): kept and flagged, no receipt, blockable once informed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guichet_intake.service import IntakeService
from guichet_plumbing.problems import Problem
from tests.intake.helpers import outbox_events, submit

AT = datetime(2026, 5, 15, 9, 0, tzinfo=UTC)


async def test_r9_repeated_content_is_kept_flagged_and_owed_no_receipt(
    intake: IntakeService,
) -> None:
    first = await submit(intake, AT)
    again = await submit(intake, AT + timedelta(minutes=3))
    assert first["acknowledgement"] is not None
    assert again["acknowledgement"] is None
    assert again["receipts"] == []
    assert "abusif" in again["history"][-1]["label"]
    received = await outbox_events(intake.db, "intake.request.received.v1")
    assert [e.data["abusive"] for e in received] == [False, True]
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
    await submit(intake, AT)
    await submit(intake, AT + timedelta(minutes=1))
    sources = await intake.sources("admiville")
    [flagged] = sources.items
    assert flagged.source == "email:camille.martin@example.org"
    assert flagged.flagged_requests == 1
    with pytest.raises(Problem) as premature:
        await intake.block_source("admiville", flagged.source, "Envois répétés")
    assert premature.value.status == 409
    await intake.notice_source("admiville", flagged.source, "Envois répétés identiques")
    await intake.block_source("admiville", flagged.source, "Envois répétés identiques")
    with pytest.raises(Problem) as blocked:
        await submit(intake, AT + timedelta(hours=2), payload={"autre": True})
    assert blocked.value.status == 403
    await intake.unblock_source("admiville", flagged.source)
    assert (await submit(intake, AT + timedelta(hours=3), payload={"x": 1}))["acknowledgement"]


async def test_r9_repetition_is_named_even_inside_a_flood(intake: IntakeService) -> None:
    """The flood count stops at the threshold; the repeated content is still found among
    everything the source sent within the window, and named as such."""
    intake.settings.abuse_max_per_hour = 3
    for i in range(6):
        await submit(intake, AT + timedelta(minutes=i), payload={"n": i})
    again = await submit(intake, AT + timedelta(minutes=6), payload={"n": 0})
    assert again["acknowledgement"] is None
    assert "même contenu" in again["history"][-1]["label"]
    other = await submit(intake, AT + timedelta(minutes=7), payload={"n": 99})
    assert "plus de 3 envois" in other["history"][-1]["label"]
