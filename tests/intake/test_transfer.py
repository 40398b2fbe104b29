"""Requests sent to the wrong administration (R12, R13)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from guichet_intake import repository
from guichet_intake.app import create_app
from guichet_intake.models import requests
from guichet_intake.schemas import MissingPiecesCreate, TransferCreate
from guichet_intake.service import FollowProof, IntakeService, _filed_as
from guichet_intake.settings import IntakeSettings
from guichet_intake.signing import sign, signed_by, verify
from guichet_plumbing.auth import ANONYMOUS
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.problems import Problem
from tests.intake.helpers import (
    CAMILLE,
    add_neighbour,
    add_tenant,
    as_left_by_a_signing_failure,
    close_by_workflow,
    outbox_events,
    pieces_asked_by_workflow,
    standing_decisions,
    submit,
    transfer_by_workflow,
)
from tests.support import free_port, serve

ASSOCIATION = {
    "kind": "association",
    "name": "Les Amis du Parc",
    "rna": "W751234567",
    "email": "amis.parc@example.org",
}


async def transfer_to_neighbour(intake: IntakeService, procedure: str) -> tuple[str, str]:
    """Received in Admiville on 15 May, transferred on 2 June, qualified there."""
    await add_neighbour(intake.db)
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    moved = await intake.transfer(
        created["tracking_code"],
        TransferCreate(tenant="voisinville", reason="La salle demandée appartient à Voisinville."),
        now=datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
    )
    assert moved.status.value == "transferred"
    notice = moved.receipts[-1]
    assert notice.kind.value == "avis_transmission"
    assert "transmise à Commune de Voisinville" in notice.mentions[0]
    [event] = await outbox_events(intake.db, "intake.request.transferred.v1")
    new_id = event.data["new_request_id"]
    async with intake.db.sessions() as session:
        row = await repository.get_request(session, uuid.UUID(new_id))
    # R12: told where it went, and under which number to follow it there.
    assert notice.mentions[-1] == f"Elle y est enregistrée sous le n° {row.tracking_code}."
    qualified = await intake.qualify(
        row.tracking_code, procedure, now=datetime(2026, 6, 3, 9, 0, tzinfo=UTC)
    )
    return created["tracking_code"], str(
        qualified.implicit_decision.decision_date if qualified.implicit_decision else None
    )


async def test_r13_transfer_sva_runs_from_competent_reception(intake: IntakeService) -> None:
    original, decision = await transfer_to_neighbour(intake, "salle")
    # Received by Voisinville on 2 June: deemed accepted at the end of 2 August.
    assert decision == "2026-08-02"
    followed = await intake.get_request(original)
    assert followed.implicit_decision is not None
    assert followed.implicit_decision.state == "none", "the first clock stops"
    assert followed.implicit_decision.decision_date is None, "no date silence will not reach"
    assert await intake.decide_due(now=datetime(2026, 7, 20, tzinfo=UTC)) == 0


async def test_r12_the_applicant_follows_the_transferred_request_as_the_first(
    intake: IntakeService,
) -> None:
    """Without an account, with the e-mail given at submission (R15), at both ends."""
    await transfer_to_neighbour(intake, "salle")
    [event] = await outbox_events(intake.db, "intake.request.transferred.v1")
    async with intake.db.sessions() as session:
        row = await repository.get_request(session, uuid.UUID(event.data["new_request_id"]))
    proof = FollowProof(factor=CAMILLE["email"])
    followed = await intake.get_request(row.tracking_code, ANONYMOUS, proof)
    assert followed.status.value == "received"
    with pytest.raises(Problem) as stranger:
        await intake.get_request(
            row.tracking_code, ANONYMOUS, FollowProof(factor="eve@example.org")
        )
    assert stranger.value.status == 404


async def test_r13_transfer_svr_runs_from_first_reception(intake: IntakeService) -> None:
    _, decision = await transfer_to_neighbour(intake, "subvention")
    # First seized by Admiville on 15 May: deemed rejected at the end of 15 July.
    assert decision == "2026-07-15"
    [event] = await outbox_events(intake.db, "intake.request.transferred.v1")
    async with intake.db.sessions() as session:
        row = await repository.get_request(session, uuid.UUID(event.data["new_request_id"]))
    receipt = (await intake.get_request(row.tracking_code)).receipts[-1]
    assert receipt.kind.value == "accuse_reception"
    text = " ".join(receipt.mentions)
    # Received by Voisinville on 2 June, but the 2 months run from Admiville's 15 May: the
    # receipt must say so, or "reçue le 2 juin … 2 mois … 15 juillet" reads as a mistake.
    assert "reçue le 2 juin 2026" in text
    assert (
        "dans un délai de 2 mois courant à compter du 15 mai 2026, et si votre dossier est "
        "complet, elle sera réputée rejetée le 15 juillet 2026 à minuit (soit à compter du "
        "16 juillet 2026 à 0 h)." in text
    )
    assert "réception de la demande par l'administration initialement saisie" in text


async def test_r13_transfer_notice_of_an_unqualified_request_states_both_rules(
    intake: IntakeService,
) -> None:
    await add_neighbour(intake.db)
    # A free-form e-mail received on 15 May, transferred on 2 June: its regime is the
    # competent administration's to say, so the notice gives both rules with their dates.
    created = await submit(
        intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC), procedure=None, channel="email"
    )
    moved = await intake.transfer(
        created["tracking_code"],
        TransferCreate(tenant="voisinville", reason="Compétence de Voisinville."),
        now=datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
    )
    notice = moved.receipts[-1]
    assert notice.kind.value == "avis_transmission"
    assert notice.mentions[1] == (
        "S'il s'agit d'un régime de rejet implicite, le délai au terme duquel le silence "
        "vaut rejet court depuis sa réception par notre administration, le 15 mai 2026 ; "
        "s'il s'agit d'un régime d'acceptation implicite, le délai au terme duquel le silence "
        "vaut acceptation ne court qu'à compter de sa réception par Commune de Voisinville, "
        "le 2 juin 2026."
    )
    assert "Commune de Voisinville vous adressera un accusé de réception" in notice.mentions[2]


async def test_r12_a_transfer_keeps_the_country_of_an_address_abroad(
    intake: IntakeService,
) -> None:
    # The collectivité it is transferred to writes to the applicant: a letter to Brussels
    # must say Belgium.
    await add_neighbour(intake.db)
    abroad = {"street": "Rue de la Loi 16", "postal_code": "1000", "city": "Bruxelles"}
    created = await submit(
        intake,
        datetime(2026, 5, 15, 9, 0, tzinfo=UTC),
        channel="mail",
        contact_preference="letter",
        applicant={"name": "Camille Martin", "postal_address": {**abroad, "country": "Belgique"}},
    )
    await intake.transfer(
        created["tracking_code"],
        TransferCreate(tenant="voisinville", reason="Compétence de Voisinville."),
        now=datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
    )
    received = await outbox_events(intake.db, "intake.request.received.v1")
    [there] = [e for e in received if e.tenant == "voisinville"]
    assert there.data["applicant"]["postal_address"] == (
        "Rue de la Loi 16, 1000 Bruxelles, Belgique"
    )


async def test_r12_transfer_tells_the_applicant_and_r4_receipt_due_from_new_seizure(
    intake: IntakeService,
) -> None:
    await add_neighbour(intake.db)
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    await intake.transfer(
        created["tracking_code"],
        TransferCreate(tenant="voisinville", reason="Compétence de Voisinville."),
        now=datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
    )
    issued = await outbox_events(intake.db, "intake.receipt.issued.v1")
    assert [e.data["kind"] for e in issued] == ["accuse_reception", "avis_transmission"]
    overdue = await intake.overdue("voisinville", now=datetime(2026, 6, 10, tzinfo=UTC))
    assert [o.receipt_due_on for o in overdue.items] == [date(2026, 6, 9)]
    with pytest.raises(Problem) as closed:
        await intake.transfer(
            created["tracking_code"], TransferCreate(tenant="voisinville", reason="Encore")
        )
    assert closed.value.status == 409


async def test_r12_external_transfer_is_signed_and_needs_acceptance(
    intake: IntakeService,
) -> None:
    received: list[tuple[bytes, str | None]] = []
    refuse = {"now": True}

    tried: list[bytes] = []

    async def inbox(request: Request) -> JSONResponse:
        tried.append(await request.body())
        if refuse["now"]:
            return JSONResponse({"error": "indisponible"}, status_code=503)
        received.append((await request.body(), request.headers.get("idempotency-key")))
        return JSONResponse({"status": "reçu"}, status_code=202)

    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    async with serve(Starlette(routes=[Route("/transmissions", inbox, methods=["POST"])])) as base:
        transfer = TransferCreate(
            administration_name="Préfecture de la Zone",
            administration_url=f"{base}/transmissions",
            reason="Compétence de l'État.",
        )
        with pytest.raises(Problem) as failed:
            await intake.transfer(
                created["tracking_code"], transfer, now=datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
            )
        assert failed.value.status == 502
        still = await intake.get_request(created["tracking_code"])
        assert still.status.value == "received", "nothing changes unless it was accepted"
        refuse["now"] = False
        moved = await intake.transfer(
            created["tracking_code"], transfer, now=datetime(2026, 6, 2, 10, 0, tzinfo=UTC)
        )
    assert moved.status.value == "transferred"
    # A receiver that took the first try (its answer lost) sees the same key, same bytes.
    assert len(tried) == 2 and tried[0] == tried[1]
    [(token, key)] = received
    assert key.startswith(f"transfer-{created['id']}-")
    checked = await intake.verify(token.decode())
    assert checked.authentic
    assert checked.receipt is not None
    assert checked.receipt["tracking_code"] == created["tracking_code"]
    assert checked.receipt["first_received_on"] == "2026-05-15"


async def test_r12_external_transfer_only_to_allowed_https_destinations(
    intake: IntakeService,
) -> None:
    created = await submit(intake, datetime.now(UTC))
    intake.settings.env = "production"
    with pytest.raises(Problem) as plain_http:
        await intake.transfer(
            created["tracking_code"],
            TransferCreate(
                administration_name="Serveur interne",
                administration_url="http://127.0.0.1:5432/",
                reason="Essai",
            ),
        )
    assert plain_http.value.status == 422
    intake.settings.transfer_allowed_hosts = ["transmissions.prefecture.example"]
    with pytest.raises(Problem) as unlisted:
        await intake.transfer(
            created["tracking_code"],
            TransferCreate(
                administration_name="Ailleurs",
                administration_url="https://ailleurs.example/in",
                reason="Essai",
            ),
        )
    assert unlisted.value.invalid_params
    assert unlisted.value.invalid_params[0].name == "administration_url"
    assert (await intake.get_request(created["tracking_code"])).status.value == "received"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/in",
        "https://10.0.0.5/in",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/in",
        "https://localhost:8443/in",
        "https://" + "a" * 64 + ".example.fr/in",  # not a host name: no label past 63
    ],
)
async def test_r12_no_transfer_to_the_internal_network_in_production(
    intake: IntakeService, url: str
) -> None:
    """With no list of hosts, an agent's form must not reach a private, loopback or
    link-local address (HTTPS or not): refused before any connection, naming the field."""
    created = await submit(intake, datetime.now(UTC))
    intake.settings.env = "production"
    with pytest.raises(Problem) as refused:
        await intake.transfer(
            created["tracking_code"],
            TransferCreate(administration_name="Interne", administration_url=url, reason="Essai"),
        )
    assert refused.value.status == 422
    assert refused.value.invalid_params
    assert refused.value.invalid_params[0].name == "administration_url"
    assert (await intake.get_request(created["tracking_code"])).status.value == "received"


async def test_r12_request_too_large_to_sign_is_a_french_conflict_not_a_crash(
    intake: IntakeService,
) -> None:
    # Under the 1 MiB body limit, but over the ~750 kB a JWS payload of 1 MB can carry.
    created = await submit(intake, datetime.now(UTC), payload={"plan": "x" * 800_000})
    with pytest.raises(Problem) as refused:
        await intake.transfer(
            created["tracking_code"],
            TransferCreate(
                administration_name="Préfecture de la Zone",
                administration_url="https://transmissions.prefecture.example/in",
                reason="Compétence de l'État.",
            ),
        )
    assert refused.value.status == 409
    assert "trop volumineuse" in refused.value.detail
    assert "par courrier" in refused.value.detail
    assert (await intake.get_request(created["tracking_code"])).status.value == "received"


class Receiver:
    """Another administration's inbox: refuses while `down`, and notes every attempt."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.tried: list[tuple[bytes, str | None]] = []
        self.during: Callable[[], Awaitable[None]] | None = None

    async def handle(self, request: Request) -> JSONResponse:
        self.tried.append((await request.body(), request.headers.get("idempotency-key")))
        if self.during is not None:
            await self.during()
        if self.down:
            return JSONResponse({"error": "indisponible"}, status_code=503)
        return JSONResponse({"status": "reçu"}, status_code=202)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/transmissions", self.handle, methods=["POST"])])


def to_prefecture(base: str) -> TransferCreate:
    return TransferCreate(
        administration_name="Préfecture de la Zone",
        administration_url=f"{base}/transmissions",
        reason="Compétence de l'État.",
    )


async def kept_transfer(intake: IntakeService, created: dict[str, Any]) -> Any:
    """The transfer elsewhere kept to be sent, or kept as refused, for `created`."""
    async with intake.db.sessions() as session:
        return await repository.outgoing_transfer(session, uuid.UUID(created["id"]))


def unaccepted(intake: IntakeService) -> float:
    [family] = intake.transfers_unaccepted.collect()
    return family.samples[0].value


async def notices_of_transfer(intake: IntakeService, tracking_code: str) -> int:
    followed = await intake.get_request(tracking_code)
    return sum(r.kind.value == "avis_transmission" for r in followed.receipts)


async def test_r12_external_transfer_holds_no_transaction_while_the_remote_answers(
    intake: IntakeService,
) -> None:
    # A slow administration must not hold the request (nor, on SQLite, the whole database)
    # while it answers: a write to the same request goes through meanwhile.
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    receiver = Receiver()
    written: list[str] = []

    async def write_meanwhile() -> None:
        async def write() -> None:
            async with intake.db.transaction() as session:
                row = await repository.get_request(session, uuid.UUID(created["id"]), True)
                await repository.add_history(
                    session, row.id, datetime(2026, 6, 2, 9, 0, tzinfo=UTC), "note", "Appel reçu"
                )
            written.append("done")

        await asyncio.wait_for(write(), 2)

    receiver.during = write_meanwhile
    async with serve(receiver.app()) as base:
        moved = await intake.transfer(
            created["tracking_code"],
            to_prefecture(base),
            now=datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
        )
    assert written == ["done"]
    assert moved.status.value == "transferred"


async def test_r12_a_transfer_asked_by_a_workflow_is_sent_by_the_sweep_until_accepted(
    intake: IntakeService,
) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    receiver = Receiver(down=True)
    asked = ASKED
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions")
        assert receiver.tried == [], "sent once the event's transaction committed, not in it"
        assert await intake.send_transfers(asked) == 1
        assert (await intake.get_request(created["tracking_code"])).status.value == "received"
        assert unaccepted(intake) == 1, "operators see it (GuichetTransferNotAccepted)"
        # Retried after 2 minutes, not before.
        assert await intake.send_transfers(asked + timedelta(minutes=1)) == 0
        receiver.down = False
        assert await intake.send_transfers(asked + timedelta(minutes=2)) == 1
        assert await intake.send_transfers(asked + timedelta(days=1)) == 0
    moved = await intake.get_request(created["tracking_code"])
    assert moved.status.value == "transferred"
    assert await notices_of_transfer(intake, created["tracking_code"]) == 1
    assert len(receiver.tried) == 2 and receiver.tried[0] == receiver.tried[1]
    assert len(await outbox_events(intake.db, "intake.request.transferred.v1")) == 1
    assert unaccepted(intake) == 0


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
        # Accepted at 23:58 Paris on the last day, taken over at 00:03, before the
        # scheduler's pass: the acceptance born at midnight does not undo it.
        datetime(2026, 7, 15, 21, 58, tzinfo=UTC),
    ],
)
async def test_r12_a_transfer_accepted_just_before_a_crash_is_recorded_once(
    intake: IntakeService, monkeypatch: pytest.MonkeyPatch, now: datetime
) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    receiver = Receiver()
    record = intake._record_transfer

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("process killed")

    monkeypatch.setattr(intake, "_record_transfer", crash)
    async with serve(receiver.app()) as base:
        with pytest.raises(RuntimeError):
            await intake.transfer(created["tracking_code"], to_prefecture(base), now=now)
        monkeypatch.setattr(intake, "_record_transfer", record)
        assert (await intake.get_request(created["tracking_code"])).status.value == "received"
        # Another agent cannot start a second one meanwhile.
        with pytest.raises(Problem) as pending:
            await intake.transfer(created["tracking_code"], to_prefecture(base), now=now)
        assert pending.value.status == 409
        # Left alone while the agent's call might still be sending it, then taken over.
        assert await intake.send_transfers(now + timedelta(seconds=30)) == 0
        assert await intake.send_transfers(now + timedelta(minutes=5)) == 1
    moved = await intake.get_request(created["tracking_code"])
    assert moved.status.value == "transferred"
    assert await notices_of_transfer(intake, created["tracking_code"]) == 1
    # The receiver saw the same bytes under the same key: it files the request once.
    assert len(receiver.tried) == 2 and receiver.tried[0] == receiver.tried[1]


AT = datetime(2026, 5, 15, 9, 30, tzinfo=UTC)
ASKED = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)


async def ask_transfer_by_workflow(
    intake: IntakeService, created: dict[str, Any], url: str, asked: datetime = ASKED
) -> None:
    """Routing's TransferRequested to the prefecture (the row is only kept)."""
    await transfer_by_workflow(
        intake,
        created,
        asked,
        reason="Compétence de l'État.",
        tenant=None,
        administration_name="Préfecture de la Zone",
        administration_url=url,
    )


async def test_r12_the_sweep_does_not_transfer_a_request_closed_meanwhile(
    intake: IntakeService,
) -> None:
    created = await submit(intake, AT)
    receiver = Receiver(down=True)
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions")
        assert await intake.send_transfers(ASKED) == 1  # refused: 503
        # The service answers the applicant and closes the request.
        await close_by_workflow(intake, created, ASKED + timedelta(hours=1))
        assert (await intake.get_request(created["tracking_code"])).status.value == "closed"
        receiver.down = False
        await intake.send_transfers(ASKED + timedelta(hours=2))
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "closed"
    assert await notices_of_transfer(intake, created["tracking_code"]) == 0
    assert len(receiver.tried) == 1, "a closed request is not sent elsewhere"


async def test_r12_a_refusal_arriving_after_the_request_was_closed_leaves_it_closed(
    intake: IntakeService,
) -> None:
    # The service answers while the attempt is in flight, then the remote refuses: the
    # request is not said to "stay here", nor given back to its service.
    created = await submit(intake, AT)

    async def answered_meanwhile(request: Request) -> JSONResponse:
        await close_by_workflow(intake, created, ASKED)
        return JSONResponse({"error": "inconnu"}, status_code=404)

    receiver = Receiver()
    receiver.handle = answered_meanwhile  # type: ignore[method-assign]
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions")
        await intake.send_transfers(ASKED)
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "closed"
    assert "annulée" in followed.history[-1].label
    assert await outbox_events(intake.db, "intake.request.transfer_refused.v1") == []
    assert unaccepted(intake) == 0


async def test_r13_silence_does_not_decide_where_a_transfer_asked_in_time_is_on_its_way(
    intake: IntakeService,
) -> None:
    """Asked on 10 July, the prefecture down until 16 July: the SVA due at the end of 15 July
    is not born here (this administration said it is not the competent one), and once the
    prefecture has it, none ever is."""
    created = await submit(intake, AT)  # SVA, 2 months: deemed accepted on 15 July
    receiver = Receiver(down=True)
    asked = datetime(2026, 7, 10, 9, 0, tzinfo=UTC)
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions", asked)
        assert await intake.send_transfers(asked) == 1
        assert await intake.decide_due(datetime(2026, 7, 16, 12, 0, tzinfo=UTC)) == 0
        waiting = await intake.get_request(created["tracking_code"])
        assert waiting.status.value == "received"
        assert waiting.implicit_decision is not None
        # Not "running" with a past date: the applicant sees the date waits on the transfer.
        assert (waiting.implicit_decision.state, waiting.implicit_decision.decision_date) == (
            "transfer_pending",
            date(2026, 7, 15),
        )
        receiver.down = False
        await intake.send_transfers(datetime(2026, 7, 16, 12, 1, tzinfo=UTC))
    assert await intake.decide_due(datetime(2026, 7, 20, tzinfo=UTC)) == 0
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "transferred"
    assert await notices_of_transfer(intake, created["tracking_code"]) == 1


async def test_r13_past_its_date_an_sva_held_by_a_transfer_waits_for_it_or_an_answer(
    intake: IntakeService,
) -> None:
    """Past the date while the transfer is on its way, whether an acceptance was born here
    depends on that transfer (R13): an agent's act is refused until it is known, saying
    so. The service's answer keeps the request here: the transfer is not made, so it
    changed nothing, and the acceptance born at the date stands before the answer."""
    created = await submit(intake, AT)  # SVA, 2 months: deemed accepted on 15 July
    receiver = Receiver(down=True)
    after = datetime(2026, 7, 20, 9, 0, tzinfo=UTC)
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(
            intake, created, f"{base}/transmissions", datetime(2026, 7, 10, 9, 0, tzinfo=UTC)
        )
        await intake.send_transfers(datetime(2026, 7, 10, 9, 0, tzinfo=UTC))
        with pytest.raises(Problem) as waiting:
            await intake.request_pieces(
                created["tracking_code"],
                MissingPiecesCreate(pieces=["Attestation d'assurance"], due_on=date(2026, 8, 1)),
                now=after,
            )
        assert (waiting.value.status, waiting.value.slug) == (409, "transfer-pending")
        assert "attendez l'issue de la transmission" in waiting.value.detail
        await close_by_workflow(intake, created, after + timedelta(hours=1))
        receiver.down = False
        await intake.send_transfers(after + timedelta(hours=2))
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "implicitly_accepted"
    born = next(h for h in followed.history if h.status == "implicitly_accepted")
    assert born.at == datetime(2026, 7, 15, 22, 0, tzinfo=UTC)
    assert len(receiver.tried) == 1, "answered here: not sent again once the remote is up"
    assert standing_decisions(intake, "accepted") == 1


