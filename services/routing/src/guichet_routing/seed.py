"""The demo tenant's services and routing rules (the commune of Admiville)."""

from __future__ import annotations

from guichet_plumbing.db import Database
from guichet_routing import repository

TENANT = {"code": "admiville", "name": "Commune d'Admiville", "default_service": "accueil"}

SERVICES = [
    ("etat-civil", "Direction des démarches administratives et de l'état civil"),
    ("citoyennete", "Direction de la citoyenneté et des conseils de quartier"),
    ("accueil", "Direction de l'accueil, du courrier et de la location de salles"),
    ("guichet-unique", "Direction du guichet unique d'inscription"),
    ("voirie", "Centre technique municipal, service de la voirie"),
]

RULES = [
    ("reservation-salle", "accueil"),
    ("subvention-quartier", "citoyennete"),
    ("acte-etat-civil", "etat-civil"),
    ("inscription-periscolaire", "guichet-unique"),
    ("signalement-voirie", "voirie"),
]


async def seed_demo(db: Database) -> None:
    """Idempotent: does nothing once the tenant exists."""
    async with db.transaction() as session:
        if await repository.get_tenant(session, TENANT["code"]) is not None:
            return
        await repository.insert_tenant(session, TENANT)
        for code, name in SERVICES:
            await repository.insert_service(
                session, {"tenant": TENANT["code"], "code": code, "name": name}
            )
        await repository.replace_rules(
            session,
            TENANT["code"],
            TENANT["default_service"],
            [
                {
                    "position": position,
                    "name": f"Démarche {procedure}",
                    "conditions": {"procedures": [procedure]},
                    "service_code": service,
                }
                for position, (procedure, service) in enumerate(RULES, start=1)
            ],
        )
