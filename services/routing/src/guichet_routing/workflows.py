"""Workflows as data (R29): statuses with a citizen-visible label and a GRC phase, and
the transitions between them: who may fire each one (roles, services), which fire by
themselves (after a delay, on an event, on a form field), and the actions they carry.
Pure: validation, permissions and timing, no I/O."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from guichet_plumbing.problems import InvalidParam
from guichet_routing.rules import field_condition

PHASES = ("qualification", "processing", "delivery")
# The agents' roles, as the authentication names them.
ROLES = ("counter_agent", "case_handler", "service_head", "administrator", "dpo")
ACTIONS = ("notify", "request_pieces", "assign", "transfer", "close_with_decision")
# Events that may fire an automatic transition.
TRIGGERS = ("pieces_received",)
# Automatic transitions conditioned on the form may chain; a badly written circuit
# (a → b → a) stops here instead of looping.
MAX_CHAIN = 10

# Used for any procedure whose workflow the collectivité has not written yet.
DEFAULT_WORKFLOW: dict[str, Any] = {
    "initial": "recue",
    "statuses": [
        {
            "code": "recue",
            "label": "Reçue par le service compétent",
            "phase": "qualification",
            "final": False,
        },
        {
            "code": "en_cours",
            "label": "En cours de traitement",
            "phase": "processing",
            "final": False,
        },
        {
            "code": "traitee",
            "label": "Traitée : une réponse vous a été adressée",
            "phase": "delivery",
            "final": True,
        },
    ],
    "transitions": [
        {
            "code": "prendre_en_charge",
            "label": "Prendre en charge",
            "from": ["recue"],
            "to": "en_cours",
            "actions": [{"type": "notify"}],
        },
        {
            "code": "cloturer",
            "label": "Clore avec la réponse",
            "from": ["recue", "en_cours"],
            "to": "traitee",
            "actions": [{"type": "notify"}, {"type": "close_with_decision"}],
        },
    ],
}


def problems(definition: dict[str, Any]) -> list[InvalidParam]:
    """Everything wrong with a definition, each naming the faulty element (empty: valid)."""
    faults: list[InvalidParam] = []
    codes = [s["code"] for s in definition["statuses"]]
    known = set(codes)
    for index, code in enumerate(codes):
        if codes.index(code) != index:
            faults.append(
                InvalidParam(
                    name=f"statuses[{index}].code",
                    reason=f"Le statut « {code} » est défini deux fois.",
                )
            )
    if definition["initial"] not in known:
        faults.append(
            InvalidParam(
                name="initial", reason=f"Statut initial « {definition['initial']} » inconnu."
            )
        )
    if not any(s["final"] for s in definition["statuses"]):
        faults.append(
            InvalidParam(
                name="statuses",
                reason="Aucun statut final : une demande ne pourrait jamais être close.",
            )
        )
    transition_codes = [t["code"] for t in definition["transitions"]]
    for index, transition in enumerate(definition["transitions"]):
        if transition_codes.index(transition["code"]) != index:
            faults.append(
                InvalidParam(
                    name=f"transitions[{index}].code",
                    reason=f"La transition « {transition['code']} » est définie deux fois.",
                )
            )
        for origin in transition["from"]:
            if origin not in known:
                faults.append(
                    InvalidParam(
                        name=f"transitions[{index}].from",
                        reason=f"Statut de départ « {origin} » inconnu.",
                    )
                )
        if transition["to"] not in known:
            faults.append(
                InvalidParam(
                    name=f"transitions[{index}].to",
                    reason=f"Statut d'arrivée « {transition['to']} » inconnu.",
                )
            )
    faults += _action_problems(definition, known)
    if not faults:
        reachable = _reachable(definition)
        for index, status in enumerate(definition["statuses"]):
            if status["code"] not in reachable:
                faults.append(
                    InvalidParam(
                        name=f"statuses[{index}]",
                        reason=f"Le statut « {status['code']} » est inaccessible depuis le statut "
                        "initial.",
                    )
                )
        for index, status in enumerate(definition["statuses"]):
            leaves = any(status["code"] in t["from"] for t in definition["transitions"])
            if not status["final"] and not leaves:
                faults.append(
                    InvalidParam(
                        name=f"statuses[{index}]",
                        reason=f"Le statut « {status['code']} » n'est pas final et aucune "
                        "transition n'en sort : une demande y resterait bloquée.",
                    )
                )
    return faults


def _reachable(definition: dict[str, Any]) -> set[str]:
    seen = {definition["initial"]}
    queue = deque(seen)
    while queue:
        current = queue.popleft()
        for transition in definition["transitions"]:
            if current in transition["from"] and transition["to"] not in seen:
                seen.add(transition["to"])
                queue.append(transition["to"])
    return seen


def status(definition: dict[str, Any], code: str) -> dict[str, Any]:
    return next(s for s in definition["statuses"] if s["code"] == code)


def transition(definition: dict[str, Any], code: str) -> dict[str, Any] | None:
    return next((t for t in definition["transitions"] if t["code"] == code), None)


def _action_problems(definition: dict[str, Any], known: set[str]) -> list[InvalidParam]:
    """What the actions and automatic triggers make impossible, element by element."""
    faults: list[InvalidParam] = []
    finals = {s["code"] for s in definition["statuses"] if s["final"]}
    for index, move in enumerate(definition["transitions"]):
        for position, action in enumerate(move["actions"]):
            name = f"transitions[{index}].actions[{position}]"
            kind = action["type"]
            if kind in {"close_with_decision", "transfer"} and move["to"] in known - finals:
                faults.append(
                    InvalidParam(
                        name=name,
                        reason=f"« {kind} » clôt la demande : le statut d'arrivée "
                        f"« {move['to']} » doit être final.",
                    )
                )
            if kind == "request_pieces" and move["to"] in finals:
                faults.append(
                    InvalidParam(
                        name=name,
                        reason="On ne peut pas demander de pièces en clôturant la demande : "
                        "choisissez un statut d'arrivée non final.",
                    )
                )
            if kind == "request_pieces" and move.get("automatic") and not action.get("pieces"):
                faults.append(
                    InvalidParam(
                        name=f"{name}.pieces",
                        reason="Une transition automatique doit nommer les pièces à demander.",
                    )
                )
        automatic = move.get("automatic")
        if automatic and move.get("roles"):
            faults.append(
                InvalidParam(
                    name=f"transitions[{index}].roles",
                    reason="Une transition automatique n'est déclenchée par aucun agent : "
                    "retirez ses rôles.",
                )
            )
        if automatic and any(origin in finals for origin in move["from"]):
            faults.append(
                InvalidParam(
                    name=f"transitions[{index}].automatic",
                    reason="Une transition automatique ne peut pas partir d'un statut final.",
                )
            )
    return faults


@dataclass(frozen=True)
class Actor:
    """Who fires a transition: the agent's roles and services come from authentication."""

    agent: str | None
    roles: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()


def refusal(move: Mapping[str, Any], actor: Actor) -> str | None:
    """Why `actor` may not fire `move` (None: allowed). Roles and services both apply."""
    if move.get("automatic"):
        return f"« {move['label']} » se déclenche automatiquement."
    roles = move.get("roles") or []
    if roles and not actor.roles & set(roles):
        return f"« {move['label']} » est réservée aux rôles : {', '.join(roles)}."
    services = move.get("services") or []
    if services and not actor.services & set(services):
        return f"« {move['label']} » est réservée aux services : {', '.join(services)}."
    return None


def manual(definition: dict[str, Any], status_code: str) -> list[dict[str, Any]]:
    """The transitions an agent may fire from this status (automatic ones fire by themselves)."""
    return [
        t for t in definition["transitions"] if status_code in t["from"] and not t.get("automatic")
    ]


def action_types(move: Mapping[str, Any]) -> list[str]:
    return [a["type"] for a in move["actions"]]


def action(move: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    return next((a for a in move["actions"] if a["type"] == kind), None)


def _delay(after: Mapping[str, int]) -> timedelta:
    return timedelta(days=after.get("days") or 0, hours=after.get("hours") or 0)


def _automatic(
    definition: dict[str, Any], status_code: str, kind: str, transfers: bool
) -> list[tuple[int, dict[str, Any]]]:
    """The automatic transitions of this kind (`after`, `on`) out of this status; without
    those that transfer the request if not `transfers` (one was just refused)."""
    return [
        (index, t)
        for index, t in enumerate(definition["transitions"])
        if status_code in t["from"]
        and (t.get("automatic") or {}).get(kind)
        and (transfers or action(t, "transfer") is None)
    ]


def timer_at(
    definition: dict[str, Any], status_code: str, since: datetime, *, transfers: bool = True
) -> datetime | None:
    """When the first timed transition out of this status fires (None: none is timed)."""
    times = [
        since + _delay(t["automatic"]["after"])
        for _, t in _automatic(definition, status_code, "after", transfers)
    ]
    return min(times, default=None)


def timed(
    definition: dict[str, Any],
    status_code: str,
    since: datetime,
    now: datetime,
    *,
    transfers: bool = True,
) -> dict[str, Any] | None:
    """The timed transition due by `now` (the earliest; declaration order breaks ties)."""
    due = [
        (since + _delay(t["automatic"]["after"]), index, t)
        for index, t in _automatic(definition, status_code, "after", transfers)
    ]
    due = [d for d in due if d[0] <= now]
    return min(due, key=lambda d: (d[0], d[1]))[2] if due else None


def triggered(
    definition: dict[str, Any], status_code: str, trigger: str, *, transfers: bool = True
) -> dict[str, Any] | None:
    """The automatic transition this event fires from this status, if any."""
    return next(
        (
            t
            for _, t in _automatic(definition, status_code, "on", transfers)
            if t["automatic"]["on"] == trigger
        ),
        None,
    )


def on_entry(
    definition: dict[str, Any], status_code: str, payload: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The automatic transition whose condition on the form holds, as the request enters."""
    return next(
        (
            t
            for t in definition["transitions"]
            if status_code in t["from"]
            and (when := (t.get("automatic") or {}).get("when"))
            and field_condition(when).holds(payload)
        ),
        None,
    )