@pytest.mark.parametrize("there", [202, 404])
async def test_r13_a_transfer_asked_before_an_sva_and_read_after_its_pass_holds_it_back(
    intake: IntakeService, there: int
) -> None:
    """Asked at 23:30 in Paris on 15 July, the workflow's transfer reaches intake after the
    pass recorded the acceptance: held back as it would have been, read in time (R13).
    Accepted there, none is born here; refused there for good, it is born on its day."""
    created = await submit(intake, AT)  # SVA, 2 months: deemed accepted on 15 July
    born = datetime(2026, 7, 15, 22, 0, tzinfo=UTC)
    assert await intake.decide_due(born + timedelta(seconds=5)) == 1
    receiver = Receiver() if there == 202 else answering(404)
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(
            intake, created, f"{base}/transmissions", datetime(2026, 7, 15, 21, 30, tzinfo=UTC)
        )
        waiting = await intake.get_request(created["tracking_code"])
        assert waiting.status.value == "processing"
        assert waiting.implicit_decision is not None
        assert waiting.implicit_decision.state == "transfer_pending"
        assert waiting.history[-1].label == (
            "Pas d'acceptation implicite ici : le service avait transmis la demande le "
            "15 juillet 2026, avant l'échéance ; le délai court à compter de sa réception "
            "par l'administration compétente"
        )
        assert await intake.decide_due(born + timedelta(minutes=1)) == 0
        await intake.send_transfers(born + timedelta(minutes=2))
    followed = await intake.get_request(created["tracking_code"])
    if there == 202:
        assert followed.status.value == "transferred"
        assert await intake.decide_due(datetime(2026, 9, 1, tzinfo=UTC)) == 0
    else:
        assert await intake.decide_due(born + timedelta(minutes=3)) == 1
        decided = await intake.get_request(created["tracking_code"])
        assert decided.status.value == "implicitly_accepted"
        # Born, held back, born again: each line at the instant it speaks of.
        lines = [(h.at, h.status) for h in decided.history if h.at == born]
        assert [status for _, status in lines] == [
            "implicitly_accepted",
            "implicit_decision_void",
            "implicitly_accepted",
        ]
    # What operators count: born less found void, one standing acceptance or none.
    assert standing_decisions(intake, "accepted") == (0 if there == 202 else 1)


async def test_r13_an_sva_waiting_on_a_transfer_refused_for_good_is_born_on_its_day(
    intake: IntakeService,
) -> None:
    """Refused for good, the transfer changed nothing: the acceptance is born at midnight
    at the end of 15 July (16 July, 0 h in Paris: 15 July, 22:00 UTC), as if never asked."""
    created = await submit(intake, AT)
    receiver = answering(404)
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(
            intake, created, f"{base}/transmissions", datetime(2026, 7, 15, 20, 0, tzinfo=UTC)
        )
        assert await intake.decide_due(datetime(2026, 7, 15, 22, 0, 5, tzinfo=UTC)) == 0
        await intake.send_transfers(datetime(2026, 7, 15, 22, 1, tzinfo=UTC))
    refused = await intake.get_request(created["tracking_code"])
    assert refused.implicit_decision is not None
    assert refused.implicit_decision.state == "running", "no longer held by that transfer"
    assert await intake.decide_due(datetime(2026, 7, 15, 22, 2, tzinfo=UTC)) == 1
    decided = await intake.get_request(created["tracking_code"])
    assert decided.status.value == "implicitly_accepted"
    born = next(h for h in decided.history if h.status == "implicitly_accepted")
    assert born.at == datetime(2026, 7, 15, 22, 0, tzinfo=UTC)


SVR_BORN = datetime(2026, 7, 15, 22, 0, tzinfo=UTC)  # 16 July, 0 h in Paris


async def rejected_by_silence(intake: IntakeService) -> dict[str, Any]:
    """A subsidy asked on 15 May (SVR, 2 months): deemed rejected at midnight at the end
    of 15 July, whatever happens to it meanwhile (R13)."""
    return await submit(
        intake, AT, procedure="subvention-quartier", applicant=ASSOCIATION, payload={"p": 1}
    )


async def rejected_on_its_way(intake: IntakeService, created: dict[str, Any], url: str) -> None:
    """The transfer asked at 23:30 in Paris on 15 July not accepted (the prefecture is
    down), then the rejection born at midnight."""
    asked = datetime(2026, 7, 15, 21, 30, tzinfo=UTC)
    await ask_transfer_by_workflow(intake, created, url, asked)
    assert await intake.send_transfers(asked) == 1
    assert await intake.decide_due(SVR_BORN + timedelta(seconds=5)) == 1


async def test_r12_r13_a_transfer_asked_before_an_svr_is_born_is_still_made(
    intake: IntakeService,
) -> None:
    """Transfer asked at 23:30 in Paris on 15 July, the prefecture down until the next
    morning: the rejection is born at midnight all the same (the SVR runs from the first
    reception, R13). That rejection is the prefecture's decision, and the prefecture must
    have the request (R12): the sweep sends it on, and the applicant is told both."""
    created = await rejected_by_silence(intake)
    receiver = Receiver(down=True)
    async with serve(receiver.app()) as base:
        await rejected_on_its_way(intake, created, f"{base}/transmissions")
        assert await intake.send_transfers(SVR_BORN + timedelta(minutes=1)) == 1
        assert unaccepted(intake) == 1, "still to be made: operators see it"
        receiver.down = False
        assert await intake.send_transfers(datetime(2026, 7, 16, 8, 0, tzinfo=UTC)) == 1
    assert len(receiver.tried) == 3 and unaccepted(intake) == 0
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "implicitly_rejected"
    assert followed.status_label == (
        "Rejetée implicitement, puis transmise à Préfecture de la Zone"
    )
    decision = followed.implicit_decision
    assert decision is not None
    assert (decision.decided, decision.decision_date) == ("rejected", date(2026, 7, 15))
    notice = followed.receipts[-1]
    assert notice.kind.value == "avis_transmission"
    assert notice.mentions[1:] == [
        "Le délai au terme duquel le silence vaut rejet courait depuis sa réception par "
        "notre administration, le 15 mai 2026 : faute de réponse, elle a été réputée "
        "rejetée le 15 juillet 2026 à minuit (soit à compter du 16 juillet 2026 à 0 h).",
        "Cette décision implicite de rejet est celle de l'administration compétente, qui "
        "peut encore répondre expressément à votre demande.",
        "Préfecture de la Zone vous adressera un accusé de réception indiquant les voies et "
        "délais de recours contre cette décision.",
    ]
    assert len(await outbox_events(intake.db, "intake.request.transferred.v1")) == 1
    # A later status from the workflow is read as for any request silence decided.
    await close_by_workflow(intake, created, datetime(2026, 7, 20, 9, 0, tzinfo=UTC))
    closed = await intake.get_request(created["tracking_code"])
    assert closed.status.value == "implicitly_rejected"
    assert closed.history[-1].label == "Réponse envoyée"


async def test_r12_a_transfer_asked_before_an_svr_and_read_after_its_pass_is_made(
    intake: IntakeService,
) -> None:
    """The workflow's transfer, asked at 23:30 in Paris on the last day, reaches intake
    after the scheduler recorded the rejection: made all the same, by the sweep."""
    created = await rejected_by_silence(intake)
    assert await intake.decide_due(SVR_BORN + timedelta(seconds=5)) == 1
    receiver = Receiver()
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(
            intake, created, f"{base}/transmissions", datetime(2026, 7, 15, 21, 30, tzinfo=UTC)
        )
        assert await intake.send_transfers(SVR_BORN + timedelta(minutes=1)) == 1
        # Sent on once: a second transfer asked in time and read now is not made.
        await ask_transfer_by_workflow(
            intake, created, f"{base}/transmissions", datetime(2026, 7, 15, 21, 45, tzinfo=UTC)
        )
        assert await intake.send_transfers(SVR_BORN + timedelta(minutes=2)) == 0
    followed = await intake.get_request(created["tracking_code"])
    assert (followed.status.value, len(receiver.tried)) == ("implicitly_rejected", 1)
    assert await notices_of_transfer(intake, created["tracking_code"]) == 1
    assert followed.history[-1].status == "transfer_cancelled"


@pytest.mark.parametrize("asked", [SVR_BORN, SVR_BORN + timedelta(hours=1)])
async def test_r12_a_transfer_asked_once_the_svr_was_born_is_not_made(
    intake: IntakeService, asked: datetime
) -> None:
    # Asked at midnight or after, the request was already decided: nothing to send on.
    created = await rejected_by_silence(intake)
    assert await intake.decide_due(SVR_BORN + timedelta(seconds=5)) == 1
    receiver = Receiver()
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions", asked)
        assert await intake.send_transfers(asked + timedelta(minutes=1)) == 0
    followed = await intake.get_request(created["tracking_code"])
    assert (followed.status.value, len(receiver.tried)) == ("implicitly_rejected", 0)
    assert (followed.history[-1].status, followed.history[-1].label) == (
        "transfer_cancelled",
        "Transmission à Préfecture de la Zone annulée : la demande est close (Rejetée "
        "implicitement).",
    )


async def test_r12_a_transfer_on_its_way_is_not_made_once_the_service_answered(
    intake: IntakeService,
) -> None:
    # Rejected by silence, then answered by this administration itself: it kept the
    # request after all, and the transfer still waiting is dropped.
    created = await rejected_by_silence(intake)
    receiver = Receiver(down=True)
    async with serve(receiver.app()) as base:
        await rejected_on_its_way(intake, created, f"{base}/transmissions")
        await close_by_workflow(intake, created, SVR_BORN + timedelta(hours=1))
        receiver.down = False
        await intake.send_transfers(SVR_BORN + timedelta(hours=2))
    followed = await intake.get_request(created["tracking_code"])
    assert (followed.status.value, len(receiver.tried)) == ("implicitly_rejected", 1)
    assert followed.history[-1].status == "transfer_cancelled"
    assert unaccepted(intake) == 0


async def sent_on_after_rejection(intake: IntakeService) -> dict[str, Any]:
    """Rejected by silence at midnight, then sent on to the prefecture at 00:01 by a
    transfer the workflow asked at 23:30 in Paris on 15 July."""
    created = await rejected_by_silence(intake)
    receiver = Receiver()
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(
            intake, created, f"{base}/transmissions", datetime(2026, 7, 15, 21, 30, tzinfo=UTC)
        )
        assert await intake.decide_due(SVR_BORN + timedelta(seconds=5)) == 1
        assert await intake.send_transfers(SVR_BORN + timedelta(minutes=1)) == 1
    return created


async def test_r10_r12_an_answer_in_time_read_after_the_transfer_corrects_its_notice(
    intake: IntakeService,
) -> None:
    """The service answered at 23:00 in Paris on the last day; that answer is read after
    the request was sent on: no rejection was born (R10). The request has left: it is
    transferred, and the applicant reads that the notice of transfer was wrong."""
    created = await sent_on_after_rejection(intake)
    await close_by_workflow(intake, created, datetime(2026, 7, 15, 21, 0, tzinfo=UTC))
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "transferred"
    assert followed.implicit_decision is not None
    assert followed.implicit_decision.decided is None
    assert [r.kind.value for r in followed.receipts][-2:] == [
        "avis_transmission",
        "avis_transmission",
    ]
    assert followed.receipts[-1].mentions == [
        "Contrairement à ce qu'indiquait notre précédent avis de transmission de votre "
        f"demande n° {created['tracking_code']} à Préfecture de la Zone, elle n'a pas été "
        "réputée rejetée : notre administration avait répondu le 15 juillet 2026, avant "
        "l'échéance.",
        "Préfecture de la Zone vous adressera un accusé de réception indiquant le régime "
        "applicable et la date correspondante.",
    ]
    assert "implicit_decision_void" in [h.status for h in followed.history]
    assert await intake.decide_due(datetime(2026, 9, 1, tzinfo=UTC)) == 0


