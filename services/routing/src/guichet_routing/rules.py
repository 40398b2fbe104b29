"""Which service a request goes to: ordered rules, evaluated without I/O (R28, R29).

A rule matches when every condition it sets holds: procedure among a list, channel
among a list, payload fields (equals / one of / contains), location inside one of
the tenant's neighbourhoods. The first matching rule wins; none matching, the
tenant's default service. Every decision says why, in French, for the agents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

Ring = Sequence[Sequence[float]]


@dataclass(frozen=True)
class FieldCondition:
    """`field` is a dotted path into the payload (`adresse.quartier`)."""

    field: str
    equals: Any = None
    one_of: tuple[Any, ...] | None = None
    contains: str | None = None

    def holds(self, payload: Mapping[str, Any]) -> bool:
        value: Any = payload
        for part in self.field.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return False
            value = value[part]
        if self.one_of is not None:
            return value in self.one_of
        if self.contains is not None:
            return isinstance(value, str) and self.contains.casefold() in value.casefold()
        return bool(value == self.equals)

    def describe(self) -> str:
        if self.one_of is not None:
            return f"{self.field} parmi {list(self.one_of)}"
        if self.contains is not None:
            return f"{self.field} contient « {self.contains} »"
        return f"{self.field} = {self.equals!r}"


def field_condition(stored: Mapping[str, Any]) -> FieldCondition:
    """A condition as rules and workflows store it (JSON) turned into its test."""
    return FieldCondition(
        field=stored["field"],
        equals=stored.get("equals"),
        one_of=tuple(stored["one_of"]) if stored.get("one_of") is not None else None,
        contains=stored.get("contains"),
    )


@dataclass(frozen=True)
class Rule:
    position: int
    name: str
    service: str
    procedures: frozenset[str] | None = None
    channels: frozenset[str] | None = None
    fields: tuple[FieldCondition, ...] = ()
    neighbourhoods: frozenset[str] | None = None
    team: str | None = None  # a team of `service`, when the rule names one


@dataclass(frozen=True)
class Sample:
    procedure: str | None
    channel: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    longitude: float | None = None
    latitude: float | None = None


@dataclass(frozen=True)
class Decision:
    service: str
    rule: Rule | None
    neighbourhood: str | None
    reasons: tuple[str, ...]

    @property
    def team(self) -> str | None:
        return self.rule.team if self.rule else None

    def explanation(self) -> str:
        head = (
            f"règle n° {self.rule.position} « {self.rule.name} »"
            if self.rule
            else "service par défaut (aucune règle ne correspond)"
        )
        return head + (f" : {' ; '.join(self.reasons)}" if self.reasons else "")


@dataclass(frozen=True)
class Neighbourhood:
    code: str
    name: str
    geometry: Mapping[str, Any]  # GeoJSON Polygon or MultiPolygon, [longitude, latitude]

    def contains(self, longitude: float, latitude: float) -> bool:
        polygons = (
            self.geometry["coordinates"]
            if self.geometry["type"] == "MultiPolygon"
            else [self.geometry["coordinates"]]
        )
        return any(_in_polygon(longitude, latitude, rings) for rings in polygons)


def decide(
    rules: Sequence[Rule],
    default_service: str,
    sample: Sample,
    neighbourhoods: Sequence[Neighbourhood],
) -> Decision:
    where = locate(sample, neighbourhoods)
    for rule in sorted(rules, key=lambda r: r.position):
        reasons = _match(rule, sample, where)
        if reasons is not None:
            return Decision(rule.service, rule, where.code if where else None, tuple(reasons))
    return Decision(default_service, None, where.code if where else None, ())


def locate(sample: Sample, neighbourhoods: Sequence[Neighbourhood]) -> Neighbourhood | None:
    if sample.longitude is None or sample.latitude is None:
        return None
    return next((n for n in neighbourhoods if n.contains(sample.longitude, sample.latitude)), None)


def _match(rule: Rule, sample: Sample, where: Neighbourhood | None) -> list[str] | None:
    """The reasons it matches, or None when one condition fails."""
    reasons = []
    if rule.procedures is not None:
        if sample.procedure not in rule.procedures:
            return None
        reasons.append(f"démarche {sample.procedure}")
    if rule.channels is not None:
        if sample.channel not in rule.channels:
            return None
        reasons.append(f"canal {sample.channel}")
    for condition in rule.fields:
        if not condition.holds(sample.payload):
            return None
        reasons.append(condition.describe())
    if rule.neighbourhoods is not None:
        if where is None or where.code not in rule.neighbourhoods:
            return None
        reasons.append(f"quartier {where.name}")
    return reasons


def _in_polygon(x: float, y: float, rings: Sequence[Ring]) -> bool:
    """Inside the outer ring and outside every hole (even-odd ray casting)."""
    return _in_ring(x, y, rings[0]) and not any(_in_ring(x, y, hole) for hole in rings[1:])


def _in_ring(x: float, y: float, ring: Ring) -> bool:
    inside = False
    for start, end in pairwise(ring):
        x1, y1, x2, y2 = start[0], start[1], end[0], end[1]  # a third (altitude) is ignored
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside
