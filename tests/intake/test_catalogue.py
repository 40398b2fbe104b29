"""The procedure catalogue and what it requires of applicants (R7, R8, R10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from guichet_intake.schemas import Applicant, ProcedureWrite, ServiceWrite
from guichet_intake.service import IntakeService
from guichet_plumbing.auth import Kind, Principal
from guichet_plumbing.problems import Problem
from tests.intake.helpers import add_tenant, body, submit

AT = datetime(2026, 5, 15, 9, 30, tzinfo=UTC)


async def test_r10_sva_procedures_are_published_with_authority_and_delay(
    intake: IntakeService,
) -> None:
    listing = await intake.sva_procedures("admiville")
    # SVA by default (L231-1): the civil-status copy (no decision sought) and the report
    # (not a demande) are the demo's only procedures left out.
    assert [(e.code, e.delay) for e in listing.items] == [
        ("inscription-periscolaire", "2 mois"),
        ("reservation-salle", "2 mois"),
    ]
    assert listing.items[1].authority == (
        "Commune d'Admiville — Direction de l'accueil, du courrier et de la location de salles"
    )
    # The catalogue states a delay only where silence decides: none for the others.
    catalogue = {
        p.code: (p.regime.value, p.delay) for p in (await intake.list_procedures("admiville")).items
    }
    assert catalogue["reservation-salle"] == ("sva", "2 mois")
    assert catalogue["subvention-quartier"] == ("svr", "2 mois")
    assert catalogue["acte-etat-civil"] == ("none", None)
    assert catalogue["signalement-voirie"] == ("none", None)


async def test_r10_catalogue_edit_applies_to_new_requests_only(intake: IntakeService) -> None:
    before = await submit(intake, AT)
    await intake.put_procedure(
        "admiville",
        "reservation-salle",
        ProcedureWrite(
            title="Réservation d'une salle municipale",
            service="accueil",
            regime="sva",
            delay={"value": 3, "unit": "weeks"},
        ),
    )
    after = await submit(intake, AT, payload={"salle": "Gymnase"})
    # 15 May 2026 (a Friday) + 3 weeks = Friday 5 June.
    assert after["implicit_decision"]["decision_date"] == "2026-06-05"
    followed = await intake.get_request(before["tracking_code"])
    assert followed.implicit_decision is not None
    assert followed.implicit_decision.decision_date.isoformat() == "2026-07-15"


async def test_new_procedure_and_service_written_by_an_administrator(
    intake: IntakeService,
) -> None:
    await intake.put_service(
        "admiville",
        "urbanisme",
        ServiceWrite(
            designation="Service de l'urbanisme",
            postal_address="1 place de la Mairie, 99999 Admiville",
            email="urbanisme@admiville.example",
            phone="01 99 00 00 09",
        ),
    )
    procedure, created = await intake.put_procedure(
        "admiville",
        "terrasse",
        ProcedureWrite(
            title="Autorisation de terrasse",
            service="urbanisme",
            regime="svr",
            delay={"value": 2, "unit": "months"},
            appeal_text="Recours sous deux mois.",
            extend_to_working_day=True,
            identification="company",
        ),
    )
    assert created
    assert procedure.service.designation == "Service de l'urbanisme"
    listed = await intake.list_procedures("admiville")
    assert "terrasse" in [p.code for p in listed.items]


def test_svr_procedure_without_means_of_appeal_is_refused() -> None:
    with pytest.raises(ValidationError, match="voies de recours"):
        ProcedureWrite(title="Terrasse", service="urbanisme", regime="svr")


async def test_procedure_naming_an_unknown_service_is_refused(intake: IntakeService) -> None:
    with pytest.raises(Problem) as refused:
        await intake.put_procedure("admiville", "x", ProcedureWrite(title="Xyz", service="nulle"))
    assert refused.value.status == 422
    assert refused.value.invalid_params
    assert refused.value.invalid_params[0].name == "service"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("siret", "73282932000075", "clé de contrôle"),
        ("siret", "7328293200007", "14 chiffres"),
        ("siren", "732829321", "clé de contrôle"),
        ("rna", "X751234567", "W suivi"),
        ("siren", "000000000", "clé de contrôle"),  # passes Luhn, numbers nobody
        ("siret", "00000000000000", "000 000 000"),
    ],
)
def test_r7_invalid_identifiers_are_refused_in_french(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Applicant.model_validate({"name": "Société", field: value})


def test_r7_valid_identifiers_are_accepted_and_normalised() -> None:
    # 732 829 320 00074 passes Luhn; La Poste's 356 000 000 00001 fails Luhn but follows
    # La Poste's own rule (digit sum a multiple of 5).
    assert Applicant(name="S", siret="732 829 320 00074").siret == "73282932000074"
    assert Applicant(name="S", siren="732829320").siren == "732829320"
    assert Applicant(name="La Poste", siret="35600000000001").siret == "35600000000001"
    with pytest.raises(ValidationError):
        Applicant(name="La Poste", siret="35600000000002")
    assert Applicant(name="A", rna="w751234567").rna == "W751234567"
    # La Réunion's prefecture numbers its associations W9R…
    assert Applicant(name="A", rna="W9R1003737").rna == "W9R1003737"


def test_r7_a_siret_must_belong_to_the_siren_given() -> None:
    with pytest.raises(ValidationError, match="neuf premiers chiffres") as refused:
        Applicant.model_validate({"name": "S", "siren": "732829320", "siret": "35600000000001"})
    assert refused.value.errors()[0]["loc"] == ("siret",)
    both = Applicant(name="S", siren="732 829 320", siret="732 829 320 00074")
    assert (both.siren, both.siret) == ("732829320", "73282932000074")


@pytest.mark.parametrize("field", ["family_name", "given_name"])
def test_r7_a_blank_name_is_no_name(field: str) -> None:
    """Some people have no given name (FranceConnect then sends an empty one): a blank
    name is absent, and R7 asks for it where the procedure needs it."""
    assert getattr(Applicant.model_validate({"name": "Camille Martin", field: "  "}), field) is None


PERSON = {
    "name": "Camille Martin",
    "family_name": "Martin",
    "given_name": "Camille",
    "email": "camille.martin@example.org",
    "postal_address": {"street": "3 rue des Lilas", "postal_code": "99999", "city": "Admiville"},
}


async def test_r7_person_identification_names_each_missing_field(intake: IntakeService) -> None:
    with pytest.raises(Problem) as refused:
        await submit(intake, AT, procedure="inscription-periscolaire")
    assert refused.value.status == 422
    names = [p.name for p in refused.value.invalid_params or []]
    assert names == ["applicant.family_name", "applicant.given_name", "applicant.postal_address"]
    with pytest.raises(Problem) as blank:
        await submit(
            intake,
            AT,
            procedure="inscription-periscolaire",
            applicant={**PERSON, "family_name": " ", "given_name": ""},
        )
    assert [p.name for p in blank.value.invalid_params or []] == [
        "applicant.family_name",
        "applicant.given_name",
    ]
    created = await submit(intake, AT, procedure="inscription-periscolaire", applicant=PERSON)
    assert created["acknowledgement"]["kind"] == "accuse_reception"


async def test_r7_franceconnect_identifies_a_person_even_with_no_given_name(
    intake: IntakeService,
) -> None:
    # R7 accepts FranceConnect's identification: a citizen signed in through it, who has
    # no given name to give, files as anyone else does. Acting for another by mandate, or
    # not signed in, the four fields are asked as before.
    no_given_name = {"name": "Aminata Diallo", "family_name": "Diallo", "email": "a@example.org"}
    signed_in = Principal(
        Kind.citizen,
        subject="fc-aminata",
        identity={"family_name": "DIALLO", "given_name": "", "birthdate": "1990-03-02"},
    )
    filed = await intake.submit(
        body(procedure="inscription-periscolaire", applicant=no_given_name),
        None,
        now=AT,
        principal=signed_in,
    )
    assert filed.status_code == 201
    with pytest.raises(Problem) as refused:
        await submit(intake, AT, procedure="inscription-periscolaire", applicant=no_given_name)
    assert "applicant.given_name" in [p.name for p in refused.value.invalid_params or []]


async def test_r7_association_must_give_its_rna(intake: IntakeService) -> None:
    with pytest.raises(Problem) as refused:
        await submit(
            intake,
            AT,
            procedure="subvention-quartier",
            applicant={
                "kind": "association",
                "name": "Les Amis du Parc",
                "email": "amis@example.org",
            },
        )
    assert [p.name for p in refused.value.invalid_params or []] == ["applicant.rna"]
    with pytest.raises(Problem) as wrong_kind:
        await submit(intake, AT, procedure="subvention-quartier")
    assert [(p.name, p.reason) for p in wrong_kind.value.invalid_params or []] == [
        ("applicant.kind", "Cette démarche est réservée aux associations.")
    ]


async def test_r7_an_association_of_alsace_moselle_may_give_its_siret_wherever_it_applies(
    intake: IntakeService,
) -> None:
    # Entered in a court's register (local law), it may have no RNA number: its SIREN or
    # SIRET identifies it, in Sélestat as in Admiville; with none, the refusal says both.
    await add_tenant(
        intake.db,
        "selestat",
        "Ville de Sélestat",
        "Europe/Paris",
        "67",
        procedures={"subvention": {"identification": "association"}},
    )
    harmonie = {"kind": "association", "name": "Harmonie de Sélestat", "email": "h@example.org"}
    for tenant, procedure in (("selestat", "subvention"), ("admiville", "subvention-quartier")):
        created = await submit(
            intake,
            AT,
            tenant=tenant,
            procedure=procedure,
            applicant={**harmonie, "siret": "73282932000074"},
        )
        assert created["acknowledgement"]["kind"] == "accuse_reception"
    with pytest.raises(Problem) as refused:
        await submit(intake, AT, tenant="selestat", procedure="subvention", applicant=harmonie)
    [problem] = refused.value.invalid_params or []
    assert (problem.name, problem.reason) == (
        "applicant.rna",
        "Une association s'identifie par son numéro RNA ou, inscrite au registre d'un "
        "tribunal d'Alsace-Moselle, par son SIREN ou son SIRET.",
    )


async def note_on_a_letter(intake: IntakeService, applicant: dict[str, Any]) -> str:
    """A letter from `applicant` for the neighbourhood subsidy, which asks an association's
    RNA number: received with its AR (R1), and the note it leaves for the agents."""
    created = await submit(
        intake,
        AT,
        procedure="subvention-quartier",
        channel="mail",
        contact_preference="letter",
        applicant={
            **applicant,
            "postal_address": {"street": "1 rue Haute", "postal_code": "99999", "city": "X"},
        },
    )
    assert created["acknowledgement"]["kind"] == "accuse_reception"
    followed = await intake.get_request(created["tracking_code"])
    [note] = [h for h in followed.history if h.status == "identification_incomplete"]
    return note.label


async def test_r1_r7_a_letter_lacking_identification_is_received_and_says_what_to_ask(
    intake: IntakeService,
) -> None:
    # R7's identification is what an electronic sender must give (décret 2015-1404 art. 2):
    # a letter lacking it is received all the same (R1); the note says what to ask for, or,
    # from the wrong kind of applicant, what to check (nothing the applicant could add).
    association = {"kind": "association", "name": "Les Amis du Parc"}
    assert await note_on_a_letter(intake, association) == (
        "Identification à compléter pour cette démarche : Une association s'identifie par "
        "son numéro RNA ou, inscrite au registre d'un tribunal d'Alsace-Moselle, par son "
        "SIREN ou son SIRET."
    )
    company = {"kind": "company", "name": "Société X", "siret": "73282932000074"}
    assert await note_on_a_letter(intake, company) == (
        "Demandeur à vérifier pour cette démarche : Cette démarche est réservée aux associations."
    )


async def test_r7_a_person_living_abroad_gives_their_own_countrys_postal_code(
    intake: IntakeService,
) -> None:
    abroad = {"street": "Rue de la Loi 16", "postal_code": "1000", "city": "Bruxelles"}
    created = await submit(
        intake,
        AT,
        procedure="inscription-periscolaire",
        applicant={**PERSON, "postal_address": {**abroad, "country": "Belgique"}},
    )
    assert created["acknowledgement"]["kind"] == "accuse_reception"
    for address, message in (
        (abroad, "Un code postal français comporte 5 chiffres."),  # France by default
        ({**abroad, "country": "Belgique", "postal_code": "10/00"}, "des lettres, des chiffres"),
    ):
        with pytest.raises(ValidationError) as refused:
            Applicant.model_validate({"name": "Camille Martin", "postal_address": address})
        [error] = refused.value.errors()
        assert error["loc"] == ("postal_address",) and error["ctx"]["field"] == "postal_code"
        assert message in error["msg"]


def test_r6_an_answer_by_a_channel_says_in_french_what_it_needs() -> None:
    with pytest.raises(ValidationError) as refused:
        body(contact_preference="letter")
    assert refused.value.errors()[0]["msg"] == (
        "Value error, Pour recevoir la réponse par courrier postal, indiquez une adresse "
        "postale du demandeur."
    )


def test_r6_a_request_received_by_email_keeps_the_address_it_came_from() -> None:
    # Its AE and AR go back to that address: without it there is nowhere to send them.
    with pytest.raises(ValidationError) as refused:
        body(
            channel="email",
            contact_preference="sms",
            applicant={"name": "Camille Martin", "phone": "06 12 34 56 78"},
        )
    [error] = refused.value.errors()
    assert (error["loc"], error["ctx"]["field"]) == (("applicant",), "email")
    body(channel="sms", contact_preference="sms", applicant={"name": "C", "phone": "0612345678"})


async def test_r7_a_request_qualified_later_notes_the_identification_still_to_give(
    intake: IntakeService,
) -> None:
    # An association writes by e-mail without naming a procedure, then without its RNA
    # number: received all the same (R1, its AE then its AR), the file says what to ask.
    association = {"kind": "association", "name": "Les Amis du Parc", "email": "amis@example.org"}
    created = await submit(intake, AT, procedure=None, channel="email", applicant=association)
    later = AT + timedelta(days=1)
    qualified = await intake.qualify(created["tracking_code"], "subvention-quartier", now=later)
    assert [r.kind.value for r in qualified.receipts] == [
        "accuse_enregistrement",
        "accuse_reception",
    ]
    [note] = [h for h in qualified.history if h.status == "identification_incomplete"]
    assert note.label == (
        "Identification à compléter pour cette démarche : Une association s'identifie par "
        "son numéro RNA ou, inscrite au registre d'un tribunal d'Alsace-Moselle, par son "
        "SIREN ou son SIRET."
    )
    complete = await submit(
        intake, AT, procedure=None, channel="email", applicant={**association, "rna": "W751234567"}
    )
    qualified = await intake.qualify(complete["tracking_code"], "subvention-quartier", now=later)
    assert "identification_incomplete" not in [h.status for h in qualified.history]


async def with_teleservice(intake: IntakeService) -> None:
    """Room booking gets its dedicated téléservice."""
    await intake.put_procedure(
        "admiville",
        "reservation-salle",
        ProcedureWrite(
            title="Réservation d'une salle municipale",
            service="accueil",
            teleservice_url="https://demarches.admiville.example/salles",
        ),
    )


async def test_r8_email_or_sms_submission_refused_where_a_dedicated_teleservice_exists(
    intake: IntakeService,
) -> None:
    await with_teleservice(intake)
    for channel in ("email", "sms"):
        with pytest.raises(Problem) as refused:
            await submit(intake, AT, channel=channel)
        assert refused.value.status == 422
        assert "https://demarches.admiville.example/salles" in refused.value.detail
    web = await submit(intake, AT, channel="web")
    assert web["acknowledgement"]["kind"] == "accuse_reception"


async def test_r8_an_email_is_not_qualified_into_a_procedure_with_a_dedicated_teleservice(
    intake: IntakeService,
) -> None:
    # Such an e-mail does not regularly seize the administration (L112-9): no AR, and no
    # silence may run on it; the agent points the sender to the téléservice instead.
    await with_teleservice(intake)
    mail = await submit(intake, AT, procedure=None, channel="email")
    with pytest.raises(Problem) as refused:
        await intake.qualify(mail["tracking_code"], "reservation-salle", now=AT)
    assert refused.value.status == 422
    assert [p.name for p in refused.value.invalid_params or []] == ["procedure"]
    assert "https://demarches.admiville.example/salles" in refused.value.detail
    still = await intake.get_request(mail["tracking_code"])
    assert still.procedure is None and still.implicit_decision is None
    assert [r.kind.value for r in still.receipts] == ["accuse_enregistrement"]
    # Through this platform's own web form, as at submission, it may be qualified.
    form = await submit(intake, AT, procedure=None, channel="web")
    qualified = await intake.qualify(form["tracking_code"], "reservation-salle", now=AT)
    assert sorted(r.kind.value for r in qualified.receipts) == [
        "accuse_enregistrement",
        "accuse_reception",
    ]


async def test_unknown_codes_asked_by_the_thousand_do_not_grow_the_cache(
    intake: IntakeService,
) -> None:
    # Absences are cached too (each costs a read otherwise): the cache stays bounded.
    intake.catalogue_max = 8
    for n in range(30):
        with pytest.raises(Problem) as unknown:
            await submit(intake, AT, procedure=f"inconnue-{n}")
        assert unknown.value.status == 404
        assert len(intake._catalogue) <= 8
    assert (await submit(intake, AT))["acknowledgement"] is not None


def test_r5_a_service_without_a_phone_number_is_refused() -> None:
    # The AR names the service's designation, postal address and phone (the e-mail if any).
    with pytest.raises(ValidationError) as refused:
        ServiceWrite.model_validate(
            {"designation": "Service des sports", "postal_address": "1 place de la Mairie"}
        )
    assert [e["loc"] for e in refused.value.errors()] == [("phone",)]
