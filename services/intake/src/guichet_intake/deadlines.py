"""When silence becomes a decision, and when receipts are due: pure computation, no I/O.

Rules (LEGAL_RULES.md R3, R4, R10, R11, R13 and "Computing a delay"):

- The day of reception does not count. A delay in days ends at the end of the
  Nth day after reception; in weeks, at the end of the same weekday N weeks
  later; in months, at the end of the day of the final month bearing the
  reception day's number, or that month's last day when it has none.
- The decision is born at the end of that day (24:00 in the tenant's time zone)
  and can be relied on from the next day.
- SVA: the delay starts only once the file is complete (the day the missing
  pieces arrive, not counted) and, after a transfer, only from reception by the
  competent administration.
- SVR: the delay runs from reception by the administration first seized; it is
  suspended from the day pieces are requested until they arrive, or until the
  time granted ends if they never do.
- No extension for Sundays or public holidays unless the procedure asks for
  it; then an end on a Sunday or a public holiday of the territory moves to the
  next day that is neither (jour ouvrable: a Saturday end stays, and so a Friday
  holiday moves to the Saturday; moving it on to the Monday while a Saturday end
  stays would let a day more of suspension give an earlier date). Pieces asked
  within such an extension still count: nothing of the delay is left but the
  extension, so it ends with the suspension (and moves on again).
- An AE is due within one working day of reception (R3); a deferred AR within
  seven days of reception by the competent administration (R4).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import holidays

from guichet_intake.documents import french_date

Regime = Literal["sva", "svr", "none"]
Unit = Literal["days", "weeks", "months"]
State = Literal["none", "running", "suspended", "waiting_pieces"]


def add_delay(reception: date, value: int, unit: str) -> date:
    """The last day of a delay counted from `reception` (which itself does not count)."""
    if value < 0:
        raise ValueError("a delay cannot be negative")
    if unit == "days":
        return reception + timedelta(days=value)
    if unit == "weeks":
        return reception + timedelta(weeks=value)
    if unit == "months":
        months = reception.year * 12 + (reception.month - 1) + value
        year, month = divmod(months, 12)
        last_day = calendar.monthrange(year, month + 1)[1]
        return date(year, month + 1, min(reception.day, last_day))
    raise ValueError(f"unknown delay unit: {unit}")


@dataclass(frozen=True)
class Delay:
    value: int
    unit: Unit


@dataclass(frozen=True)
class PiecesRequest:
    """Missing pieces asked for on `requested_on`, to be produced by `due_on` at the latest."""

    requested_on: date
    due_on: date
    received_on: date | None = None


@dataclass(frozen=True)
class Clock:
    """Everything the law looks at to date an implicit decision."""

    regime: Regime
    delay: Delay
    received_on: date  # by the administration first seized
    competent_received_on: date | None = None  # by the competent one, after a transfer
    pieces: tuple[PiecesRequest, ...] = ()
    extend_to_working_day: bool = False
    territory: str | None = None  # `holidays` subdivision of France (57, 6AE, 972, ...)


@dataclass(frozen=True)
class Deadline:
    state: State
    counts_from: date | None = None  # the day after which the delay runs
    last_day: date | None = None  # the decision is born at the end of this day
    suspended_days: int = 0
    # Why the date is what it is, in French for the applicant (receipts quote them).
    notes: tuple[str, ...] = field(default=())

    def decision_instant(self, timezone: str) -> datetime | None:
        """First instant the decision exists: 00:00 local on the day after `last_day`."""
        if self.last_day is None:
            return None
        return datetime.combine(
            self.last_day + timedelta(days=1), time(0), tzinfo=ZoneInfo(timezone)
        )


@lru_cache(maxsize=4096)  # pure: a day's submissions to one procedure share one answer
def implicit_decision(clock: Clock) -> Deadline:
    if clock.regime == "none":
        return Deadline("none", notes=("Pas de décision implicite pour cette démarche.",))
    pieces = sorted(clock.pieces, key=lambda p: p.requested_on)
    deadline = _sva(clock, pieces) if clock.regime == "sva" else _svr(clock, pieces)
    if deadline.last_day is not None:
        moved = _born_at_end_of(clock, deadline.last_day)
        if moved != deadline.last_day:
            deadline = Deadline(
                deadline.state,
                deadline.counts_from,
                moved,
                deadline.suspended_days,
                (*deadline.notes, "Échéance reportée au premier jour ouvrable."),
            )
    return deadline


def _sva(clock: Clock, pieces: list[PiecesRequest]) -> Deadline:
    start = clock.competent_received_on or clock.received_on
    notes = []
    if clock.competent_received_on:
        notes.append(
            "Le délai court à compter de la réception de la demande par l'administration "
            "compétente."
        )
    for request in pieces:
        if request.requested_on > _born_at_end_of(
            clock, add_delay(start, clock.delay.value, clock.delay.unit)
        ):
            break  # asked too late: the acceptance was already born
        if request.received_on is None:
            return Deadline(
                "waiting_pieces",
                notes=(
                    *notes,
                    "Le délai ne court qu'à compter de la réception des pièces manquantes.",
                ),
            )
        start = max(start, request.received_on)
        completed = "Le délai court à compter de la réception des pièces manquantes."
        if completed not in notes:  # several requests for pieces: said once
            notes.append(completed)
    return Deadline(
        "running", start, add_delay(start, clock.delay.value, clock.delay.unit), notes=tuple(notes)
    )


def _born_at_end_of(clock: Clock, last_day: date) -> date:
    """The day the decision would be born at the end of, were nothing else to happen."""
    if clock.extend_to_working_day:
        return next_open_day_from(last_day, clock.territory)
    return last_day


def _svr(clock: Clock, pieces: list[PiecesRequest]) -> Deadline:
    start = clock.received_on  # R13: the first administration's reception
    end = add_delay(start, clock.delay.value, clock.delay.unit)
    suspended = 0
    covered_until = start  # suspensions that overlap are counted once
    state: State = "running"
    notes = []
    if clock.competent_received_on:
        notes.append(
            "Délai compté depuis la réception de la demande par l'administration "
            "initialement saisie."
        )
    for request in pieces:
        born = _born_at_end_of(clock, end)
        if request.requested_on > born:
            break  # the rejection was already born
        if request.requested_on > end:
            # Asked while the end was extended past a holiday: none of the delay was left
            # but that extension, so it ends with the suspension (then extended again).
            end = request.requested_on
        stop = min(request.received_on or request.due_on, request.due_on)
        begin = max(request.requested_on, covered_until)
        if stop > begin:
            days = (stop - begin).days
            suspended += days
            end += timedelta(days=days)
            covered_until = stop
        if request.received_on is None:
            state = "suspended"
            notes.append(
                f"Délai suspendu depuis le {french_date(request.requested_on)} jusqu'à la "
                f"production des pièces demandées, au plus tard le {french_date(request.due_on)}."
            )
        elif stop <= request.requested_on:  # produced the day they were asked: no day lost
            notes.append(
                f"Pièces demandées le {french_date(request.requested_on)} et produites le "
                "jour même : le délai n'a pas été suspendu."
            )
        else:
            notes.append(
                f"Délai suspendu du {french_date(request.requested_on)} au "
                f"{french_date(stop)} pour la production des pièces demandées."
            )
    return Deadline(state, start, end, suspended, tuple(notes))


# Bas-Rhin and Haut-Rhin share Alsace's calendar, which the holidays package names "6AE".
_ALIASES = {"67": "6AE", "68": "6AE", "Bas-Rhin": "6AE", "Haut-Rhin": "6AE"}
# The time each territory's communes keep: a tenant's zone and territory must agree.
_ZONES = {
    "57": ("Europe/Paris",),
    "6AE": ("Europe/Paris",),
    "971": ("America/Guadeloupe",),
    "972": ("America/Martinique",),
    "973": ("America/Cayenne",),
    "974": ("Indian/Reunion",),
    "976": ("Indian/Mayotte",),
    "BL": ("America/St_Barthelemy",),
    "MF": ("America/Marigot",),
    "NC": ("Pacific/Noumea",),
    "PF": ("Pacific/Tahiti", "Pacific/Marquesas", "Pacific/Gambier"),
    "PM": ("America/Miquelon",),
    "WF": ("Pacific/Wallis",),
}
_OVERSEAS = {
    zone: code for code, zones in _ZONES.items() for zone in zones if code not in ("57", "6AE")
}
# Offsets compared in each season: zones agree if they keep the same time all year.
_SEASONS = tuple(datetime(2026, month, 15, 12, tzinfo=UTC) for month in (1, 4, 7, 10))


def _same_time(zone: str, other: str) -> bool:
    return all(
        at.astimezone(ZoneInfo(zone)).utcoffset() == at.astimezone(ZoneInfo(other)).utcoffset()
        for at in _SEASONS
    )


def territory_code(territory: str | None, timezone: str = "Europe/Paris") -> str | None:
    """The holiday calendar's code for a territory given by its code or its name
    (Moselle → 57, Bas-Rhin → 6AE, Martinique → 972); one it does not know, or whose
    communes keep another time than `timezone`, is refused. None given: the overseas
    territory `timezone` is named for (America/Martinique → 972), else metropolitan
    France (Saint-Martin, on Guadeloupe's time, says MF)."""
    if territory is None:
        return _OVERSEAS.get(timezone)
    calendar = type(holidays.country_holidays("FR"))
    code = _ALIASES.get(territory) or calendar.subdivisions_aliases.get(territory, territory)
    # Its school-holiday zones are no territory: they carry no public holiday.
    known = [c for c in calendar.subdivisions if not c.startswith("Zone")]
    if code not in known:
        raise ValueError(f"unknown territory {territory!r}: one of {', '.join(known)}, or none")
    if code in _ZONES and not any(_same_time(timezone, zone) for zone in _ZONES[code]):
        raise ValueError(
            f"territory {territory!r} keeps the time of {' or '.join(_ZONES[code])}, "
            f"not {timezone}'s"
        )
    return code


@lru_cache(maxsize=64)
def _holidays(territory: str | None, year: int) -> holidays.HolidayBase:
    calendar_: holidays.HolidayBase = holidays.country_holidays("FR", subdiv=territory, years=year)
    return calendar_


def is_working_day(day: date, territory: str | None = None) -> bool:
    """Jour ouvré: Monday to Friday, not a public holiday of the territory."""
    return day.weekday() < 5 and day not in _holidays(territory, day.year)


def next_open_day_from(day: date, territory: str | None = None) -> date:
    """Jour ouvrable: any day but a Sunday or a public holiday of the territory."""
    while day.weekday() == 6 or day in _holidays(territory, day.year):
        day += timedelta(days=1)
    return day


def next_working_day_from(day: date, territory: str | None = None) -> date:
    while not is_working_day(day, territory):
        day += timedelta(days=1)
    return day


def registration_due(received_on: date, territory: str | None = None) -> date:
    """R3: last day for the AE, one working day after reception."""
    return next_working_day_from(received_on + timedelta(days=1), territory)


def receipt_due(competent_received_on: date) -> date:
    """R4: last day for a deferred AR, seven days after reception by the competent service."""
    return competent_received_on + timedelta(days=7)
