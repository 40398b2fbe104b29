"""The demo tenant seeded on first start: the commune of Admiville."""

from __future__ import annotations

from typing import Any

from guichet_intake import repository
from guichet_plumbing.auth import Kind, Principal, Role
from guichet_plumbing.db import Database

TENANT: dict[str, Any] = {
    "code": "admiville",
    "name": "Commune d'Admiville",
    "timezone": "Europe/Paris",
    "territory": None,
}

_HOTEL_DE_VILLE = "Hôtel de ville, 1 place de la Mairie, 99999 Admiville"

SERVICES = [
    {
        "code": "etat-civil",
        "designation": "Direction des démarches administratives et de l'état civil",
        "postal_address": _HOTEL_DE_VILLE,
        "email": "etat-civil@admiville.example",
        "phone": "01 99 00 00 01",
    },
    {
        "code": "citoyennete",
        "designation": "Direction de la citoyenneté et des conseils de quartier",
        "postal_address": _HOTEL_DE_VILLE,
        "email": "citoyennete@admiville.example",
        "phone": "01 99 00 00 02",
    },
    {
        "code": "accueil",
        "designation": "Direction de l'accueil, du courrier et de la location de salles",
        "postal_address": _HOTEL_DE_VILLE,
        "email": "accueil@admiville.example",
        "phone": "01 99 00 00 03",
    },
    {
        "code": "guichet-unique",
        "designation": "Direction du guichet unique d'inscription",
        "postal_address": _HOTEL_DE_VILLE,
        "email": "inscriptions@admiville.example",
        "phone": "01 99 00 00 04",
    },
    {
        "code": "voirie",
        "designation": "Centre technique municipal, service de la voirie",
        "postal_address": "Centre technique municipal, 12 rue des Ateliers, 99999 Admiville",
        "email": "voirie@admiville.example",
        "phone": "01 99 00 00 05",
    },
]

_APPEAL = (
    "Voies et délais de recours : la décision implicite de rejet peut être contestée "
    "dans un délai de deux mois à compter de sa naissance, par un recours gracieux "
    "adressé au maire d'Admiville ou par un recours contentieux devant le tribunal "
    "administratif territorialement compétent (y compris par l'application "
    "Télérecours citoyens)."
)

# What a catalogue entry is unless it says otherwise (the law's defaults: R1; R10: silence
# is acceptance, L231-1).
PROCEDURE_DEFAULTS: dict[str, Any] = {
    "kind": "demande",
    "regime": "sva",
    "delay_value": 2,
    "delay_unit": "months",
    "extend_to_working_day": False,
    "acknowledgement_required": True,
    "location_required": False,
    "identification": "none",
    "required_pieces": [],
    "required_information": [],
    "appeal_text": None,
    "teleservice_url": None,
}

PROCEDURES = [
    {
        **PROCEDURE_DEFAULTS,
        "code": "reservation-salle",
        "title": "Réservation d'une salle municipale",
        "service_code": "accueil",
        "required_information": ["Salle souhaitée", "Date et horaires", "Nombre de personnes"],
    },
    {
        **PROCEDURE_DEFAULTS,
        "code": "subvention-quartier",
        "title": "Demande de subvention pour un projet de quartier",
        "service_code": "citoyennete",
        "regime": "svr",
        "identification": "association",
        "required_pieces": ["Statuts de l'association", "Budget prévisionnel du projet"],
        "appeal_text": _APPEAL,
    },
    # R1: the mere delivery of a document provided by law owes no AR (on paper; an electronic
    # send always gets one). No implicit decision either: the applicant is owed the document
    # itself, which silence cannot deliver; the request seeks no individual decision (L231-4 1°).
    {
        **PROCEDURE_DEFAULTS,
        "code": "acte-etat-civil",
        "title": "Demande de copie ou d'extrait d'acte d'état civil",
        "service_code": "etat-civil",
        "regime": "none",
        "acknowledgement_required": False,
    },
    {
        **PROCEDURE_DEFAULTS,
        "code": "inscription-periscolaire",
        "title": "Inscription aux activités périscolaires et à la restauration scolaire",
        "service_code": "guichet-unique",
        "identification": "person",
        "required_pieces": ["Justificatif de domicile de moins de trois mois"],
    },
    {
        **PROCEDURE_DEFAULTS,
        "code": "signalement-voirie",
        "title": "Signalement d'un problème sur la voie publique",
        "kind": "signalement",
        # A report asks for no decision: there is nothing for silence to accept or reject.
        "regime": "none",
        "service_code": "voirie",
        "location_required": True,
    },
]


async def seed_demo(db: Database) -> None:
    """Idempotent: does nothing once the tenant exists, so edits made since survive restarts."""
    async with db.transaction() as session:
        if not await repository.upsert_tenant(session, **TENANT):
            return
        for service in SERVICES:
            await repository.upsert_service(session, {"tenant": TENANT["code"], **service})
        for procedure in PROCEDURES:
            await repository.upsert_procedure(session, {"tenant": TENANT["code"], **procedure})


# `make run` only (refused when GUICHET_ENV=production): one login per role, no password.
DEMO_LOGINS: dict[str, Principal] = {
    "accueil": Principal(
        Kind.agent,
        subject="demo-accueil",
        tenant="admiville",
        roles=frozenset({Role.counter_agent}),
        name="Agent d'accueil (démo)",
    ),
    "instructeur-accueil": Principal(
        Kind.agent,
        subject="demo-instructeur-accueil",
        tenant="admiville",
        roles=frozenset({Role.case_handler}),
        services=frozenset({"accueil"}),
        name="Instructeur du service accueil (démo)",
    ),
    "instructeur-voirie": Principal(
        Kind.agent,
        subject="demo-instructeur-voirie",
        tenant="admiville",
        roles=frozenset({Role.case_handler}),
        services=frozenset({"voirie"}),
        name="Instructeur de la voirie (démo)",
    ),
    "chef-voirie": Principal(
        Kind.agent,
        subject="demo-chef-voirie",
        tenant="admiville",
        roles=frozenset({Role.service_head}),
        services=frozenset({"voirie"}),
        name="Cheffe du service voirie (démo)",
    ),
    "admin": Principal(
        Kind.agent,
        subject="demo-admin",
        tenant="admiville",
        roles=frozenset({Role.administrator}),
        name="Administratrice d'Admiville (démo)",
    ),
    "dpo": Principal(
        Kind.agent,
        subject="demo-dpo",
        tenant="admiville",
        roles=frozenset({Role.dpo}),
        name="Délégué à la protection des données (démo)",
    ),
    "mediatrice": Principal(
        Kind.agent,
        subject="demo-mediatrice",
        tenant="admiville",
        roles=frozenset({Role.mediator}),
        name="Médiatrice France Services (démo)",
    ),
    "usager": Principal(
        Kind.citizen,
        subject="demo-usager-camille",
        name="Camille Martin",
        identity={
            "family_name": "Martin",
            "given_name": "Camille",
            "gender": "female",
            "birthdate": "1990-04-12",
            "birthplace": "75056",
            "birthcountry": "99100",
            "email": "camille.martin@example.org",
        },
    ),
    "systeme": Principal(
        Kind.client,
        subject="demo-prefecture",
        tenant="admiville",
        scopes=frozenset({"transfers:write"}),
        name="Préfecture (système, démo)",
    ),
}
