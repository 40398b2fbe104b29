"""The whole flow in the embedded default: one process, SQLite, in-process bus, real SMTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from guichet_launcher.embedded import create_embedded_app
from tests.conftest import SmtpServer
from tests.e2e.flow import FOLLOW_PROOF, Urls, drive_flow
from tests.identity import staff
from tests.support import serve


async def test_embedded_flow_from_submission_to_citizen_mailbox(
    data_dir: Path, smtp_server: SmtpServer
) -> None:
    app = create_embedded_app(data_dir, smtp_url=smtp_server.url, sender_poll_interval=0.2)
    async with serve(app) as base:
        request = await drive_flow(
            Urls(f"{base}/intake", f"{base}/routing", f"{base}/notifications", f"{base}/gateway"),
            smtp_server,
        )
    assert sorted(p.name for p in data_dir.glob("*.sqlite3")) == [
        "gateway.sqlite3",
        "intake.sqlite3",
        "notifications.sqlite3",
        "routing.sqlite3",
    ]

    # The demo state and the request survive a restart.
    async with (
        serve(create_embedded_app(data_dir, smtp_url=smtp_server.url)) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        followed = await client.get(
            f"/intake/v1/requests/{request['tracking_code']}", headers=FOLLOW_PROOF
        )
        assert followed.json()["status"] == "assigned"
        procedures = await client.get("/intake/v1/procedures", params={"tenant": "admiville"})
        assert len(procedures.json()["items"]) == 5
    assert len(smtp_server.mailbox.messages) == 2, "a restart must not resend anything"


async def test_embedded_serves_each_service_openapi_under_its_prefix(data_dir: Path) -> None:
    async with (
        serve(create_embedded_app(data_dir)) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        for prefix in ("intake", "routing", "notifications", "gateway"):
            spec = await client.get(f"/{prefix}/openapi.json")
            assert spec.status_code == 200
            assert spec.json()["info"]["title"].startswith("Guichet")
            assert (await client.get(f"/{prefix}/health")).json() == {"status": "ok"}


async def test_embedded_writes_mail_to_mailbox_folder_without_smtp(data_dir: Path) -> None:
    from tests.e2e.flow import REQUEST
    from tests.support import eventually

    async with (
        serve(create_embedded_app(data_dir, sender_poll_interval=0.2)) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        created = await client.post("/intake/v1/requests", json=REQUEST)
        assert created.status_code == 201

        async def two_files() -> list[Path] | None:
            files = sorted((data_dir / "mailbox").glob("*.eml"))
            return files if len(files) == 2 else None

        files = await eventually(two_files, timeout=20, what="two .eml files")
    assert any(created.json()["tracking_code"] in f.read_text() for f in files)


async def test_status_changes_flow_back_to_the_citizen(
    data_dir: Path, smtp_server: SmtpServer
) -> None:
    """Routing's workflow moves the request; intake shows it, notifications tells the citizen,
    and the final answer stops the implicit-decision clock."""
    from tests.e2e.flow import REQUEST
    from tests.support import eventually

    app = create_embedded_app(data_dir, smtp_url=smtp_server.url, sender_poll_interval=0.2)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        created = (await client.post("/intake/v1/requests", json=REQUEST)).json()
        code, request_id = created["tracking_code"], created["id"]

        async def routed() -> bool:
            answer = await client.get(f"/routing/v1/requests/{request_id}", headers=staff())
            return answer.status_code == 200

        await eventually(routed, what="request routed")
        for transition in ("prendre_en_charge", "cloturer"):
            moved = await client.post(
                f"/routing/v1/requests/{request_id}/transitions",
                json={"transition": transition},
                headers=staff(),
            )
            assert moved.status_code == 200, moved.text

        async def closed() -> dict[str, object] | None:
            followed = (
                await client.get(f"/intake/v1/requests/{code}", headers=FOLLOW_PROOF)
            ).json()
            return followed if followed["status"] == "closed" else None

        followed = await eventually(closed, what="intake shows the request closed")
        assert followed["status_label"] == "Traitée : une réponse vous a été adressée"
        assert followed["implicit_decision"]["state"] == "none"

        async def four_mails() -> bool:
            return len(smtp_server.mailbox.to("camille.martin@example.org")) == 4

        await eventually(four_mails, timeout=20, what="receipt, assignment and two statuses")
    subjects = [m["Subject"] for m in smtp_server.mailbox.messages]
    assert f"Votre demande n° {code} : En cours de traitement" in subjects


async def test_r28_service_asking_for_alerts_hears_of_each_request_at_once(
    data_dir: Path, smtp_server: SmtpServer
) -> None:
    from tests.support import eventually

    app = create_embedded_app(data_dir, smtp_url=smtp_server.url, sender_poll_interval=0.2)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        configured = await client.put(
            "/routing/v1/services/voirie",
            params={"tenant": "admiville"},
            json={
                "email": "voirie@admiville.example",
                "commitment_days": 8,
                "alert_mode": "immediate",
            },
            headers=staff(),
        )
        assert configured.status_code == 204
        created = await client.post(
            "/intake/v1/requests",
            json={
                "tenant": "admiville",
                "procedure": "signalement-voirie",
                "channel": "sms",
                "applicant": {"name": "Ali Ben", "phone": "06 12 34 56 78"},
                "contact_preference": "sms",
                "location": {"latitude": 48.85, "longitude": 2.35, "address": "rue des Lilas"},
            },
        )
        assert created.status_code == 201, created.text
        code = created.json()["tracking_code"]

        async def alerted() -> bool:
            return len(smtp_server.mailbox.to("voirie@admiville.example")) == 1

        await eventually(alerted, timeout=20, what="the road service alerted")
    [alert] = smtp_server.mailbox.to("voirie@admiville.example")
    assert code in alert["Subject"]
    assert "Engagement de réponse" in alert.get_content()


async def test_r29_workflow_asks_for_pieces_through_intake_and_moves_on_when_they_arrive(
    data_dir: Path, smtp_server: SmtpServer
) -> None:
    """A circuit edited through the API, no restart: its request_pieces action becomes
    intake's legal request for pieces (and its e-mail), and the pieces' arrival fires the
    automatic transition waiting for them."""
    from tests.e2e.flow import CITIZEN_EMAIL, REQUEST
    from tests.support import eventually

    circuit = {
        "initial": "recue",
        "statuses": [
            {"code": "recue", "label": "Reçue", "phase": "qualification"},
            {"code": "attente", "label": "En attente de vos pièces", "phase": "processing"},
            {"code": "instruction", "label": "En cours d'instruction", "phase": "processing"},
            {"code": "reservee", "label": "Salle réservée", "phase": "delivery", "final": True},
        ],
        "transitions": [
            {
                "code": "demander_attestation",
                "label": "Demander l'attestation d'assurance",
                "from": ["recue"],
                "to": "attente",
                "actions": [
                    {"type": "request_pieces", "pieces": ["Attestation d'assurance"]},
                ],
                "roles": ["case_handler"],
            },
            {
                "code": "attestation_recue",
                "label": "Attestation reçue",
                "from": ["attente"],
                "to": "instruction",
                "actions": ["notify"],
                "automatic": {"on": "pieces_received"},
            },
            {
                "code": "reserver",
                "label": "Réserver",
                "from": ["instruction"],
                "to": "reservee",
                "actions": ["notify", "close_with_decision"],
            },
        ],
    }
    app = create_embedded_app(data_dir, smtp_url=smtp_server.url, sender_poll_interval=0.2)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        saved = await client.put(
            "/routing/v1/workflows/reservation-salle", params={"tenant": "admiville"}, json=circuit
        )
        assert saved.status_code == 201, saved.text
        created = (await client.post("/intake/v1/requests", json=REQUEST)).json()
        code, request_id = created["tracking_code"], created["id"]

        async def routed() -> bool:
            return (await client.get(f"/routing/v1/requests/{request_id}")).status_code == 200

        await eventually(routed, what="request routed")
        asked = await client.post(
            f"/routing/v1/requests/{request_id}/transitions",
            json={"transition": "demander_attestation"},
            headers={"X-Agent-Id": "agent-3", "X-Agent-Roles": "case_handler"},
        )
        assert asked.status_code == 200, asked.text

        async def incomplete() -> bool:
            followed = (await client.get(f"/intake/v1/requests/{code}")).json()
            return bool(followed["status"] == "incomplete")

        await eventually(incomplete, what="intake asked the citizen for the pieces")
        arrived = await client.post(f"/intake/v1/requests/{code}/pieces-received", json={})
        assert arrived.status_code == 200, arrived.text

        async def instructing() -> bool:
            view = (await client.get(f"/routing/v1/requests/{request_id}")).json()
            return bool(view["status"] == "instruction")

        await eventually(instructing, what="the automatic transition on pieces received")

        async def pieces_mail() -> bool:
            return any(
                "Demande de pièces" in m["Subject"] for m in smtp_server.mailbox.to(CITIZEN_EMAIL)
            )

        await eventually(pieces_mail, timeout=20, what="the request for pieces e-mailed")
