"""The whole flow in the embedded default: one process, SQLite, in-process bus, real SMTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from guichet_launcher.__main__ import embedded_urls
from guichet_launcher.embedded import create_embedded_app
from tests.conftest import SmtpServer
from tests.e2e.flow import CITIZEN_EMAIL, FOLLOW_PROOF, REQUEST, Urls, drive_flow
from tests.identity import admin, handler, staff
from tests.support import eventually, free_port, serve

# The accueil service handles room bookings; its case handler instructs them.
ACCUEIL = handler("accueil")


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


async def test_embedded_links_point_to_the_port_it_serves(data_dir: Path) -> None:
    # `GUICHET_PORT=8765 make run`: the follow link and the address receipts sign as where
    # to verify them are this server's, not port 8000's, unless the environment says.
    free = free_port()
    urls = embedded_urls("127.0.0.1", free, {})
    assert urls == {
        "intake_url": f"http://127.0.0.1:{free}/intake",
        "public_url": urls["intake_url"],
    }
    assert embedded_urls("127.0.0.1", free, {"GUICHET_INTAKE_PUBLIC_URL": "x"}) == {
        "intake_url": f"http://127.0.0.1:{free}/intake"
    }
    async with (
        serve(create_embedded_app(data_dir, **urls), free) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        created = (await client.post("/intake/v1/requests", json=REQUEST)).json()
        assert created["follow_url"].startswith(f"http://127.0.0.1:{free}/intake/v1/requests/")
        verified = await client.post(
            "/intake/v1/receipts/verify", json={"token": created["acknowledgement"]["token"]}
        )
        assert verified.json()["receipt"]["verification_url"] == (
            f"http://127.0.0.1:{free}/intake/v1/receipts/verify"
        )


async def test_embedded_writes_mail_to_mailbox_folder_without_smtp(data_dir: Path) -> None:

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
        code, request_id = await room_booking_routed(client, circuit)
        asked = await client.post(
            f"/routing/v1/requests/{request_id}/transitions",
            json={"transition": "demander_attestation"},
            headers=ACCUEIL,
        )
        assert asked.status_code == 200, asked.text

        async def incomplete() -> bool:
            followed = (await client.get(f"/intake/v1/requests/{code}", headers=ACCUEIL)).json()
            return bool(followed["status"] == "incomplete")

        await eventually(incomplete, what="intake asked the citizen for the pieces")
        arrived = await client.post(
            f"/intake/v1/requests/{code}/pieces-received", json={}, headers=ACCUEIL
        )
        assert arrived.status_code == 200, arrived.text

        async def instructing() -> bool:
            view = (await client.get(f"/routing/v1/requests/{request_id}", headers=ACCUEIL)).json()
            return bool(view["status"] == "instruction")

        await eventually(instructing, what="the automatic transition on pieces received")

        async def pieces_mail() -> bool:
            return any(
                "Demande de pièces" in m["Subject"] for m in smtp_server.mailbox.to(CITIZEN_EMAIL)
            )

        await eventually(pieces_mail, timeout=20, what="the request for pieces e-mailed")


async def test_r12_a_workflow_transfer_intake_refuses_comes_back_to_the_service(
    data_dir: Path, smtp_server: SmtpServer
) -> None:
    """A circuit that transfers to a collectivité this guichet does not serve: intake
    refuses and keeps the request, its clock running; routing gives it back to its service,
    in the status it left, instead of leaving it closed as "transmise" and out of sight."""

    circuit = {
        "initial": "recue",
        "statuses": [
            {"code": "recue", "label": "Reçue", "phase": "qualification"},
            {"code": "transmise", "label": "Transmise", "phase": "delivery", "final": True},
        ],
        "transitions": [
            {
                "code": "transmettre",
                "label": "Transmettre à la commune voisine",
                "from": ["recue"],
                "to": "transmise",
                "actions": [{"type": "transfer", "tenant": "nulle-part", "reason": "Compétence"}],
            },
        ],
    }
    app = create_embedded_app(data_dir, smtp_url=smtp_server.url, sender_poll_interval=0.2)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        code, request_id = await room_booking_routed(client, circuit)
        url = f"/routing/v1/requests/{request_id}"
        sent = await client.post(
            f"{url}/transitions", json={"transition": "transmettre"}, headers=ACCUEIL
        )
        assert sent.json()["status"] == "transmise", sent.text

        async def back() -> dict[str, Any] | None:
            view = (await client.get(url, headers=ACCUEIL)).json()
            return view if view["status"] == "recue" else None

        view = await eventually(back, what="routing gave the request back to its service")
        assert "transmettre" in [t["code"] for t in view["available_transitions"]]
        assert "nulle-part" in view["history"][-1]["comment"], "the agents read why"
        inbox = (
            await client.get("/routing/v1/inbox", params={"tenant": "admiville"}, headers=ACCUEIL)
        ).json()
        assert request_id in [i["request_id"] for i in inbox["items"]]
        followed = (await client.get(f"/intake/v1/requests/{code}", headers=ACCUEIL)).json()
        assert followed["status"] not in ("transferred", "closed")
        assert followed["implicit_decision"] is not None, "its clock still runs"
        assert any("n'a pas abouti" in h["label"] for h in followed["history"])


async def room_booking_routed(
    client: httpx.AsyncClient, circuit: dict[str, Any]
) -> tuple[str, str]:
    """Publish `circuit` for room bookings, submit one, and wait until routing has it."""

    saved = await client.put(
        "/routing/v1/workflows/reservation-salle",
        params={"tenant": "admiville"},
        json=circuit,
        headers=admin(),
    )
    assert saved.status_code == 201, saved.text
    created = (await client.post("/intake/v1/requests", json=REQUEST)).json()
    request_id = created["id"]

    async def routed() -> bool:
        found = await client.get(f"/routing/v1/requests/{request_id}", headers=ACCUEIL)
        return found.status_code == 200

    await eventually(routed, what="request routed")
    return created["tracking_code"], request_id