async def test_r11_r12_pieces_asked_in_time_and_read_after_the_transfer_are_not_asked(
    intake: IntakeService,
) -> None:
    """Pieces asked at 23:00 in Paris on the last day, read after the request was sent
    on: the applicant was never asked for them, so nothing suspended the SVR (R11), and
    the request, gone, is not asked for pieces here."""
    created = await sent_on_after_rejection(intake)
    await pieces_asked_by_workflow(
        intake, created, datetime(2026, 7, 15, 21, 0, tzinfo=UTC), ("Budget prévisionnel",)
    )
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "implicitly_rejected"
    assert [r.kind.value for r in followed.receipts].count("demande_pieces") == 0
    assert [r.kind.value for r in followed.receipts].count("avis_transmission") == 1


async def test_r12_a_second_transfer_asked_in_time_and_read_after_the_first_is_not_made(
    intake: IntakeService,
) -> None:
    # Asked at 23:00 to Voisinville, read once the prefecture has the request: not made,
    # and said so; the rejection the prefecture's notice states stands.
    await add_neighbour(intake.db)
    created = await sent_on_after_rejection(intake)
    await transfer_by_workflow(intake, created, datetime(2026, 7, 15, 21, 0, tzinfo=UTC))
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "implicitly_rejected"
    assert (followed.history[-1].status, followed.history[-1].label) == (
        "transfer_cancelled",
        "Transmission à Commune de Voisinville annulée : la demande est close (Rejetée "
        "implicitement).",
    )
    assert len(await outbox_events(intake.db, "intake.request.transferred.v1")) == 1


async def test_r12_a_request_rejected_while_its_transfer_was_refused_can_still_be_sent(
    intake: IntakeService,
) -> None:
    """The workflow's address was wrong (404), and the rejection was born meanwhile: an
    agent sends it to the right one, and the gauge operators watch goes back to 0."""
    created = await rejected_by_silence(intake)
    wrong, right = answering(404), Receiver()
    asked = datetime(2026, 7, 15, 21, 30, tzinfo=UTC)
    async with serve(wrong.app()) as bad, serve(right.app()) as good:
        await ask_transfer_by_workflow(intake, created, f"{bad}/transmissions", asked)
        assert await intake.decide_due(SVR_BORN + timedelta(seconds=5)) == 1
        await intake.send_transfers(SVR_BORN + timedelta(minutes=1))
        assert unaccepted(intake) == 1
        told = await intake.get_request(created["tracking_code"])
        refused = next(h for h in told.history if h.status == "transfer_refused")
        assert refused.label == (
            "La transmission de votre demande à Préfecture de la Zone n'a pas abouti : "
            "notre administration la transmettra par un autre moyen à l'administration "
            "compétente."
        )
        moved = await intake.transfer(
            created["tracking_code"], to_prefecture(good), now=SVR_BORN + timedelta(days=1)
        )
        await intake.send_transfers(SVR_BORN + timedelta(days=1, minutes=1))
    assert (moved.status.value, len(right.tried)) == ("implicitly_rejected", 1)
    assert moved.receipts[-1].kind.value == "avis_transmission"
    assert "réputée rejetée" in moved.receipts[-1].mentions[1]
    assert unaccepted(intake) == 0
    # Sent on: an agent's second transfer is refused, as for any closed request.
    with pytest.raises(Problem) as closed:
        await intake.transfer(
            created["tracking_code"], to_prefecture(good), now=SVR_BORN + timedelta(days=2)
        )
    assert closed.value.slug == "request-closed"


@pytest.mark.parametrize("second", [503, 404])
async def test_r12_a_rejected_request_sent_anew_is_retried_like_any_transfer(
    intake: IntakeService, monkeypatch: pytest.MonkeyPatch, second: int
) -> None:
    """The agent's new address is kept, then the call dies before sending it: the sweep
    takes it over. Its first failure is retried (503), though the refused transfer it
    stands in for was asked more than a day before, or refused (404); either way operators
    see it, and the request can still be sent on, here by post."""
    created = await rejected_by_silence(intake)
    wrong, right = answering(404), (Receiver() if second == 503 else answering(404))
    right.down = True
    asked = datetime(2026, 7, 15, 21, 30, tzinfo=UTC)
    later = SVR_BORN + timedelta(days=3)

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("process killed")

    async with serve(wrong.app()) as bad, serve(right.app()) as good:
        await ask_transfer_by_workflow(intake, created, f"{bad}/transmissions", asked)
        await intake.send_transfers(asked)
        assert await intake.decide_due(SVR_BORN + timedelta(seconds=5)) == 1
        monkeypatch.setattr(intake, "_deliver", crash)
        with pytest.raises(RuntimeError):
            await intake.transfer(created["tracking_code"], to_prefecture(good), now=later)
        monkeypatch.undo()
        assert await intake.send_transfers(later + timedelta(minutes=5)) == 1
        assert unaccepted(intake) == 1
        if second == 503:
            right.down = False
            assert await intake.send_transfers(later + timedelta(minutes=8)) == 1
        else:
            await intake.transfer(
                created["tracking_code"],
                TransferCreate(
                    administration_name="Préfecture de la Zone",
                    reason="Compétence de l'État.",
                    by_post=True,
                ),
                now=later + timedelta(minutes=8),
            )
    followed = await intake.get_request(created["tracking_code"])
    tries, refusals = (2, 1) if second == 503 else (1, 2)
    assert (followed.status.value, len(right.tried)) == ("implicitly_rejected", tries)
    assert [h.status for h in followed.history].count("transfer_refused") == refusals
    assert followed.receipts[-1].kind.value == "avis_transmission"


async def test_r13_an_ar_issued_after_the_svr_was_born_says_it_was(
    intake: IntakeService,
) -> None:
    """Rejected by silence on 15 July, its transfer refused, sent to Voisinville on
    17 July by an agent: Voisinville's AR says the rejection was born, not that it will be."""
    await add_neighbour(intake.db)
    created = await rejected_by_silence(intake)
    wrong = answering(404)
    asked = datetime(2026, 7, 15, 21, 30, tzinfo=UTC)
    async with serve(wrong.app()) as bad:
        await ask_transfer_by_workflow(intake, created, f"{bad}/transmissions", asked)
        await intake.send_transfers(asked)
    assert await intake.decide_due(SVR_BORN + timedelta(seconds=5)) == 1
    sent = datetime(2026, 7, 17, 9, 0, tzinfo=UTC)
    await intake.transfer(
        created["tracking_code"],
        TransferCreate(tenant="voisinville", reason="Subvention de Voisinville."),
        now=sent,
    )
    [event] = await outbox_events(intake.db, "intake.request.transferred.v1")
    async with intake.db.sessions() as session:
        there = await repository.get_request(session, uuid.UUID(event.data["new_request_id"]))
    qualified = await intake.qualify(there.tracking_code, "subvention", now=sent)
    ar = qualified.receipts[-1]
    assert ar.kind.value == "accuse_reception"
    assert ar.mentions[3] == (
        "En l'absence de réponse de l'administration dans un délai de 2 mois courant à "
        "compter du 15 mai 2026, cette demande a été réputée rejetée le 15 juillet 2026 à "
        "minuit (soit à compter du 16 juillet 2026 à 0 h). Délai compté depuis la "
        "réception de la demande par l'administration initialement saisie."
    )


async def test_r13_an_ar_says_the_svr_was_born_when_issued_after_its_date(
    intake: IntakeService,
) -> None:
    """Sent to Voisinville on 14 July, the day before its rejection, and qualified there on
    20 July: its AR states a rejection born, not one to come (R5, R13)."""
    await add_neighbour(intake.db)
    created = await rejected_by_silence(intake)
    await intake.transfer(
        created["tracking_code"],
        TransferCreate(tenant="voisinville", reason="Subvention de Voisinville."),
        now=datetime(2026, 7, 14, 9, 0, tzinfo=UTC),
    )
    [event] = await outbox_events(intake.db, "intake.request.transferred.v1")
    async with intake.db.sessions() as session:
        there = await repository.get_request(session, uuid.UUID(event.data["new_request_id"]))
    qualified = await intake.qualify(
        there.tracking_code, "subvention", now=datetime(2026, 7, 20, 9, 0, tzinfo=UTC)
    )
    assert (
        qualified.receipts[-1]
        .mentions[3]
        .startswith(
            "En l'absence de réponse de l'administration dans un délai de 2 mois courant à "
            "compter du 15 mai 2026, cette demande a été réputée rejetée le 15 juillet 2026"
        )
    )


async def test_r12_a_transfer_the_remote_refuses_for_good_does_not_block_the_request(
    intake: IntakeService,
) -> None:
    # A workflow's wrong address (404 there) is not retried for ever: the request stays
    # here, its clock running, operators are told, and an agent can send it to the right one.
    created = await submit(intake, AT)
    good = Receiver()
    refusals: list[str] = []

    async def not_found(request: Request) -> JSONResponse:
        refusals.append(request.url.path)
        return JSONResponse({"error": "inconnu"}, status_code=404)

    wrong = Receiver()
    wrong.handle = not_found  # type: ignore[method-assign]
    async with serve(wrong.app()) as wrong_base, serve(good.app()) as good_base:
        await ask_transfer_by_workflow(intake, created, f"{wrong_base}/transmissions")
        for day in range(3):
            await intake.send_transfers(ASKED + timedelta(days=day))
        assert len(refusals) == 1, "a final refusal is not tried again"
        assert unaccepted(intake) == 1, "operators see it until someone acts"
        held = await intake.get_request(created["tracking_code"])
        assert held.status.value == "received"
        assert held.implicit_decision is not None, "its clock still runs"
        assert "n'a pas abouti" in held.history[-1].label
        [told] = await outbox_events(intake.db, "intake.request.transfer_refused.v1")
        assert told.subject == created["id"], "routing gives the request back to its service"
        assert (told.data["destination"], told.data["refused_at"]) == (
            "Préfecture de la Zone",
            ASKED.isoformat().replace("+00:00", "Z"),
        )
        assert "HTTP 404" in told.data["detail"], "the agents read why"
        moved = await intake.transfer(
            created["tracking_code"], to_prefecture(good_base), now=ASKED + timedelta(days=3)
        )
        await intake.send_transfers(ASKED + timedelta(days=3))
    assert moved.status.value == "transferred"
    assert unaccepted(intake) == 0


async def test_r12_one_transfer_failing_otherwise_than_by_a_problem_starves_no_other(
    intake: IntakeService,
) -> None:
    # A host pydantic accepts and httpx cannot encode (IDNA 2008: 💩.la): UnicodeError.
    first = await submit(intake, AT)
    second = await submit(intake, AT + timedelta(minutes=1))
    # The sweep orders rows due at the same instant by request_id: make the bad one first.
    bad, good = sorted((first, second), key=lambda c: uuid.UUID(c["id"]))
    receiver = Receiver()
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, bad, "https://xn--ls8h.la/transmissions")
        await ask_transfer_by_workflow(intake, good, f"{base}/transmissions")
        errors = []
        for minute in range(0, 60, 5):  # the scheduler passes of an hour
            try:
                await intake.send_transfers(ASKED + timedelta(minutes=minute))
            except Exception as exc:  # what app.py's loop logs and swallows
                errors.append(type(exc).__name__)
    async with intake.db.sessions() as session:
        kept = await repository.outgoing_transfer(session, uuid.UUID(bad["id"]))
    assert (await intake.get_request(good["tracking_code"])).status.value == "transferred", (
        f"starved behind the bad one ({errors})"
    )
    assert kept.attempts > 0 and kept.last_error, "no backoff nor reason recorded"


