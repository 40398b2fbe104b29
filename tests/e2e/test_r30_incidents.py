"""R30 end to end: intake → routing → notifications, on a real SMTP server."""

from __future__ import annotations

from pathlib import Path

import httpx

from guichet_launcher.embedded import create_embedded_app
from guichet_plumbing.auth import Role
from tests.conftest import SmtpServer
from tests.e2e.flow import Urls
from tests.identity import agent, bearer, handler
from tests.support import eventually, serve

VOIRIE = "voirie@admiville.example"
CLOSED = "Traitée : une réponse vous a été adressée"
# Ten points around a pothole at 48.8566 N, 2.3522 E, none farther than 25 m from it
# (1 m is 0.0000090° of latitude and 0.0000137° of longitude there): all ten are within
# 50 m of one another, so whichever is routed first (Kafka does not keep the order of
# arrival across partitions), the nine others are within 50 m of it.
OFFSETS_M = [(0, 0), (10, 5), (-20, 12), (15, -18), (0, 24), (-17, -14), (24, 0), (5, -23)]
OFFSETS_M += [(-10, -10), (12, 12)]


async def drive_ten_reports(urls: Urls, smtp_server: SmtpServer) -> None:
    """Ten reports within 50 m of one pothole produce one alert and ten linked reporters;
    all ten are notified when it is closed."""
    # The voirie service's head sets its alerts; its case handler closes the incident.
    head = bearer(agent(Role.service_head, services=("voirie",)))
    voirie = handler("voirie")
    async with httpx.AsyncClient(timeout=20) as client:
        configured = await client.put(
            f"{urls.routing}/v1/services/voirie",
            params={"tenant": "admiville"},
            json={"email": VOIRIE, "alert_mode": "immediate"},
            headers=head,
        )
        assert configured.status_code == 204
        reporters: dict[str, str] = {}
        for i, (north, east) in enumerate(OFFSETS_M):
            created = await client.post(
                f"{urls.intake}/v1/requests",
                json={
                    "tenant": "admiville",
                    "procedure": "signalement-voirie",
                    "channel": "web",
                    "applicant": {"name": f"Habitant {i}", "email": f"habitant{i}@example.org"},
                    "location": {
                        "latitude": 48.8566 + north * 0.0000090,
                        "longitude": 2.3522 + east * 0.0000137,
                    },
                    "payload": {"description": "Nid-de-poule rue des Lilas"},
                },
            )
            assert created.status_code == 201, created.text
            reporters[created.json()["tracking_code"]] = f"habitant{i}@example.org"

        async def all_routed() -> bool:
            page = await client.get(
                f"{urls.routing}/v1/inbox",
                params={"tenant": "admiville", "duplicates": "true"},
                headers=voirie,
            )
            return len(page.json()["items"]) == 10

        await eventually(all_routed, timeout=30, what="ten reports routed")
        inbox = (
            await client.get(
                f"{urls.routing}/v1/inbox", params={"tenant": "admiville"}, headers=voirie
            )
        ).json()
        [incident] = inbox["items"]
        # Led by the first report routed: over Kafka, not necessarily the first received.
        assert incident["tracking_code"] in reporters
        assert incident["reporters"] == 10
        first_id = incident["request_id"]

        for transition in ("prendre_en_charge", "cloturer"):
            moved = await client.post(
                f"{urls.routing}/v1/requests/{first_id}/transitions",
                json={"transition": transition},
                headers=voirie,
            )
            assert moved.status_code == 200, moved.text

        def closing_mails(address: str) -> list[str]:
            return [
                m.get_content()
                for m in smtp_server.mailbox.to(address)
                if m["Subject"].endswith(CLOSED)
            ]

        async def everyone_told() -> bool:
            return all(closing_mails(address) for address in reporters.values())

        await eventually(everyone_told, timeout=30, what="ten reporters told of the repair")

        statuses: dict[str, str] = {}

        async def all_closed() -> bool:
            for code in reporters:
                followed = await client.get(f"{urls.intake}/v1/requests/{code}", headers=voirie)
                statuses[code] = followed.json()["status"]
            return set(statuses.values()) == {"closed"}

        try:
            await eventually(all_closed, timeout=30, what="intake shows the ten requests closed")
        except AssertionError as late:
            # Which requests lag, and at which status, is what a failure needs to say.
            raise AssertionError(f"{late}; statuses: {statuses}") from None

    assert len(smtp_server.mailbox.to(VOIRIE)) == 1, "one alert for the incident, not ten"
    for code, address in reporters.items():
        [closing] = closing_mails(address)
        assert code in closing
        assert "signalé par 10 personnes" in closing


async def test_r30_ten_reports_one_alert_ten_reporters_all_told_when_closed(
    data_dir: Path, smtp_server: SmtpServer
) -> None:
    """Embedded: one process, SQLite, in-process bus."""
    app = create_embedded_app(data_dir, smtp_url=smtp_server.url, sender_poll_interval=0.2)
    async with serve(app) as base:
        await drive_ten_reports(
            Urls(f"{base}/intake", f"{base}/routing", f"{base}/notifications", f"{base}/gateway"),
            smtp_server,
        )


async def test_r30_ten_reports_one_alert_over_postgres_and_kafka(
    distributed: Urls, smtp_server: SmtpServer
) -> None:
    """Production topology: four apps, four PostgreSQL databases, Kafka."""
    await drive_ten_reports(distributed, smtp_server)
