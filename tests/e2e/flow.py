"""The walking-skeleton flow, driven over HTTP, whatever the topology behind the URLs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import SmtpServer
from tests.identity import handler
from tests.support import eventually

CITIZEN_EMAIL = "camille.martin@example.org"
# Without an account, the citizen follows with the tracking code and the e-mail given.
FOLLOW_PROOF = {"X-Follow-Proof": CITIZEN_EMAIL}

REQUEST = {
    "tenant": "admiville",
    "procedure": "reservation-salle",
    "channel": "web",
    "applicant": {
        "name": "Camille Martin",
        "email": CITIZEN_EMAIL,
        "postal_address": {
            "street": "3 rue des Lilas",
            "postal_code": "99999",
            "city": "Admiville",
        },
    },
    "contact_preference": "email",
    "payload": {"salle": "Salle des fêtes", "date_souhaitee": "2027-02-14", "personnes": 80},
}

ACCUEIL = "Direction de l'accueil, du courrier et de la location de salles"


@dataclass
class Urls:
    intake: str
    routing: str
    notifications: str
    gateway: str


async def drive_flow(urls: Urls, smtp: SmtpServer) -> dict[str, Any]:
    """Submit, follow, find it in the inbox, and read both e-mails at the SMTP server."""
    async with httpx.AsyncClient(timeout=10) as client:
        created = await client.post(
            f"{urls.intake}/v1/requests", json=REQUEST, headers={"Idempotency-Key": "e2e-flow-1"}
        )
        assert created.status_code == 201, created.text
        request = created.json()
        code = request["tracking_code"]
        ack = request["acknowledgement"]
        assert ack["kind"] == "accuse_reception"
        assert ack["service"]["designation"] == ACCUEIL
        assert ack["implicit_decision"]["regime"] == "sva"

        # A retry with the same key replays the answer and creates nothing.
        again = await client.post(
            f"{urls.intake}/v1/requests", json=REQUEST, headers={"Idempotency-Key": "e2e-flow-1"}
        )
        assert again.status_code == 201
        assert again.json() == request

        async def assigned() -> dict[str, Any] | None:
            followed = (
                await client.get(f"{urls.intake}/v1/requests/{code}", headers=FOLLOW_PROOF)
            ).json()
            return followed if followed["status"] == "assigned" else None

        followed = await eventually(assigned, timeout=20, what="request assigned in intake")
        assert followed["assigned_service"] == ACCUEIL
        assert [h["status"] for h in followed["history"]] == [
            "received",
            "accuse_reception",
            "assigned",
        ]

        inbox = (
            await client.get(
                f"{urls.routing}/v1/inbox",
                params={"tenant": "admiville", "service": "accueil"},
                headers=handler("accueil"),
            )
        ).json()
        assert [i["tracking_code"] for i in inbox["items"]] == [code]
        assert inbox["items"][0]["channel"] == "web"

        async def both_sent() -> list[dict[str, Any]] | None:
            listed = (
                await client.get(
                    f"{urls.notifications}/v1/deliveries",
                    params={"request": request["id"]},
                    headers=handler("accueil"),
                )
            ).json()["items"]
            done = [d for d in listed if d["status"] == "sent"]
            return listed if len(done) == 2 else None

        try:
            deliveries = await eventually(both_sent, timeout=20, what="two e-mails sent")
        except AssertionError:
            print(
                (
                    await client.get(
                        f"{urls.notifications}/v1/deliveries", params={"request": request["id"]}
                    )
                ).json()
            )
            raise
        assert {d["kind"] for d in deliveries} == {"accuse_reception", "assignment"}

        ready = await client.get(f"{urls.gateway}/ready")
        assert ready.status_code == 200, ready.text

    mails = smtp.mailbox.to(CITIZEN_EMAIL)
    assert len(mails) == 2, [m["Subject"] for m in mails]
    receipt = next(m for m in mails if m["Subject"].startswith("Accusé de réception"))
    text = receipt.get_content()
    assert code in receipt["Subject"]
    for mention in ack["mentions"]:
        assert mention in text
    assert ACCUEIL in text
    ar_delivery = next(d for d in deliveries if d["kind"] == "accuse_reception")
    assert receipt["Message-ID"] == f"<{ar_delivery['id']}@guichet>"
    # The e-mail links to the signed PDF, and the token in the answer verifies.
    assert f"/v1/receipts/{ack['receipt_id']}.pdf" in text
    return request