async def test_r12_two_replicas_never_send_one_transfer_at_the_same_time(
    intake: IntakeService,
) -> None:
    # Replica A claims its batch at t0 with ONE lease (2 x timeout + 30 s = 50 s) for all
    # of it, then sends one after the other. Two slow remotes at 30 s each (connect, write
    # and read each within the 10 s timeout) and A starts the third at t0 + 60 s: replica
    # B, sweeping then, finds it due and sends it at the same time.
    other = IntakeService(intake.db, intake.settings, ServiceMetrics("replica-b"))
    created = [await submit(intake, AT + timedelta(minutes=i)) for i in range(3)]
    receiver = Receiver()
    replica_b: list[int] = []

    async def b_sweeps_at_t0_plus_60s() -> None:
        if len(receiver.tried) == 3:  # A's third attempt, in flight
            replica_b.append(await other.send_transfers(ASKED + timedelta(seconds=60)))

    async with serve(receiver.app()) as base:
        for c in created:
            await ask_transfer_by_workflow(intake, c, f"{base}/transmissions")
        receiver.during = b_sweeps_at_t0_plus_60s
        assert await intake.send_transfers(ASKED) == 3
    assert replica_b == [0], "B took over a transfer A had claimed and was sending"
    assert len(receiver.tried) == 3, f"{len(receiver.tried)} POSTs for 3 transfers"


