"""Workflows as data (R29): statuses with a citizen-visible label and a GRC phase, and
the transitions agents fire between them. Pure: validation and moves, no I/O."""

from __future__ import annotations

from collections import deque
from typing import Any

from guichet_plumbing.problems import InvalidParam

PHASES = ("qualification", "processing", "delivery")

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
            "actions": ["notify"],
        },
        {
            "code": "cloturer",
            "label": "Clore avec la réponse",
            "from": ["recue", "en_cours"],
            "to": "traitee",
            "actions": ["notify", "close_with_decision"],
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
