"""R30: repeated reports of one problem at one place are one incident.

A located report (procedure of kind `signalement`) joins the nearest open incident of
the same procedure and tenant opened within the time window and the radius; otherwise
it opens one. The service is alerted once per incident; closing the incident (a final
status on its first report) closes every linked report, and each reporter is told.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from guichet_plumbing.db import Database
from guichet_plumbing.problems import unknown_tenant
from guichet_routing import repository
from guichet_routing.events import RequestReceived
from guichet_routing.schemas import IncidentPolicyPublic, IncidentPolicyWrite

DEFAULT_RADIUS_M = 50
DEFAULT_WINDOW_DAYS = 30
EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
METRES_PER_DEGREE_LATITUDE = math.pi * EARTH_RADIUS_M / 180


@dataclass(frozen=True)
class Policy:
    radius_m: int
    window_days: int


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def bounding_box(lat: float, lon: float, radius_m: float) -> tuple[float, float, float, float]:
    """(south, west, north, east) of a box holding the whole circle: an index-friendly
    prefilter, exact distance afterwards."""
    dlat = radius_m / METRES_PER_DEGREE_LATITUDE
    # Near the poles a degree of longitude shrinks to nothing: take the whole band.
    cos_lat = math.cos(math.radians(min(abs(lat) + dlat, 90.0)))
    dlon = 180.0 if cos_lat < 1e-9 else min(180.0, dlat / cos_lat)
    return lat - dlat, lon - dlon, lat + dlat, lon + dlon


def is_report(event: RequestReceived) -> bool:
    return (
        event.procedure_kind == "signalement"
        and event.procedure_code is not None
        and event.location is not None
    )


async def policy(session: AsyncSession, tenant: str, procedure: str) -> Policy:
    row = await repository.incident_policy(session, tenant, procedure)
    if row is None:
        return Policy(DEFAULT_RADIUS_M, DEFAULT_WINDOW_DAYS)
    return Policy(row.radius_m, row.window_days)


async def file_report(
    session: AsyncSession, tenant: str, event: RequestReceived, payload: dict[str, Any]
) -> bool:
    """Link the (already assigned) report to its incident; True when it joined an open one,
    whose service was alerted already."""
    assert event.location is not None
    assert event.procedure_code is not None
    lat, lon = event.location.latitude, event.location.longitude
    await repository.lock_tenant(session, tenant)
    rule = await policy(session, tenant, event.procedure_code)
    candidates = await repository.open_incidents_in_box(
        session,
        tenant,
        event.procedure_code,
        event.received_at - timedelta(days=rule.window_days),
        bounding_box(lat, lon, rule.radius_m),
    )
    near = sorted(
        (distance_m(lat, lon, c.latitude, c.longitude), c.opened_at, c.id)
        for c in candidates
        if distance_m(lat, lon, c.latitude, c.longitude) <= rule.radius_m
    )
    duplicate = bool(near)
    if duplicate:
        incident_id = near[0][2]
        await repository.add_reporter(session, incident_id)
        await repository.update_assignment(session, event.request_id, {"duplicate": True})
    else:
        incident_id = uuid.uuid4()
        await repository.insert_incident(
            session,
            {
                "id": incident_id,
                "tenant": tenant,
                "procedure_code": event.procedure_code,
                "request_id": event.request_id,
                "latitude": lat,
                "longitude": lon,
                "opened_at": event.received_at,
                "reporters": 1,
            },
        )
    await repository.insert_report(
        session,
        {
            "request_id": event.request_id,
            "incident_id": incident_id,
            "duplicate": duplicate,
            "latitude": lat,
            "longitude": lon,
            "address": _text(event.location.address, 300),
            "description": _text(payload.get("description"), 4000),
            "media_url": _text(payload.get("media_url"), 1000),
        },
    )
    return duplicate


def _text(value: Any, limit: int) -> str | None:
    return str(value)[:limit] if isinstance(value, str) and value else None


async def led_by(session: AsyncSession, row: Any) -> Any:
    """The open incident whose first report `row` is, if any, read again under the lock a
    report takes to join one (`file_report`): while it closes, no report joins it
    unseen (left open, never alerted), and the count told to every reporter is final."""
    if await repository.open_incident_led_by(session, row.request_id) is None:
        return None
    await repository.lock_tenant(session, row.tenant)
    return await repository.open_incident_led_by(session, row.request_id)


def event_fields(incident: Any) -> dict[str, Any]:
    """What a status change says about the incident it closes (notifications tell each
    reporter, whatever the transition's actions)."""
    if incident is None:
        return {}
    return {"incident_id": incident.id, "reporters": incident.reporters}


async def close(
    session: AsyncSession,
    incident: Any,
    record: Callable[[Any, str], Awaitable[None]],
) -> int:
    """Close the incident and every report linked to it; `record` gives each its new status,
    history line and status event (so every reporter is told)."""
    await repository.close_incident(session, incident.id)
    linked = await repository.open_duplicates(session, incident.id)
    for row in linked:
        await record(row, "Clos avec l'incident auquel ce signalement était rattaché.")
    return len(linked)


async def reopen(session: AsyncSession, incident_id: uuid.UUID) -> list[uuid.UUID]:
    """Open again an incident a transfer closed, that intake could not make (R12).

    Meanwhile, a report of the same problem may have opened an incident of its own (or
    another failed transfer reopened one): one problem at one place being one incident,
    those within the radius and the time window of the oldest join it, as a report
    joins an open incident. Returns the first reports of those that joined."""
    incident = await repository.get_incident(session, incident_id)
    await repository.lock_tenant(session, incident.tenant)
    await repository.close_incident(session, incident_id, closed=False)
    rule = await policy(session, incident.tenant, incident.procedure_code)
    window = timedelta(days=rule.window_days)
    lat, lon = incident.latitude, incident.longitude
    nearby = await repository.open_incidents_in_box(
        session,
        incident.tenant,
        incident.procedure_code,
        incident.opened_at - window,
        bounding_box(lat, lon, rule.radius_m),
    )

    def within_reach(a: Any, b: Any) -> bool:
        return (
            abs(a.opened_at - b.opened_at) <= window
            and distance_m(a.latitude, a.longitude, b.latitude, b.longitude) <= rule.radius_m
        )

    same = [other for other in nearby if within_reach(incident, other)]
    oldest = min(same, key=lambda other: (other.opened_at, str(other.id)))
    return [
        other.request_id
        for other in same
        if other.id != oldest.id
        and within_reach(oldest, other)  # not only of the reopened one
        and await repository.merge_incident(session, other, oldest.id)
    ]


def inbox_fields(linked: tuple[uuid.UUID, int] | None) -> dict[str, Any]:
    if linked is None:
        return {}
    return {"incident_id": linked[0], "reporters": linked[1]}


async def get_policy(db: Database, tenant: str, procedure: str | None) -> IncidentPolicyPublic:
    async with db.sessions() as session:
        if await repository.get_tenant(session, tenant) is None:
            raise unknown_tenant(tenant)
        own = await repository.incident_policy_row(session, tenant, procedure or "*")
        rule = await policy(session, tenant, procedure or "*")
    return IncidentPolicyPublic(
        tenant=tenant,
        procedure=procedure,
        radius_m=rule.radius_m,
        window_days=rule.window_days,
        inherited=own is None,
    )


async def put_policy(
    db: Database, tenant: str, procedure: str | None, body: IncidentPolicyWrite
) -> IncidentPolicyPublic:
    """Applies to the next report; incidents already open keep the reports they have."""
    async with db.transaction() as session:
        if await repository.get_tenant(session, tenant) is None:
            raise unknown_tenant(tenant)
        await repository.upsert_incident_policy(
            session, tenant, procedure or "*", body.radius_m, body.window_days
        )
    return await get_policy(db, tenant, procedure)