async def test_r12_an_agents_failed_call_does_not_lose_what_the_sweep_sent(
    intake: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The agent's call outlives its lease (a slow remote); the sweep takes the transfer over
    # and the remote accepts it; the agent's own attempt then fails and deletes the row, so
    # the sweep, on its 2xx, finds nothing to record: accepted there, "received" here.
    created = await submit(intake, AT)
    sweep = IntakeService(intake.db, intake.settings, ServiceMetrics("replica-b"))
    receiver = Receiver()
    deleted = asyncio.Event()
    second_call = asyncio.Event()
    calls = 0
    swept: list[asyncio.Task[int]] = []

    async def handle(request: Request) -> JSONResponse:
        nonlocal calls
        calls += 1
        receiver.tried.append((await request.body(), request.headers.get("idempotency-key")))
        if calls == 1:  # the agent's call: slow, the sweep starts meanwhile, then fails
            swept.append(asyncio.create_task(sweep.send_transfers(ASKED + timedelta(minutes=2))))
            await second_call.wait()
            return JSONResponse({"error": "indisponible"}, status_code=503)
        second_call.set()
        with contextlib.suppress(TimeoutError):  # the sweep's call, accepted
            await asyncio.wait_for(deleted.wait(), 3)
        return JSONResponse({"status": "reçu"}, status_code=202)

    receiver.handle = handle  # type: ignore[method-assign]
    original_delete = repository.delete_outgoing_transfer

    async def delete_and_tell(session: Any, request_id: uuid.UUID) -> None:
        await original_delete(session, request_id)
        deleted.set()

    monkeypatch.setattr(repository, "delete_outgoing_transfer", delete_and_tell)
    async with serve(receiver.app()) as base:
        with contextlib.suppress(Problem):
            await intake.transfer(created["tracking_code"], to_prefecture(base), now=ASKED)
        await swept[0]
    assert calls == 2, "the remote accepted the second attempt"
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "transferred", "accepted there, not recorded here"


async def test_r12_the_longest_destination_url_accepted_is_stored(
    intake: IntakeService,
) -> None:
    # TransferCreate accepts an HttpUrl of up to 2083 characters: stored whole, no 500.
    created = await submit(intake, AT)
    receiver = Receiver()
    async with serve(receiver.app()) as base:
        url = f"{base}/transmissions?dossier=" + "a" * 2030
        body = TransferCreate(
            administration_name="Préfecture de la Zone",
            administration_url=url,
            reason="Compétence de l'État.",
        )
        moved = await intake.transfer(created["tracking_code"], body, now=ASKED)
    assert moved.status.value == "transferred"


def answering(status: int) -> Receiver:
    receiver = Receiver()

    async def handle(request: Request) -> JSONResponse:
        receiver.tried.append((await request.body(), request.headers.get("idempotency-key")))
        return JSONResponse({"error": "non"}, status_code=status)

    receiver.handle = handle  # type: ignore[method-assign]
    return receiver


async def test_r12_a_citizen_reads_no_http_code_nor_agent_instruction_in_history(
    intake: IntakeService,
) -> None:
    created = await submit(intake, AT)
    async with serve(answering(404).app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions")
        await intake.send_transfers(ASKED)
    followed = await intake.get_request(
        created["tracking_code"], ANONYMOUS, FollowProof(factor=CAMILLE["email"])
    )
    shown = [(e.status, e.label) for e in followed.history]
    print(shown[-1])
    assert not any("HTTP" in label or "Vérifiez l'adresse" in label for _, label in shown), shown


async def test_r12_an_unreachable_address_does_not_block_an_agents_transfer_elsewhere(
    intake: IntakeService,
) -> None:
    # A workflow's address whose host does not listen (retired server, wrong port, NXDOMAIN)
    # is given up after a day of attempts; then an agent may send the request elsewhere.
    created = await submit(intake, AT)
    dead = f"http://127.0.0.1:{free_port()}/transmissions"
    good = Receiver()
    async with serve(good.app()) as base:
        await ask_transfer_by_workflow(intake, created, dead)
        for hours in (0, 1, 3, 12, 48):
            await intake.send_transfers(ASKED + timedelta(hours=hours))
        assert unaccepted(intake) == 1
        try:
            moved = await intake.transfer(
                created["tracking_code"], to_prefecture(base), now=ASKED + timedelta(days=3)
            )
        except Problem as refused:
            pytest.fail(f"{refused.status} {refused.slug}: {refused.detail}")
    assert moved.status.value == "transferred"


async def test_r12_a_workflows_transfer_read_late_gets_a_day_of_attempts(
    intake: IntakeService,
) -> None:
    # Routing asked on a Tuesday; intake read the act three days later (its consumer was
    # down). The remote is down too: the first failure is retried, and the transfer is
    # given up a day after it, not at once for being asked more than a day before.
    created = await submit(intake, AT)
    receiver = Receiver(down=True)
    read = ASKED + timedelta(days=3)

    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions")
        assert await intake.send_transfers(read) == 1
        assert (await kept_transfer(intake, created)).refused_at is None, (
            "given up at its first failure"
        )
        assert await intake.send_transfers(read + timedelta(hours=23)) == 1
        assert (await kept_transfer(intake, created)).refused_at is None
        given_up = read + timedelta(days=1, hours=6)
        assert await intake.send_transfers(given_up) == 1
        assert (await kept_transfer(intake, created)).refused_at == given_up
    assert unaccepted(intake) == 1


async def test_r13_an_owed_ar_waits_while_a_transfer_holds_the_sva_then_states_it(
    intake: IntakeService,
) -> None:
    # Received 15 May 2026 (SVA, two months: 15 July), its AR owed since signing failed. On
    # 10 July the workflow transfers it, but the receiver is down. On 16 July, whether the
    # acceptance was born here depends on the transfer: the AR waits for its outcome. Given
    # up at its next attempt, a day after its first failure, the acceptance stands at
    # 15 July, as the AR then says.
    created = await submit(intake, AT)
    code = created["tracking_code"]
    await as_left_by_a_signing_failure(intake.db, code, date(2026, 5, 22), None)
    receiver = Receiver(down=True)
    asked = datetime(2026, 7, 10, 9, 0, tzinfo=UTC)
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions", asked)
        assert await intake.send_transfers(asked) == 1
        held = datetime(2026, 7, 16, 8, 0, tzinfo=UTC)
        assert await intake.issue_owed_receipts(now=held) == 0
        assert (await intake.get_request(code)).acknowledgement is None
        assert await intake.send_transfers(held) == 1  # a day after the first failure
        assert (await kept_transfer(intake, created)).refused_at == held
    assert await intake.issue_owed_receipts(now=held) == 1
    mentions = (await intake.get_request(code)).acknowledgement.mentions
    assert (
        "a été réputée acceptée le 15 juillet 2026 à minuit (soit à compter du 16 juillet "
        "2026 à 0 h), si votre dossier était complet à cette date." in mentions[3]
    )


async def test_r12_a_transfer_failing_since_before_the_upgrade_keeps_its_day(
    intake: IntakeService,
) -> None:
    # Stored by the previous version, which counted the day from the act: the upgrade adds
    # `first_failed_at` empty, and the act's time still counts, not a new day.
    created = await submit(intake, AT)
    receiver = Receiver(down=True)
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions")
        assert await intake.send_transfers(ASKED) == 1
        async with intake.db.transaction() as session:
            await repository.update_outgoing_transfer(
                session, uuid.UUID(created["id"]), {"first_failed_at": None}
            )
        assert await intake.send_transfers(ASKED + timedelta(days=1, hours=1)) == 1
    kept = await kept_transfer(intake, created)
    assert kept.refused_at == ASKED + timedelta(days=1, hours=1)


async def test_r12_an_invalid_address_is_refused_for_good_not_retried_for_ever(
    intake: IntakeService,
) -> None:
    created = await submit(intake, AT)
    await ask_transfer_by_workflow(intake, created, "https://xn--ls8h.la/transmissions")
    for days in range(0, 10):
        await intake.send_transfers(ASKED + timedelta(days=days))
    kept = await kept_transfer(intake, created)
    assert kept.refused_at is not None, f"{kept.attempts} attempts: {kept.last_error}"
    assert kept.token == "", "a transfer given up keeps no copy of the applicant's file"


async def test_r12_an_agents_failed_attempt_does_not_erase_a_refusal_operators_must_see(
    intake: IntakeService,
) -> None:
    # README: operators are alerted "until an agent sends it elsewhere or it is closed".
    created = await submit(intake, AT)
    down = Receiver(down=True)
    async with serve(answering(404).app()) as wrong, serve(down.app()) as unavailable:
        await ask_transfer_by_workflow(intake, created, f"{wrong}/transmissions")
        await intake.send_transfers(ASKED)
        assert unaccepted(intake) == 1
        with pytest.raises(Problem) as failed:
            await intake.transfer(
                created["tracking_code"], to_prefecture(unavailable), now=ASKED + timedelta(days=1)
            )
        assert failed.value.status == 502
        await intake.send_transfers(ASKED + timedelta(days=1, minutes=5))
    assert (await intake.get_request(created["tracking_code"])).status.value == "received"
    assert unaccepted(intake) == 1, "not sent elsewhere, not closed: the alert went silent"


@pytest.mark.parametrize("status", [404, 503])
async def test_r12_the_log_lines_the_alert_points_to_are_written(
    intake: IntakeService, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    # GuichetTransferNotAccepted: « Voir les journaux d'intake (« transfer of ... failed »)
    # pour l'adresse et l'erreur. »
    created = await submit(intake, AT)
    caplog.set_level(logging.INFO)
    async with serve(answering(status).app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions")
        await intake.send_transfers(ASKED)
    assert unaccepted(intake) == 1
    lines = [r.getMessage() for r in caplog.records if "transfer of" in r.getMessage()]
    assert lines, "no log line for the operator to find"


async def test_r12_a_new_hand_over_is_not_sent_under_the_key_of_a_refused_one(
    intake: IntakeService,
) -> None:
    # The receiver refused the workflow's transfer (422, its reason too vague); the agent
    # sends it again there with the reason it asks for: other bytes, so another key (a
    # receiver following draft-ietf-httpapi-idempotency-key-header refuses a key reused
    # with another payload).
    created = await submit(intake, AT)
    receiver = answering(422)
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions")
        await intake.send_transfers(ASKED)
        body = to_prefecture(base).model_copy(update={"reason": "Permis de chasse : État."})
        with pytest.raises(Problem):
            await intake.transfer(created["tracking_code"], body, now=ASKED + timedelta(days=1))
    (first, first_key), (second, second_key) = receiver.tried
    assert first != second
    assert first_key != second_key, f"{first_key} for two different hand-overs"


async def test_r12_a_request_sent_by_post_as_the_refusal_advises_can_leave_the_queue(
    intake: IntakeService,
) -> None:
    # An e-mail, no procedure (no clock, no implicit decision). Routing's "transmettre"
    # transition (final, action transfer) to a wrong address: refused for good (404).
    created = await submit(intake, AT, procedure=None, channel="email")
    async with serve(answering(404).app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions")
        await close_by_workflow(
            intake,
            created,
            ASKED,
            status="transmise",
            label="Transmise à la préfecture",
            transition="transmettre",
            actions=["transfer"],
        )
        await intake.send_transfers(ASKED)
    # The refusal (last_error, the API's 502) tells the agent: "transmettez-la par courrier".
    await intake.decide_due(ASKED + timedelta(days=400))
    await intake.send_transfers(ASKED + timedelta(days=400))
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "received" and unaccepted(intake) == 1
    # The agent sends it by post, as told: recorded here, the applicant told (R12).
    by_post = TransferCreate(
        administration_name="Préfecture de la Zone", by_post=True, reason="Compétence de l'État."
    )
    moved = await intake.transfer(
        created["tracking_code"], by_post, now=ASKED + timedelta(days=401)
    )
    assert moved.status.value == "transferred"
    notice = " ".join(moved.receipts[-1].mentions)
    # When the letter reaches the prefecture is not known here: no date is given for it.
    assert "compter de sa réception par Préfecture de la Zone." in notice
    await intake.send_transfers(ASKED + timedelta(days=401))
    assert unaccepted(intake) == 0


async def test_r12_a_receivers_passing_401_does_not_end_a_transfer_for_good(
    intake: IntakeService,
) -> None:
    # The receiver has not fetched the key Guichet rotated to yet (or its gateway's token
    # expired): 401 once, then it accepts. Not a final refusal: tried again.
    created = await submit(intake, AT)
    receiver = Receiver()
    first = {"done": False}

    async def handle(request: Request) -> JSONResponse:
        receiver.tried.append((await request.body(), request.headers.get("idempotency-key")))
        if not first["done"]:
            first["done"] = True
            return JSONResponse({"error": "clé inconnue"}, status_code=401)
        return JSONResponse({"status": "reçu"}, status_code=202)

    receiver.handle = handle  # type: ignore[method-assign]
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions")
        for hours in (0, 1, 7, 24):
            await intake.send_transfers(ASKED + timedelta(hours=hours))
    assert len(receiver.tried) > 1, "one passing 401 and never tried again"


@pytest.mark.parametrize("case", ["unlisted host", "too large to sign"])
async def test_r12_a_workflow_transfer_refused_here_is_not_silently_dropped(
    intake: IntakeService, case: str
) -> None:
    # Refused before any send (host not in transfer_allowed_hosts; payload too large to
    # sign). Routing's "transmise" is final, intake keeps the request open: it is kept as
    # refused, so operators are alerted and the request's history says so.
    if case == "unlisted host":
        created = await submit(intake, AT)
        intake.settings.env = "production"
        intake.settings.transfer_allowed_hosts = ["transmissions.prefecture.example"]
        url = "https://ailleurs.example/transmissions"
    else:
        created = await submit(intake, AT, payload={"plan": "x" * 800_000})
        url = "https://transmissions.prefecture.example/transmissions"
    await ask_transfer_by_workflow(intake, created, url)
    await intake.send_transfers(ASKED + timedelta(hours=2))
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "received"
    seen = unaccepted(intake) > 0 or any("transfer" in e.status for e in followed.history)
    assert seen, "the workflow's transfer vanished: no alert, no trace on the request"
    [told] = await outbox_events(intake.db, "intake.request.transfer_refused.v1")
    assert told.data["request_id"] == created["id"], "routing must take the request back"


async def test_r12_each_attempt_is_dated_when_it_is_sent(intake: IntakeService) -> None:
    # Each attempt of a batch is dated when it is sent (`Date`, and the R13 date recorded
    # on acceptance), not when the sweep started.
    import asyncio
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    asked = datetime.now(UTC) - timedelta(minutes=1)
    # Received just now: the transfers are asked before silence could decide (R10).
    created = [await submit(intake, asked - timedelta(minutes=2 - i)) for i in range(2)]
    dated: list[tuple[datetime, datetime]] = []
    receiver = Receiver()

    async def handle(request: Request) -> JSONResponse:
        arrived = datetime.now(UTC)
        dated.append((parsedate_to_datetime(request.headers["date"]), arrived))
        await asyncio.sleep(2.5)  # a slow receiver, well within the 10 s timeout
        return JSONResponse({"status": "reçu"}, status_code=202)

    receiver.handle = handle  # type: ignore[method-assign]
    async with serve(receiver.app()) as base:
        for c in created:
            await ask_transfer_by_workflow(intake, c, f"{base}/transmissions", asked)
        assert await intake.send_transfers() == 2
    lags = [(arrived - date).total_seconds() for date, arrived in dated]
    assert max(lags) < 2, f"Date header behind the attempt by {lags} s"


def test_r12_a_transfer_by_post_names_its_administration_and_no_address() -> None:
    def problem(**fields: Any) -> str:
        with pytest.raises(ValidationError) as refused:
            TransferCreate.model_validate({"reason": "Compétence de l'État.", **fields})
        return str(refused.value)

    name = {"administration_name": "Préfecture de la Zone"}
    assert "pas les deux" in problem(**name, by_post=True, administration_url="https://p.fr/in")
    assert "pas les deux" in problem(**name)  # neither an address nor the post
    assert "a un nom" in problem(by_post=True, administration_url="https://p.fr/in")
    assert "pas par courrier" in problem(tenant="voisinville", by_post=True)
    posted = TransferCreate(**name, by_post=True, reason="Compétence de l'État.")
    assert posted.administration_url is None


async def test_r9_a_request_transferred_in_is_not_counted_as_its_sender_s_own(
    intake: IntakeService,
) -> None:
    # 09:00 the citizen writes to Voisinville; 09:01 the same text to Admiville, which
    # transfers it to Voisinville at 09:02 (R12); 09:05 the citizen resends once to
    # Voisinville. Two sends of theirs there, not three: a retry, not an abuse (R9).
    await add_neighbour(intake.db)
    first = datetime(2026, 5, 15, 9, 0, tzinfo=UTC)
    same = {"procedure": None, "channel": "email", "payload": {"objet": "Salle le 14 juin"}}
    await submit(intake, first, tenant="voisinville", **same)
    wrong = await submit(intake, first + timedelta(minutes=1), **same)
    await intake.transfer(
        wrong["tracking_code"],
        TransferCreate(tenant="voisinville", reason="Salle de Voisinville."),
        now=first + timedelta(minutes=2),
    )
    resent = await submit(intake, first + timedelta(minutes=5), tenant="voisinville", **same)
    assert [r["kind"] for r in resent["receipts"]] == ["accuse_enregistrement"]
    third = await submit(intake, first + timedelta(minutes=6), tenant="voisinville", **same)
    assert third["receipts"] == [], "their third send is flagged"


async def test_r12_a_transfer_accepted_while_a_second_is_refused_is_still_recorded(
    intake: IntakeService,
) -> None:
    # While the prefecture receives the first transfer, the request is answered and the
    # workflow asks a second one, refused (closed): the first, in flight, is not dropped,
    # and its acceptance after the closing is written down.
    await add_neighbour(intake.db)
    created = await submit(intake, AT)
    receiver = Receiver()
    ten = datetime(2026, 5, 20, 10, 0, tzinfo=UTC)

    async def meanwhile() -> None:
        await close_by_workflow(intake, created, ten.replace(minute=1))
        await transfer_by_workflow(intake, created, ten.replace(minute=2))

    receiver.during = meanwhile
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions", ten)
        assert await intake.send_transfers(ten) == 1
    assert len(receiver.tried) == 1
    followed = await intake.get_request(created["tracking_code"])
    # Each line after what it follows, though the acceptance was answered at 10:00.
    assert [h.status for h in followed.history][-3:] == [
        "repondue",
        "transfer_cancelled",
        "transfer_after_close",
    ]


async def test_r12_a_transfer_sent_before_the_deadline_is_not_undone_by_a_later_refusal(
    intake: IntakeService,
) -> None:
    # Sent at 23:59 Paris on the last day; while the prefecture receives it, a second
    # transfer asked after midnight is refused: the first, accepted in time, is recorded.
    await add_neighbour(intake.db)
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    receiver = Receiver()
    sent = datetime(2026, 7, 15, 21, 59, tzinfo=UTC)

    async def meanwhile() -> None:
        await transfer_by_workflow(intake, created, datetime(2026, 7, 15, 22, 0, 30, tzinfo=UTC))

    receiver.during = meanwhile
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions", sent)
        assert await intake.send_transfers(sent) == 1
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "transferred"
    assert await outbox_events(intake.db, "intake.request.implicit_decision.v1") == []
    assert not [h for h in followed.history if "vaut acceptation" in h.label]


# -- receiving a transfer another guichet signed ------------------------------------------------


@contextlib.asynccontextmanager
async def published_keys(intake: IntakeService) -> Any:
    """Admiville's keys at an address, as its own guichet publishes them; `intake` then
    receives the transfers Admiville signs (its settings list that address). Yields the
    list of the times they were fetched."""
    fetched: list[float] = []

    async def jwks(request: Request) -> JSONResponse:
        fetched.append(time.monotonic())
        await asyncio.sleep(0.05)  # long enough for transfers arriving together to meet
        return JSONResponse(await intake.jwks())

    async def huge(request: Request) -> Response:
        keys = json.dumps((await intake.jwks())["keys"]).encode()
        padded = b'{"keys": ' + keys + b" " * 1_100_000 + b"}"
        return Response(padded, media_type="application/json")

    routes = [Route("/jwks.json", jwks), Route("/huge.json", huge)]
    async with serve(Starlette(routes=routes)) as base:
        intake.settings.transfer_senders = {"Commune d'Admiville": f"{base}/jwks.json"}
        yield fetched


async def handed_over(
    intake: IntakeService, sent: datetime = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
) -> tuple[dict[str, Any], str]:
    """Received by Admiville on 15 May 2026, signed over to Voisinville at `sent`: the
    request first received, and its hand-over."""
    await add_neighbour(intake.db)
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    return created, await hand_over(intake, created, sent)


async def claims_of(intake: IntakeService, token: str) -> dict[str, Any]:
    """What a hand-over of Admiville's says."""
    claims = verify(token, (await intake.jwks())["keys"])
    assert claims is not None
    return claims[1]


async def resigned(intake: IntakeService, token: str, **changes: Any) -> str:
    """Admiville's hand-over `token` with `changes`, signed by its active key."""
    async with intake.db.sessions() as session:
        key = await intake.keyring.active(session, "admiville", datetime.now(UTC))
    return sign({**await claims_of(intake, token), **changes}, key)


async def hand_over(intake: IntakeService, created: dict[str, Any], when: datetime) -> str:
    """Admiville's signed hand-over of `created` to Voisinville (`hand_over_all`)."""
    [token] = await hand_over_all(intake, [created], when)
    return token


async def hand_over_all(
    intake: IntakeService, requests: list[dict[str, Any]], when: datetime
) -> list[str]:
    """Admiville's signed hand-overs of `requests` to Voisinville, as received at its
    address; `intake`'s public address is then that one: it receives them as Voisinville's
    guichet."""
    receiver = Receiver()
    path = "/intake/v1/transfers/voisinville"
    async with serve(Starlette(routes=[Route(path, receiver.handle, methods=["POST"])])) as base:
        intake.settings.public_url = f"{base}/intake"
        for created in requests:
            await intake.transfer(
                created["tracking_code"],
                TransferCreate(
                    administration_name="Commune de Voisinville",
                    administration_url=f"{base}{path}",
                    reason="La salle demandée appartient à Voisinville.",
                ),
                now=when,
            )
    return [token.decode() for token, _ in receiver.tried]


async def received_here(intake: IntakeService, answer: Any) -> Any:
    async with intake.db.sessions() as session:
        code = json.loads(answer.body)["tracking_code"]
        return await repository.get_request_by_code(session, code)


async def sent_on(
    intake: IntakeService, sent: datetime, received: datetime
) -> tuple[dict[str, Any], Any]:
    """Received by Admiville on 15 May, signed and sent on at `sent`, received by
    Voisinville's guichet at `received`: the request first received, and the answer."""
    created, token = await handed_over(intake, sent)
    async with published_keys(intake):
        answer = await intake.receive_transfer("voisinville", token, now=received)
    return created, answer


async def filed_in_voisinville(intake: IntakeService) -> int:
    async with intake.db.sessions() as session:
        count = await session.scalar(
            sa.select(sa.func.count())
            .select_from(requests)
            .where(requests.c.tenant == "voisinville")
        )
    return int(count or 0)


async def test_r13_a_transfer_signed_elsewhere_keeps_both_clocks(intake: IntakeService) -> None:
    """Sent on to Voisinville's guichet, which receives it on 2 June: the SVR runs from 15
    May (deemed rejected at the end of 15 July), the AR is owed by 9 June (R4)."""
    # 22:30 UTC on 1 June is already 2 June in Paris: that is the date of reception.
    created, answer = await sent_on(
        intake,
        datetime(2026, 6, 1, 16, 0, tzinfo=UTC),
        datetime(2026, 6, 1, 22, 30, tzinfo=UTC),
    )
    assert answer.status_code == 201
    assert json.loads(answer.body)["reception_date"] == "2026-06-02"
    assert json.loads(answer.body)["first_received_on"] == "2026-05-15"
    row = await received_here(intake, answer)
    assert row.tenant == "voisinville"
    assert row.first_received_on == date(2026, 5, 15)
    assert row.reception_date == date(2026, 6, 2)
    assert row.receipt_due_on == date(2026, 6, 9)
    assert row.applicant["email"] == CAMILLE["email"]
    assert row.contact_preference == "email"
    # Named as this guichet lists its sender, never as the token says.
    assert row.source == f"transfer:Commune d'Admiville:{created['tracking_code']}"
    history = await intake.get_request(row.tracking_code)
    assert history.history[0].label == (
        f"Reçue par transmission de la demande {created['tracking_code']} par Commune d'Admiville"
    )
    at = datetime(2026, 6, 3, 9, 0, tzinfo=UTC)
    svr = await intake.qualify(row.tracking_code, "subvention", now=at)
    assert svr.implicit_decision is not None
    assert str(svr.implicit_decision.decision_date) == "2026-07-15"


async def test_r13_the_sva_of_a_transfer_signed_elsewhere_runs_from_its_reception_here(
    intake: IntakeService,
) -> None:
    """Received by Voisinville's guichet on 2 June: deemed accepted at the end of 2 August."""
    _, answer = await sent_on(
        intake, datetime(2026, 6, 2, 9, 0, tzinfo=UTC), datetime(2026, 6, 2, 9, 5, tzinfo=UTC)
    )
    row = await received_here(intake, answer)
    sva = await intake.qualify(row.tracking_code, "salle", now=datetime(2026, 6, 3, tzinfo=UTC))
    assert sva.implicit_decision is not None
    assert str(sva.implicit_decision.decision_date) == "2026-08-02"
    # The receipt says which date the clock runs from.
    assert "reçue le 2 juin 2026" in " ".join(sva.receipts[-1].mentions)


async def test_r12_a_hand_over_sent_again_is_filed_once(intake: IntakeService) -> None:
    _, token = await handed_over(intake)
    when = datetime(2026, 6, 2, 9, 5, tzinfo=UTC)
    async with published_keys(intake):
        # A retry after a lost answer may even overtake the first send.
        first, again = await asyncio.gather(
            intake.receive_transfer("voisinville", token, now=when),
            intake.receive_transfer("voisinville", token, now=when),
        )
        assert first.status_code == again.status_code == 201
        assert first.body == again.body
        # Answered as filed even if this guichet's address has changed since.
        intake.settings.public_url = "https://guichet.voisinville.example/intake"
        assert (await intake.receive_transfer("voisinville", token, now=when)).body == first.body
        # Signed again (another reason, say): the same hand-over, the same file.
        async with intake.db.sessions() as session:
            key = await intake.keyring.active(session, "admiville", when)
        claims = verify(token, (await intake.jwks())["keys"])
        assert claims is not None
        resigned = sign({**claims[1], "reason": "Compétence de Voisinville."}, key)
        later = await intake.receive_transfer("voisinville", resigned, now=when)
        assert later.body == first.body
    assert await filed_in_voisinville(intake) == 1


async def test_r12_a_newer_senders_unknown_fields_are_left_out_and_named(
    intake: IntakeService,
) -> None:
    """A later version of Guichet sends fields this one does not know: the request is
    received all the same (refused, it would reach no competent administration), what it
    cannot read is left out and named in the history; a wrong field is still refused."""
    _, token = await handed_over(intake)
    when = datetime(2026, 6, 2, 9, 5, tzinfo=UTC)
    first = await claims_of(intake, token)
    newer = {**first["applicant"], "preferred_name": "Cam", "birth_place": "Nantes"}
    place = {"latitude": 47.2184, "longitude": -1.5536, "address": "Place de la Mairie"}
    placed = {**place, "insee_code": "44109"}
    async with published_keys(intake):
        # Not what a newer version adds: a name no field has, refused as before.
        for odd in ("nick\x00name", "Nom affiché", "x" * 41):
            with pytest.raises(Problem) as refused:
                await intake.receive_transfer(
                    "voisinville",
                    await resigned(intake, token, applicant={**first["applicant"], odd: "Cam"}),
                    now=when,
                )
            assert refused.value.status == 422, odd
        unreachable = {**newer, "email": None}
        with pytest.raises(Problem) as wrong:
            await intake.receive_transfer(
                "voisinville",
                await resigned(intake, token, channel="email", applicant=unreachable),
                now=when,
            )
        assert [p.name for p in wrong.value.invalid_params] == ["applicant.email"]
        answer = await intake.receive_transfer(
            "voisinville",
            await resigned(intake, token, applicant=newer, location=placed),
            now=when,
        )
    assert answer.status_code == 201
    row = await received_here(intake, answer)
    assert row.applicant == first["applicant"]
    assert row.location == place
    followed = await intake.get_request(row.tracking_code)
    assert [h.label for h in followed.history if h.status == "fields_left_out"] == [
        "Transmise avec des informations que ce guichet ne sait pas lire, non reprises : "
        "applicant.birth_place, applicant.preferred_name, location.insee_code. "
        "L'administration qui l'a transmise les conserve."
    ]


async def test_r12_only_a_transfer_signed_by_a_listed_administration_for_here_is_received(
    intake: IntakeService,
) -> None:
    created, token = await handed_over(intake)
    when = datetime(2026, 6, 2, 9, 5, tzinfo=UTC)
    with pytest.raises(Problem) as unlisted:
        await intake.receive_transfer("voisinville", token, now=when)
    assert unlisted.value.status == 403
    assert unlisted.value.slug == "transfer-not-authentic"
    head, payload, signature = token.split(".")
    altered = "AAAA" if payload[-4:] != "AAAA" else "BBBB"
    forged = ".".join((head, payload[:-4] + altered, signature))
    async with published_keys(intake):
        with pytest.raises(Problem) as tampered:
            await intake.receive_transfer("voisinville", forged, now=when)
        assert tampered.value.status == 403
        # Signed for Voisinville's address: replayed to another collectivité, refused.
        with pytest.raises(Problem) as elsewhere:
            await intake.receive_transfer("admiville", token, now=when)
        assert elsewhere.value.status == 422
        assert [p.name for p in elsewhere.value.invalid_params] == ["to"]
        # A receipt is signed by the same key, but is no transfer.
        receipt = created["acknowledgement"]["token"]
        with pytest.raises(Problem) as not_a_transfer:
            await intake.receive_transfer("voisinville", receipt, now=when)
        assert not_a_transfer.value.status == 422
        assert "type" in [p.name for p in not_a_transfer.value.invalid_params]
        # Admiville's key does not vouch for a transfer in Voisinville's name.
        posing = await resigned(intake, token, tenant="voisinville")
        with pytest.raises(Problem) as posed:
            await intake.receive_transfer("voisinville", posing, now=when)
        assert posed.value.status == 403
        # Its content is checked as a submission's, in French, each field named.
        unreachable = {**(await claims_of(intake, token))["applicant"], "email": None}
        by_email = await resigned(intake, token, channel="email", applicant=unreachable)
        with pytest.raises(Problem) as unchecked:
            await intake.receive_transfer("voisinville", by_email, now=when)
        assert unchecked.value.status == 422
        assert {p.name: p.reason for p in unchecked.value.invalid_params} == {
            "applicant.email": "Une demande reçue par courrier électronique porte l'adresse "
            "d'où elle a été envoyée : c'est là que l'accusé de réception est adressé.",
        }
        deep: Any = "fond"
        for _ in range(70):
            deep = [deep]
        with pytest.raises(Problem) as too_deep:
            await intake.receive_transfer(
                "voisinville", await resigned(intake, token, payload={"d": deep}), now=when
            )
        assert too_deep.value.status == 422
        with pytest.raises(Problem) as unknown:
            await intake.receive_transfer("nulleville", token, now=when)
        assert unknown.value.status == 404
        with pytest.raises(Problem) as early:
            # Received here on 13 May, two days before its first reception: no time zone's
            # spread, not a date to accept.
            await intake.receive_transfer(
                "voisinville", token, now=datetime(2026, 5, 13, 9, 0, tzinfo=UTC)
            )
        assert early.value.status == 422
        assert [p.name for p in early.value.invalid_params] == ["first_received_on"]
    assert await filed_in_voisinville(intake) == 0


async def test_r12_a_sender_s_keys_are_fetched_once_for_transfers_arriving_together(
    intake: IntakeService,
) -> None:
    await add_neighbour(intake.db)
    first = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    second = await submit(intake, datetime(2026, 5, 16, 9, 0, tzinfo=UTC), payload={"n": 2})
    when = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    tokens = await hand_over_all(intake, [first, second], when)
    # Its address as written by hand: the same address all the same.
    intake.settings.public_url = intake.settings.public_url.replace("http://", "HTTP://") + "/"
    async with published_keys(intake) as fetched:
        answers = await asyncio.gather(
            *(intake.receive_transfer("voisinville", t, now=when) for t in tokens)
        )
        assert [a.status_code for a in answers] == [201, 201]
        assert len(fetched) == 1
        # An answer past a megabyte is no key set: nothing verifies against it.
        [base] = intake.settings.transfer_senders.values()
        intake.settings.transfer_senders = {"Ailleurs": str(base).replace("jwks", "huge")}
        with pytest.raises(Problem) as unread:
            await intake.receive_transfer("voisinville", tokens[0], now=when)
        assert unread.value.status == 403


def test_r13_the_receivers_own_date_is_taken_only_when_it_can_be() -> None:
    first, today = date(2026, 5, 15), date(2026, 6, 2)

    def said(body: Any) -> tuple[date, str | None]:
        return _filed_as(httpx.Response(201, json=body), first, today)

    code = "7KQ2-9XWM-PT4R-H3VD"
    assert said({"tracking_code": code, "reception_date": "2026-06-01"}) == (date(2026, 6, 1), code)
    assert said({"tracking_code": code, "reception_date": "2026-06-03"}) == (date(2026, 6, 3), code)
    assert said({"tracking_code": code, "reception_date": "2026-06-04"}) == (today, code)
    assert said({"tracking_code": code, "reception_date": "2026-05-14"}) == (today, code)
    assert said({"tracking_code": code}) == (today, code)
    assert said({"tracking_code": code + "\n"}) == (today, None)
    assert said(["reçu"]) == (today, None)
    assert _filed_as(httpx.Response(202, text="reçu"), first, today) == (today, None)


async def test_r12_a_sender_s_new_key_is_fetched_when_its_transfer_arrives(
    intake: IntakeService,
) -> None:
    """Admiville rotates its key after Voisinville's guichet fetched the old one: the first
    transfer signed with the new key sends for the keys again (at most once a minute)."""
    await add_neighbour(intake.db)
    first = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    second = await submit(intake, datetime(2026, 5, 16, 9, 0, tzinfo=UTC), payload={"n": 2})
    when = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    token = await hand_over(intake, first, when)
    async with published_keys(intake):
        assert (await intake.receive_transfer("voisinville", token, now=when)).status_code == 201
        await intake.rotate_key("admiville", now=when)
        rotated = await hand_over(intake, second, when)
        with pytest.raises(Problem) as too_soon:
            await intake.receive_transfer("voisinville", rotated, now=when)
        assert too_soon.value.status == 403  # the sender retries: 403 is not final
        intake.senders.retry = 0.0  # a minute later
        assert (await intake.receive_transfer("voisinville", rotated, now=when)).status_code == 201
    assert await filed_in_voisinville(intake) == 2


async def test_r12_one_guichet_sends_a_request_on_to_another_over_http(data_dir: Path) -> None:
    """Two guichets, each its own database: the first signs and sends, the second fetches
    the first's published keys, receives the request, and the first records it as sent."""
    (data_dir / "first").mkdir()
    (data_dir / "second").mkdir()
    first = create_app(IntakeSettings(data_dir=data_dir / "first"))
    async with serve(first) as sender:
        keys = f"{sender}/.well-known/jwks.json"
        port = free_port()
        second = create_app(
            IntakeSettings(
                data_dir=data_dir / "second",
                transfer_senders={"Commune d'Admiville": keys},
                public_url=f"http://127.0.0.1:{port}",
            )
        )
        async with serve(second, port) as receiver, httpx.AsyncClient(base_url=receiver) as http:
            created = await submit(first.state.intake, datetime.now(UTC))
            moved = await first.state.intake.transfer(
                created["tracking_code"],
                TransferCreate(
                    administration_name="Commune d'Admiville (guichet régional)",
                    administration_url=f"{receiver}/v1/transfers/admiville",
                    reason="Demande à traiter par le guichet régional.",
                ),
            )
            assert moved.status.value == "transferred"
            # Not a signed token: refused before anything is read, in French.
            as_json = await http.post("/v1/transfers/admiville", json={"token": "x"})
            assert as_json.status_code == 415
            assert as_json.headers["content-type"] == "application/problem+json"
            assert "application/jose" in as_json.json()["detail"]
            unsigned = await http.post(
                "/v1/transfers/admiville",
                content="é".encode(),
                headers={"Content-Type": "application/jose"},
            )
            assert unsigned.status_code == 403
            assert unsigned.json()["title"] == "Transmission non reconnue"
            async with second.state.intake.db.sessions() as session:
                [row] = (
                    await session.execute(
                        sa.select(requests).where(requests.c.source.like("transfer:%"))
                    )
                ).all()
    assert row.first_received_on == date.fromisoformat(created["reception_date"])
    assert row.reception_date == datetime.now(ZoneInfo("Europe/Paris")).date()
    # The applicant's notice gives the number to follow it under there.
    notice = moved.receipts[-1]
    assert notice.kind.value == "avis_transmission"
    assert notice.mentions[-1] == f"Elle y est enregistrée sous le n° {row.tracking_code}."
    assert row.source == f"transfer:Commune d'Admiville:{created['tracking_code']}"


async def test_r13_the_notice_dates_the_competent_reception_as_the_receiver_answers(
    intake: IntakeService,
) -> None:
    """Sent again on 2 June after an answer lost on 1 June: the receiving guichet answers
    with what it filed on 1 June (its date, in its own time zone, and its number); the
    notice states that date, not the day of the retry."""
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))

    async def martinique(request: Request) -> JSONResponse:
        filed = {
            "tracking_code": "7KQ2-9XWM-PT4R-H3VD",
            "reception_date": "2026-06-01",
            "first_received_on": "2026-05-15",
        }
        return JSONResponse(filed, status_code=201)

    app = Starlette(routes=[Route("/transmissions", martinique, methods=["POST"])])
    async with serve(app) as base:
        moved = await intake.transfer(
            created["tracking_code"],
            TransferCreate(
                administration_name="Commune du Marin",
                administration_url=f"{base}/transmissions",
                reason="Compétence de la commune du Marin.",
            ),
            now=datetime(2026, 6, 2, 19, 0, tzinfo=UTC),
        )
    notice = moved.receipts[-1].mentions
    assert (
        "ne court qu'à compter de sa réception par Commune du Marin, le 1er juin 2026"
        in (notice[1])
    )
    assert notice[-1] == "Elle y est enregistrée sous le n° 7KQ2-9XWM-PT4R-H3VD."


async def test_r12_r13_a_transfer_to_a_time_zone_behind_is_received_on_its_own_day(
    intake: IntakeService,
) -> None:
    """A request reaches Admiville at 01:30 Paris on 2 June 2026 (23:30 UTC on 1 June) and
    is sent on at once to a guichet in Martinique, which receives it at 19:45 its time on 1
    June: the same evening there. SVR runs from Admiville's 2 June, SVA from Martinique's 1
    June (R13); the hand-over is received, not refused for a date "to come"."""
    await add_tenant(
        intake.db,
        "voisinville",
        "Commune de Voisinville",
        "America/Martinique",
        procedures={"salle": {"regime": "sva"}},
    )
    created = await submit(intake, datetime(2026, 6, 1, 23, 30, tzinfo=UTC))
    assert created["reception_date"] == "2026-06-02"
    token = await hand_over(intake, created, datetime(2026, 6, 1, 23, 40, tzinfo=UTC))
    async with published_keys(intake):
        answer = await intake.receive_transfer(
            "voisinville", token, now=datetime(2026, 6, 1, 23, 45, tzinfo=UTC)
        )
    assert answer.status_code == 201
    row = await received_here(intake, answer)
    assert (row.first_received_on, row.reception_date) == (date(2026, 6, 2), date(2026, 6, 1))
    # Entered by an agent: a first reception tomorrow is a time zone's; two days later is
    # no time zone's, refused by name.
    entered = await submit(
        intake,
        datetime(2026, 6, 1, 23, 45, tzinfo=UTC),
        tenant="voisinville",
        procedure="salle",
        channel="mail",
        first_received_on=date(2026, 6, 2),
    )
    assert entered["reception_date"] == "2026-06-01"
    assert entered["implicit_decision"]["decision_date"] == "2026-08-01"  # SVA: from here
    with pytest.raises(Problem) as refused:
        await submit(
            intake,
            datetime(2026, 6, 1, 23, 45, tzinfo=UTC),
            tenant="voisinville",
            procedure="salle",
            channel="mail",
            first_received_on=date(2026, 6, 3),
        )
    assert [p.name for p in refused.value.invalid_params] == ["first_received_on"]


async def test_r12_a_hand_over_signed_by_a_retired_key_is_refused(intake: IntakeService) -> None:
    # Admiville retires the key that signed a hand-over (it leaked, say): its JWK Set says
    # so, and Voisinville's guichet no longer takes its word for a new hand-over, whose
    # first reception date, among others, would move an SVR (R13). Its receipts still verify.
    created, token = await handed_over(intake)
    retired = signed_by(token)
    await intake.rotate_key("admiville", now=datetime(2026, 6, 2, 9, 1, tzinfo=UTC))
    [jwk] = [k for k in (await intake.jwks())["keys"] if k["kid"] == retired]
    assert jwk["retired_at"] == "2026-06-02T09:01:00Z"
    assert (await intake.verify(created["acknowledgement"]["token"])).authentic
    async with published_keys(intake):
        with pytest.raises(Problem) as refused:
            await intake.receive_transfer(
                "voisinville", token, now=datetime(2026, 6, 2, 9, 5, tzinfo=UTC)
            )
    assert (refused.value.status, refused.value.slug) == (403, "transfer-not-authentic")
    assert "retirée" in refused.value.detail
    assert await filed_in_voisinville(intake) == 0


async def test_r12_a_hand_over_kept_across_a_key_rotation_is_sent_signed_anew(
    intake: IntakeService,
) -> None:
    # The prefecture is down when the workflow asks; Admiville's key is rotated before the
    # retry: the same hand-over goes out signed by the new key, which receivers accept.
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    receiver = Receiver(down=True)
    async with serve(receiver.app()) as base:
        await ask_transfer_by_workflow(intake, created, f"{base}/transmissions")
        assert await intake.send_transfers(ASKED) == 1
        new_kid = await intake.rotate_key("admiville", now=ASKED + timedelta(minutes=1))
        receiver.down = False
        assert await intake.send_transfers(ASKED + timedelta(minutes=2)) == 1
    (first, _), (second, _) = receiver.tried
    assert signed_by(first.decode()) != new_kid
    assert signed_by(second.decode()) == new_kid
    assert first.split(b".")[1] == second.split(b".")[1], "the same hand-over"
    assert verify(second.decode(), (await intake.jwks())["keys"]) is not None
    assert (await intake.get_request(created["tracking_code"])).status.value == "transferred"


async def test_r12_a_hand_over_filed_before_its_key_was_retired_is_answered_as_filed(
    intake: IntakeService,
) -> None:
    # Filed, its answer lost; the sender rotates its key, then retries the same bytes: the
    # answer it was owed, not a refusal (nor a second file).
    _, token = await handed_over(intake)
    when = datetime(2026, 6, 2, 9, 5, tzinfo=UTC)
    async with published_keys(intake):
        first = await intake.receive_transfer("voisinville", token, now=when)
        await intake.rotate_key("admiville", now=when)
        intake.senders = type(intake.senders)(intake)  # its keys fetched anew
        again = await intake.receive_transfer("voisinville", token, now=when)
    assert (again.status_code, again.body) == (first.status_code, first.body)
    assert await filed_in_voisinville(intake) == 1


async def test_r12_a_hand_over_from_an_earlier_version_with_a_line_break_in_a_name_is_received(
    intake: IntakeService,
) -> None:
    # An earlier Guichet (or another product) let a tab and a line break into the name:
    # made spaces, rather than the request left with no competent administration.
    _, token = await handed_over(intake)
    applicant = {**(await claims_of(intake, token))["applicant"], "name": "Camille\tMartin\nDupont"}
    older = await resigned(intake, token, applicant=applicant)
    async with published_keys(intake):
        answer = await intake.receive_transfer(
            "voisinville", older, now=datetime(2026, 6, 2, 9, 5, tzinfo=UTC)
        )
    assert answer.status_code == 201
    assert (await received_here(intake, answer)).applicant["name"] == "Camille Martin Dupont"
