"""Receipt of requests and the acknowledgements' content (R1–R6, R22, R23).

Every date below is computed by hand in the test, from the instant it submits at.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from guichet_intake import notices, repository, service
from guichet_intake.deadlines import Deadline
from guichet_intake.models import outgoing_transfers, receipts, requests
from guichet_intake.schemas import (
    DelayUnit,
    DelayWrite,
    ProcedureWrite,
    Regime,
    TransferCreate,
)
from guichet_intake.service import IntakeService
from guichet_intake.signing import SigningKey, sign
from guichet_notifications.models import deliveries
from guichet_notifications.models import metadata as notifications_metadata
from guichet_notifications.service import Deliveries
from guichet_notifications.transports import MailboxFolder
from guichet_plumbing import tables
from guichet_plumbing.auth import Kind, Principal
from guichet_plumbing.db import Database
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.problems import Problem
from tests.intake.helpers import (
    CAMILLE,
    add_tenant,
    body,
    completed_after_pieces,
    counted,
    outbox_events,
    submit,
)

JEAN_DUPONT = {
    "name": "Jean Dupont",
    "postal_address": {"street": "2 rue Haute", "postal_code": "99999", "city": "Admiville"},
}


async def test_r5_sva_receipt_states_date_service_and_attestation(intake: IntakeService) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 30, tzinfo=UTC))
    ack = created["acknowledgement"]
    assert ack["kind"] == "accuse_reception"
    assert ack["reception_date"] == "2026-05-15"
    assert ack["service"] == {
        "code": "accueil",
        "designation": "Direction de l'accueil, du courrier et de la location de salles",
        "postal_address": "Hôtel de ville, 1 place de la Mairie, 99999 Admiville",
        "email": "accueil@admiville.example",
        "phone": "01 99 00 00 03",
    }
    # 15 May + 2 months: deemed accepted at the end of 15 July.
    assert ack["implicit_decision"]["decision_date"] == "2026-07-15"
    text = " ".join(ack["mentions"])
    assert "reçue le 15 mai 2026" in text
    assert (
        "réputée acceptée le 15 juillet 2026 à minuit (soit à compter du 16 juillet 2026 à 0 h)"
        in text
    )
    assert "Direction de l'accueil, du courrier et de la location de salles" in text
    assert "Hôtel de ville, 1 place de la Mairie, 99999 Admiville" in text
    assert "attestation d'acceptation implicite" in text
    assert "accueil@admiville.example" in text
    assert "01 99 00 00 03" in text


async def test_r5_svr_receipt_states_rejection_date_and_means_of_appeal(
    intake: IntakeService,
) -> None:
    # Received 31 December: two months end on the last day of February (28 in 2027).
    created = await submit(
        intake,
        datetime(2026, 12, 31, 10, 0, tzinfo=UTC),
        procedure="subvention-quartier",
        applicant={
            "kind": "association",
            "name": "Les Amis du Parc",
            "rna": "W751234567",
            "email": "amis.parc@example.org",
        },
    )
    ack = created["acknowledgement"]
    assert ack["implicit_decision"]["regime"] == "svr"
    assert ack["implicit_decision"]["decision_date"] == "2027-02-28"
    text = " ".join(ack["mentions"])
    assert "réputée rejetée le 28 février 2027 à minuit" in text
    assert "recours" in text
    assert "tribunal administratif" in text
    assert "attestation" not in text
    assert "Statuts de l'association" in text, "required pieces are listed"


async def test_r2_receipt_is_signed_and_verifiable(intake: IntakeService) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 30, tzinfo=UTC))
    token = created["acknowledgement"]["token"]
    checked = await intake.verify(token)
    assert checked.authentic
    assert checked.receipt is not None
    assert checked.receipt["reception_date"] == "2026-05-15"
    assert checked.receipt["tracking_code"] == created["tracking_code"]
    head, payload, signature = token.split(".")
    forged = ".".join(
        [head, payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1], signature]
    )
    assert not (await intake.verify(forged)).authentic
    jwks = await intake.jwks()
    assert [k["kty"] for k in jwks["keys"]] == ["OKP"]


async def test_r2_rotated_key_signs_new_receipts_and_old_ones_still_verify(
    intake: IntakeService,
) -> None:
    first = await submit(intake, datetime(2026, 5, 15, 9, 30, tzinfo=UTC))
    kid = await intake.rotate_key("admiville")
    second = await submit(
        intake, datetime(2026, 5, 15, 9, 31, tzinfo=UTC), payload={"salle": "Gymnase"}
    )
    assert (await intake.verify(first["acknowledgement"]["token"])).authentic
    assert (await intake.verify(second["acknowledgement"]["token"])).authentic
    header = second["acknowledgement"]["token"].split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"] == kid
    assert len((await intake.jwks())["keys"]) == 2


async def _signing_key(intake: IntakeService, tenant: str, index: int = 0) -> SigningKey:
    async with intake.db.sessions() as session:
        row = (await repository.signing_keys_for(session, tenant))[index]
    return SigningKey(kid=row.kid, private_pem=row.private_pem, created_at=row.created_at)


async def test_r2_a_retired_key_vouches_only_for_what_is_kept_on_record(
    intake: IntakeService,
) -> None:
    # Keys are rotated when one leaks, and whoever holds a leaked key signs anything, dated
    # as they please. The AR issued at 09:30 is kept word for word: still authentic after
    # the rotation at 10:00. The same AR altered, whether dated before the rotation or
    # after, is not.
    created = await submit(intake, datetime(2026, 5, 15, 9, 30, tzinfo=UTC))
    genuine = (await intake.verify(created["acknowledgement"]["token"])).receipt
    assert genuine is not None
    leaked = await _signing_key(intake, "admiville")
    assert (
        await intake.verify(sign({**genuine, "applicant_name": "Jean Dupont"}, leaked))
    ).authentic
    await intake.rotate_key("admiville", now=datetime(2026, 5, 15, 10, 0, tzinfo=UTC))
    assert (await intake.verify(created["acknowledgement"]["token"])).authentic
    for forged in (
        {**genuine, "applicant_name": "Jean Dupont"},
        {**genuine, "issued_at": "2026-05-15T09:00:00Z"},
        {**genuine, "issued_at": "2026-06-01T08:00:00Z"},
        {**genuine, "receipt_id": str(uuid.uuid4())},
    ):
        assert not (await intake.verify(sign(forged, leaked))).authentic, forged


async def _kept_hand_over(intake: IntakeService) -> tuple[dict[str, Any], str]:
    """A request transferred to the prefecture, its signed hand-over kept to be sent."""
    created = await submit(intake, datetime.now(UTC))

    async def not_sent_yet(*_: object) -> None:
        return None

    intake._deliver = not_sent_yet  # type: ignore[method-assign]  # kept, to be sent
    await intake.transfer(
        created["tracking_code"],
        TransferCreate(
            administration_name="Préfecture",
            administration_url="https://transmissions.prefecture.example/in",
            reason="Compétence de l'État.",
        ),
    )
    async with intake.db.sessions() as session:
        token = (await session.execute(sa.select(outgoing_transfers.c.token))).scalar_one()
    return created, token


async def test_r12_a_retired_key_vouches_for_a_hand_over_only_while_it_is_kept_to_be_sent(
    intake: IntakeService,
) -> None:
    # A hand-over bears no signing date (a retry sends the same bytes): once its key is
    # retired, only the copy kept to be sent shows it is genuine; one forged with the
    # leaked key is not authentic.
    _, token = await _kept_hand_over(intake)
    checked = await intake.verify(token)
    assert checked.receipt is not None
    old = await _signing_key(intake, "admiville")
    await intake.rotate_key("admiville")
    assert (await intake.verify(token)).authentic
    forged = sign({**checked.receipt, "reason": "Compétence de la région."}, old)
    assert not (await intake.verify(forged)).authentic
    async with intake.db.transaction() as session:
        await session.execute(outgoing_transfers.delete())
    assert not (await intake.verify(token)).authentic


async def test_r2_a_key_vouches_only_for_its_own_collectivite(intake: IntakeService) -> None:
    # On a platform hosting many collectivités, one's key (leaked, say) must not make a
    # receipt in another's name authentic.
    created = await submit(intake, datetime(2026, 5, 15, 9, 30, tzinfo=UTC))
    genuine = (await intake.verify(created["acknowledgement"]["token"])).receipt
    assert genuine is not None and genuine["tenant"] == "admiville"
    await add_tenant(intake.db, "autreville", "Ville d'Autreville", "Europe/Paris", procedures={})
    await intake.rotate_key("autreville")
    async with intake.db.sessions() as session:
        (row,) = await repository.signing_keys_for(session, "autreville")
    other = SigningKey(kid=row.kid, private_pem=row.private_pem, created_at=row.created_at)
    assert not (await intake.verify(sign(genuine, other))).authentic
    # The same key signs its own collectivité's receipts as authentic.
    assert (await intake.verify(sign({**genuine, "tenant": "autreville"}, other))).authentic


async def test_r2_a_receipt_signed_before_it_named_its_collectivite_still_verifies(
    intake: IntakeService,
) -> None:
    # Issued before 1 December 2026: the same document without `tenant`, by its own key.
    created = await submit(intake, datetime(2026, 5, 15, 9, 30, tzinfo=UTC))
    genuine = (await intake.verify(created["acknowledgement"]["token"])).receipt
    assert genuine is not None
    legacy = {k: v for k, v in genuine.items() if k != "tenant"}
    async with intake.db.sessions() as session:
        (row,) = await repository.signing_keys_for(session, "admiville")
    key = SigningKey(kid=row.kid, private_pem=row.private_pem, created_at=row.created_at)
    token = sign(legacy, key)
    async with intake.db.transaction() as session:
        await session.execute(
            receipts.update()
            .where(receipts.c.id == uuid.UUID(legacy["receipt_id"]))
            .values(document=legacy, token=token)
        )
    assert (await intake.verify(token)).authentic, "old receipts must still verify"


async def test_r2_a_receipt_stored_before_it_named_its_collectivite_can_still_be_read(
    intake: IntakeService,
) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 30, tzinfo=UTC))
    async with intake.db.transaction() as session:
        stored = (await session.execute(sa.select(receipts))).one()
        document = {k: v for k, v in stored.document.items() if k != "tenant"}
        await session.execute(
            receipts.update().where(receipts.c.id == stored.id).values(document=document)
        )
    doc, _ = await intake.receipt(stored.id)
    assert doc.tracking_code == created["tracking_code"]


# -- R12: a pending transfer ignores what happens to the request meanwhile ------------------


async def test_r1_document_delivery_procedure_owes_no_receipt(intake: IntakeService) -> None:
    # On paper: L112-3's exemption for the delivery of a document provided by law applies.
    created = await submit(
        intake,
        datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
        procedure="acte-etat-civil",
        channel="mail",
        contact_preference="letter",
        applicant=JEAN_DUPONT,
    )
    assert created["acknowledgement"] is None
    assert created["receipts"] == []
    assert await outbox_events(intake.db, "intake.receipt.issued.v1") == []


async def test_r1_electronic_send_of_document_delivery_gets_receipt(
    intake: IntakeService,
) -> None:
    """L112-11 last paragraph: L112-3 (and its exemption) does not apply to electronic sends;
    every one gets an AR unless abusive. Needs the submission path to owe an AR when
    `owes_acknowledgement(procedure, data.channel)`."""
    created = await submit(
        intake, datetime(2026, 3, 2, 8, 0, tzinfo=UTC), procedure="acte-etat-civil"
    )
    ack = created["acknowledgement"]
    assert ack is not None
    assert ack["kind"] == "accuse_reception"
    assert "reçue le 2 mars 2026" in ack["mentions"][0]
    assert "Cette demande ne peut pas donner lieu à une décision implicite." in ack["mentions"]


async def test_r1_free_form_email_qualified_as_document_delivery_gets_receipt(
    intake: IntakeService,
) -> None:
    # An e-mail of Monday 2 March 2026 that an agent qualifies as a civil-status copy on
    # 4 March: electronic, so the AR is owed all the same (L112-11); a letter gets none.
    email = await submit(
        intake, datetime(2026, 3, 2, 8, 0, tzinfo=UTC), procedure=None, channel="email"
    )
    letter = await submit(
        intake,
        datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
        procedure=None,
        channel="mail",
        contact_preference="letter",
        applicant=JEAN_DUPONT,
    )
    at = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    by_email = await intake.qualify(email["tracking_code"], "acte-etat-civil", now=at)
    by_letter = await intake.qualify(letter["tracking_code"], "acte-etat-civil", now=at)
    assert [r.kind.value for r in by_email.receipts] == [
        "accuse_enregistrement",
        "accuse_reception",
    ]
    assert "reçue le 2 mars 2026" in by_email.receipts[-1].mentions[0]
    assert by_letter.receipts == []
    assert (await intake.overdue("admiville", now=datetime(2026, 3, 20, tzinfo=UTC))).count == 0


async def test_r3_unknown_procedure_gets_instant_registration_then_r4_receipt_on_qualification(
    intake: IntakeService,
) -> None:
    # A free-form e-mail on Thursday 7 May 2026: AE at once, AR owed by 14 May.
    created = await submit(
        intake, datetime(2026, 5, 7, 14, 0, tzinfo=UTC), procedure=None, channel="email"
    )
    assert created["acknowledgement"]["kind"] == "accuse_enregistrement"
    mentions = created["acknowledgement"]["mentions"]
    assert mentions[0] == "Votre envoi a été enregistré le 7 mai 2026 par Commune d'Admiville."
    assert mentions[2].endswith("vous sera adressé au plus tard le 14 mai 2026.")
    assert created["implicit_decision"] is None
    overdue = await intake.overdue("admiville", now=datetime(2026, 5, 15, 8, 0, tzinfo=UTC))
    assert [o.tracking_code for o in overdue.items] == [created["tracking_code"]]
    assert overdue.items[0].receipt_due_on == date(2026, 5, 14)
    on_time = await intake.overdue("admiville", now=datetime(2026, 5, 14, 8, 0, tzinfo=UTC))
    assert on_time.count == 0

    qualified = await intake.qualify(
        created["tracking_code"], "reservation-salle", now=datetime(2026, 5, 11, 9, 0, tzinfo=UTC)
    )
    kinds = [r.kind.value for r in qualified.receipts]
    assert kinds == ["accuse_enregistrement", "accuse_reception"]
    # The SVA clock counts from reception (7 May): 7 July.
    assert qualified.implicit_decision is not None
    assert qualified.implicit_decision.decision_date == date(2026, 7, 7)
    assert (await intake.overdue("admiville", now=datetime(2026, 5, 20, tzinfo=UTC))).count == 0


async def put_badge_parking(intake: IntakeService, **settings: Any) -> None:
    """An SVA procedure of Admiville's accueil, with what a test sets of its clock."""
    await intake.put_procedure(
        "admiville",
        "badge-parking",
        ProcedureWrite(
            title="Badge de stationnement", service="accueil", regime=Regime.sva, **settings
        ),
    )


async def test_r5_an_ar_issued_after_a_short_svas_date_says_the_acceptance_was_born(
    intake: IntakeService,
) -> None:
    # An e-mail of Monday 4 May 2026, qualified on Monday 11 May (within R4's 7 days) into a
    # procedure whose SVA runs 3 days: deemed accepted at the end of 7 May, before the AR.
    await put_badge_parking(intake, delay=DelayWrite(value=3, unit=DelayUnit.days))
    created = await submit(
        intake, datetime(2026, 5, 4, 9, 0, tzinfo=UTC), procedure=None, channel="email"
    )
    qualified = await intake.qualify(
        created["tracking_code"], "badge-parking", now=datetime(2026, 5, 11, 9, 0, tzinfo=UTC)
    )
    mentions = qualified.receipts[-1].mentions
    assert mentions[3] == (
        "En l'absence de réponse de l'administration dans un délai de 3 jours, cette demande "
        "a été réputée acceptée le 7 mai 2026 à minuit (soit à compter du 8 mai 2026 à 0 h), "
        "si votre dossier était complet à cette date."
    )
    assert mentions[4] == (
        "Si votre demande a été acceptée implicitement, vous pouvez obtenir une attestation "
        "d'acceptation implicite."
    )
    # As the AR says: at once, not only after the scheduler's next pass has recorded it.
    attestation = await intake.attestation(
        created["tracking_code"], now=datetime(2026, 5, 11, 9, 0, 1, tzinfo=UTC)
    )
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "implicitly_accepted"
    assert followed.receipts[-1].id == attestation


async def test_r10_a_procedure_extending_its_delay_states_the_day_after_the_holiday_on_the_ar(
    intake: IntakeService,
) -> None:
    # Received Sunday 1 March 2026, 2 months: Friday 1 May, Labour Day. The procedure extends
    # its delay past Sundays and holidays: Saturday 2 May, which the AR states.
    await put_badge_parking(intake, extend_to_working_day=True)
    created = await submit(
        intake, datetime(2026, 3, 1, 9, 0, tzinfo=UTC), procedure="badge-parking"
    )
    ack = created["acknowledgement"]
    assert ack["implicit_decision"]["decision_date"] == "2026-05-02"
    assert (
        "réputée acceptée le 2 mai 2026 à minuit (soit à compter du 3 mai 2026 à 0 h)"
        in " ".join(ack["mentions"])
    )


async def test_r3_paper_mail_without_procedure_gets_no_electronic_registration(
    intake: IntakeService,
) -> None:
    created = await submit(
        intake,
        datetime(2026, 5, 7, 14, 0, tzinfo=UTC),
        procedure=None,
        channel="mail",
        contact_preference="letter",
        applicant={
            "name": "Jean Dupont",
            "postal_address": {
                "street": "2 rue Haute",
                "postal_code": "99999",
                "city": "Admiville",
            },
        },
    )
    assert created["acknowledgement"] is None
    overdue = await intake.overdue("admiville", now=datetime(2026, 5, 15, tzinfo=UTC))
    assert overdue.count == 1, "the AR is still owed within 7 days (R4)"


async def test_r22_request_entered_at_counter_gets_same_receipt_and_deadline(
    intake: IntakeService,
) -> None:
    at = datetime(2026, 5, 15, 9, 30, tzinfo=UTC)
    web = await submit(intake, at)
    counter = await submit(
        intake,
        at,
        channel="counter",
        contact_preference="letter",
        entered_by="agent-042",
        applicant={
            "name": "Jean Dupont",
            "postal_address": {
                "street": "2 rue Haute",
                "postal_code": "99999",
                "city": "Admiville",
            },
        },
    )
    assert counter["channel"] == "counter"
    for key in ("reception_date", "service", "implicit_decision"):
        assert counter["acknowledgement"][key] == web["acknowledgement"][key]


LETTER = {
    "channel": "mail",
    "contact_preference": "letter",
    "applicant": {
        "name": "Jean Dupont",
        "postal_address": {"street": "2 rue Haute", "postal_code": "99999", "city": "Admiville"},
    },
}


async def test_r22_a_letter_entered_later_is_received_the_day_it_arrived(
    intake: IntakeService,
) -> None:
    # The letter arrived on Friday 15 May 2026 and is entered on Tuesday 19 May: received
    # 15 May, deemed accepted at the end of 15 July (not 19 July); the AR was due within
    # 7 days of its arrival, by 22 May (R4).
    created = await submit(
        intake, datetime(2026, 5, 19, 8, 0, tzinfo=UTC), received_on=date(2026, 5, 15), **LETTER
    )
    assert created["reception_date"] == "2026-05-15"
    assert created["acknowledgement"]["implicit_decision"]["decision_date"] == "2026-07-15"
    assert "Votre demande a été reçue le 15 mai 2026." in created["acknowledgement"]["mentions"]
    async with intake.db.sessions() as session:
        row = await repository.get_request_by_code(session, created["tracking_code"])
    assert (row.first_received_on, row.received_at) == (
        date(2026, 5, 15),
        datetime(2026, 5, 19, 8, 0, tzinfo=UTC),  # when it was entered, for the record
    )


async def sent_by_the_sender(intake: IntakeService, now: datetime, **changes: Any) -> Problem:
    """An e-mail its sender dates itself: refused (R22), the refusal returned."""
    with pytest.raises(Problem) as refused:
        await intake.submit(
            body(channel="email", **changes), None, now=now, principal=Principal(Kind.anonymous)
        )
    return refused.value


async def test_r22_r23_a_courriel_read_late_is_received_the_day_it_arrived(
    intake: IntakeService,
) -> None:
    # An e-mail reached the mairie's mailbox on Friday 15 May 2026; the mailbox connector,
    # down for the weekend, reads it on Monday 18 May: received 15 May, deemed accepted at
    # the end of 15 July, not 18 July. The sender cannot date its own e-mail (R22).
    self_dated = await sent_by_the_sender(
        intake, datetime(2026, 5, 18, 7, 0, tzinfo=UTC), received_on=date(2026, 5, 15)
    )
    assert self_dated.status == 403
    created = await submit(
        intake,
        datetime(2026, 5, 18, 7, 0, tzinfo=UTC),
        channel="email",
        received_on=date(2026, 5, 15),
    )
    assert created["reception_date"] == "2026-05-15"
    assert "Votre demande a été reçue le 15 mai 2026." in created["acknowledgement"]["mentions"]
    assert created["acknowledgement"]["implicit_decision"]["decision_date"] == "2026-07-15"


async def test_r3_the_ae_of_a_courriel_read_late_says_when_it_came_and_when_registered(
    intake: IntakeService,
) -> None:
    # A free-form e-mail reached the mailbox on Friday 15 May 2026, read on Monday 18 May:
    # received 15 May, registered 18 May; the AR is owed by 22 May (R4: 15 May + 7 days).
    created = await submit(
        intake,
        datetime(2026, 5, 18, 7, 0, tzinfo=UTC),
        procedure=None,
        channel="email",
        received_on=date(2026, 5, 15),
    )
    mentions = created["acknowledgement"]["mentions"]
    assert mentions[0] == (
        "Votre envoi, reçu le 15 mai 2026, a été enregistré le 18 mai 2026 par Commune d'Admiville."
    )
    assert mentions[2].endswith("vous sera adressé au plus tard le 22 mai 2026.")
    # Read on Monday 25 May, its seven days have run out: no date already past is promised.
    later = await submit(
        intake,
        datetime(2026, 5, 25, 7, 0, tzinfo=UTC),
        procedure=None,
        channel="email",
        received_on=date(2026, 5, 15),
        payload={"autre": True},
    )
    assert later["acknowledgement"]["mentions"][2].endswith(
        "vous sera adressé dans les meilleurs délais."
    )
    # Both AEs came after R3's working day: operators see the connector's lag; an e-mail
    # read the day it came is not counted.
    await submit(intake, datetime(2026, 5, 25, 8, 0, tzinfo=UTC), procedure=None, channel="email")
    assert (counted(intake.read_late, channel="email"), counted(intake.read_late)) == (2, 2)


async def test_r13_a_request_handed_over_keeps_its_first_reception_for_svr(
    intake: IntakeService,
) -> None:
    # The préfecture received on 15 May 2026 a request for a neighbourhood grant (SVR, two
    # months) and hands it over on Tuesday 2 June: SVR runs from 15 May (rejected at the
    # end of 15 July), the AR names 2 June as the day it reached the commune.
    association = {"kind": "association", "name": "Les Amis du Parc", "rna": "W751234567"}
    handed = {**LETTER, "applicant": {**LETTER["applicant"], **association}}
    created = await submit(
        intake,
        datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
        procedure="subvention-quartier",
        first_received_on=date(2026, 5, 15),
        **handed,
    )
    assert created["reception_date"] == "2026-06-02"
    assert created["implicit_decision"]["decision_date"] == "2026-07-15"


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"received_on": date(2026, 5, 20)}, "received_on", "Date future"),
        ({"received_on": date(2025, 5, 17)}, "received_on", "Date de plus d'un an"),
        # The first administration's day may be tomorrow (a time zone ahead), not later.
        ({"first_received_on": date(2026, 5, 21)}, "first_received_on", "Date postérieure"),
    ],
)
async def test_r22_a_declared_reception_date_must_be_possible(
    intake: IntakeService, changes: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(Problem) as refused:
        await submit(intake, datetime(2026, 5, 19, 8, 0, tzinfo=UTC), **LETTER, **changes)
    assert refused.value.status == 422
    [param] = refused.value.invalid_params or []
    assert param.name == field and param.reason.startswith(reason)


def test_r22_a_request_made_online_is_never_dated_by_hand() -> None:
    with pytest.raises(ValidationError) as online:
        body(received_on=date(2026, 5, 15))
    assert [e["loc"] for e in online.value.errors()] == [("received_on",)]
    with pytest.raises(ValidationError) as before:
        body(**LETTER, received_on=date(2026, 5, 15), first_received_on=date(2026, 5, 17))
    assert [e["loc"] for e in before.value.errors()] == [("first_received_on",)]


async def test_r22_counter_request_without_email_is_received(intake: IntakeService) -> None:
    # R7's four identifiers are for electronic sends (décret 2015-1404 art. 2): at the
    # counter, an agent enters the request of a citizen who has no e-mail address.
    person = {**JEAN_DUPONT, "family_name": "Dupont", "given_name": "Jean"}
    counter = await submit(
        intake,
        datetime(2026, 5, 15, 9, 30, tzinfo=UTC),
        procedure="inscription-periscolaire",
        channel="counter",
        contact_preference="letter",
        entered_by="agent-042",
        applicant=person,
    )
    assert counter["acknowledgement"]["kind"] == "accuse_reception"
    assert counter["acknowledgement"]["reception_date"] == "2026-05-15"
    with pytest.raises(Problem) as online:
        await intake.submit(
            body(
                procedure="inscription-periscolaire",
                contact_preference="letter",
                applicant=person,
            ),
            None,
        )
    assert online.value.status == 422
    assert online.value.invalid_params
    assert [p.name for p in online.value.invalid_params] == ["applicant.email"]


async def test_reception_date_is_local_23h30_utc_in_winter_is_next_day_in_paris(
    intake: IntakeService,
) -> None:
    # 23:30 UTC on 14 January is 00:30 on 15 January in Paris (UTC+1).
    created = await submit(intake, datetime(2026, 1, 14, 23, 30, tzinfo=UTC))
    assert created["reception_date"] == "2026-01-15"
    assert created["received_at"] == "2026-01-14T23:30:00Z"
    # 15 January + 2 months = 15 March.
    assert created["acknowledgement"]["implicit_decision"]["decision_date"] == "2026-03-15"


async def test_r23_request_stored_and_events_staged_in_one_commit(
    intake: IntakeService,
) -> None:
    created = await submit(intake, datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    async with intake.db.sessions() as session:
        stored = (
            await session.execute(
                sa.select(requests).where(requests.c.id == uuid.UUID(created["id"]))
            )
        ).one()
    assert stored.tracking_code == created["tracking_code"]
    received, issued = await outbox_events(intake.db)
    assert received.type == "intake.request.received.v1"
    assert received.subject == created["id"]
    assert issued.type == "intake.receipt.issued.v1"
    assert issued.data["mentions"] == created["acknowledgement"]["mentions"]


async def test_r23_nothing_stored_when_the_request_is_refused(intake: IntakeService) -> None:
    with pytest.raises(Problem) as refused:
        await intake.submit(body(procedure="signalement-voirie"), None)
    assert refused.value.status == 422
    assert refused.value.invalid_params
    assert refused.value.invalid_params[0].name == "location"
    async with intake.db.sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(requests)) == 0
    assert await outbox_events(intake.db) == []


async def test_r6_receipt_goes_to_the_sender_address(intake: IntakeService, data_dir: Path) -> None:
    # Camille prefers answers by post, but the receipt of her web send goes to her e-mail.
    await submit(
        intake,
        datetime(2026, 6, 1, 12, 0, tzinfo=UTC),
        contact_preference="letter",
        applicant={**CAMILLE, "postal_address": JEAN_DUPONT["postal_address"]},
    )
    db = Database(f"sqlite:///{data_dir / 'notifications.sqlite3'}")
    await db.create_all(notifications_metadata, tables.metadata)
    try:
        mails = Deliveries(
            db,
            MailboxFolder(data_dir / "mailbox"),
            ServiceMetrics("r6"),
            sender="Guichet <guichet@admiville.example>",
            poll_interval=1,
            max_attempts=1,
        )
        handlers = {
            "intake.request.received.v1": mails.on_request_received,
            "intake.receipt.issued.v1": mails.on_receipt_issued,
        }
        for event in await outbox_events(intake.db):
            async with db.transaction() as session:
                await handlers[event.type](session, event)
        async with db.sessions() as session:
            [delivery] = (await session.execute(sa.select(deliveries))).all()
    finally:
        await db.dispose()
    assert delivery.kind == "accuse_reception"
    assert (delivery.channel, delivery.recipient) == ("email", "camille.martin@example.org")


async def test_same_idempotency_key_replays_and_other_body_conflicts(
    intake: IntakeService,
) -> None:
    first = await intake.submit(body(), "key-1")
    again = await intake.submit(body(), "key-1")
    assert again == first
    with pytest.raises(Problem) as conflict:
        await intake.submit(body(channel="email"), "key-1")
    assert conflict.value.status == 409
    async with intake.db.sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(requests)) == 1


async def test_an_idempotency_key_belongs_to_its_caller(intake: IntakeService) -> None:
    await add_tenant(intake.db, "autreville", "Ville d'Autreville", "Europe/Paris", procedures={})
    here = Principal(Kind.client, "portail-admiville", tenant="admiville")
    there = Principal(Kind.client, "portail-autreville", tenant="autreville")
    first = await intake.submit(body(), "1", principal=here)
    # Another collectivité's front end counting its keys from 1 too: a new request.
    other = await intake.submit(
        body(tenant="autreville", procedure=None, channel="email"), "1", principal=there
    )
    assert other.status_code == 201
    assert json.loads(other.body)["tracking_code"] != json.loads(first.body)["tracking_code"]
    # The same body under the same key from another caller is not that caller's answer.
    anonymous = await intake.submit(body(), "1", principal=Principal(Kind.anonymous))
    assert json.loads(anonymous.body)["tracking_code"] != json.loads(first.body)["tracking_code"]
    assert await intake.submit(body(), "1", principal=here) == first
    async with intake.db.sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(requests)) == 3


async def test_unknown_tenant_and_procedure_name_the_field(intake: IntakeService) -> None:
    for changes, field in (({"tenant": "nulle-part"}, "tenant"), ({"procedure": "x"}, "procedure")):
        with pytest.raises(Problem) as refused:
            await intake.submit(body(**changes), None)
        assert refused.value.status == 404
        assert refused.value.invalid_params
        assert refused.value.invalid_params[0].name == field


def test_tracking_codes_are_unguessable_and_forgiving_when_read_aloud() -> None:
    codes = {service.new_tracking_code() for _ in range(1000)}
    assert len(codes) == 1000
    code = codes.pop()
    assert len(code) == 19
    assert code.count("-") == 3
    assert service.normalise_tracking_code(code.lower().replace("-", " ")) == code
    assert service.normalise_tracking_code("o1il-0000-0000-0000") == "0111-0000-0000-0000"


def test_french_dates() -> None:
    assert service.french_date(date(2026, 7, 1)) == "1er juillet 2026"
    assert service.french_date(date(2027, 2, 28)) == "28 février 2027"


async def test_r5_receipt_of_a_request_lists_the_procedure_required_information(
    intake: IntakeService,
) -> None:
    """Needs the submission path's AR to pass the procedure's `required_information`."""
    created = await submit(intake, datetime(2026, 5, 15, 9, 30, tzinfo=UTC))
    assert (
        "Informations exigées pour ce dossier : Salle souhaitée ; Date et horaires ; "
        "Nombre de personnes." in created["acknowledgement"]["mentions"]
    )


def test_r5_receipt_lists_required_information_next_to_required_pieces() -> None:
    mentions = notices.acknowledgement(
        reception_date=date(2026, 5, 15),
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        service=notices.Service("Accueil", "1 place de la Mairie, 99999 Admiville", None, None),
        is_demande=True,
        regime="sva",
        delay="2 mois",
        deadline=Deadline("running", date(2026, 5, 15), date(2026, 7, 15)),
        appeal_text=None,
        required_pieces=["Attestation d'assurance"],
        required_information=["Salle souhaitée", "Date et horaires"],
        issued_on=date(2026, 5, 15),
    )
    assert "Pièces exigées pour ce dossier : Attestation d'assurance." in mentions
    assert "Informations exigées pour ce dossier : Salle souhaitée ; Date et horaires." in mentions


async def test_a_tenant_in_an_unknown_time_zone_is_refused_when_written(
    intake: IntakeService,
) -> None:
    # Every legal date is local to the tenant: the zone is checked once, up front.
    async with intake.db.transaction() as session:
        with pytest.raises(ZoneInfoNotFoundError):
            await repository.upsert_tenant(session, "nulleville", "Nulle", "Europe/Nulle-Part")


async def test_r3_a_tenant_in_a_territory_without_a_holiday_calendar_is_refused_when_written(
    intake: IntakeService,
) -> None:
    # Working days (R3) and extensions follow the territory's holidays: a territory the
    # calendar does not know, or whose communes keep another time than the tenant's zone,
    # is refused once, when written, not at a submission.
    async with intake.db.transaction() as session:
        for unknown in ("75", "", "Zone A", "Alsace-Moselle"):
            with pytest.raises(ValueError, match=f"unknown territory '{unknown}'"):
                await repository.upsert_tenant(session, "x", "X", "Europe/Paris", unknown)
        with pytest.raises(ValueError, match="keeps the time of America/Martinique"):
            await repository.upsert_tenant(session, "x", "X", "Europe/Paris", "972")
        with pytest.raises(ValueError, match="keeps the time of Europe/Paris"):
            await repository.upsert_tenant(session, "x", "X", "America/Martinique", "6AE")
        # Saint-Martin keeps Guadeloupe's time: the zone agrees, its calendar is its own.
        assert await repository.upsert_tenant(
            session, "marigot", "Saint-Martin", "America/Guadeloupe", "MF"
        )
        # By its code or its name, stored as its code (Bas-Rhin shares Alsace's calendar);
        # none given, the overseas territory whose zone the tenant keeps, or metropolitan.
        written = {
            "strasbourg": ("Europe/Paris", "67", "6AE"),
            "fort-de-france": ("America/Martinique", "Martinique", "972"),
            "saint-denis": ("Indian/Reunion", None, "974"),
            "pointe-a-pitre": ("America/Guadeloupe", None, "971"),
            "paris": ("Europe/Paris", None, None),
        }
        for code, (zone, territory, _) in written.items():
            assert await repository.upsert_tenant(session, code, code, zone, territory)
        stored = {code: (await repository.get_tenant(session, code)).territory for code in written}
        assert stored == {code: expected for code, (_, _, expected) in written.items()}


async def test_r2_verification_says_which_document_the_key_signed(
    intake: IntakeService,
) -> None:
    # A transfer's hand-over is signed with the collectivité's key too (the receiving
    # administration checks it here): the answer says it is a transfer, not a receipt.
    created, token = await _kept_hand_over(intake)
    transfer = await intake.verify(token)
    assert (transfer.authentic, transfer.document) == (True, "transmission")
    genuine = (await intake.get_request(created["tracking_code"])).receipts[0].token
    receipt = await intake.verify(genuine)
    assert (receipt.authentic, receipt.document) == (True, "accuse_reception")


async def test_r5_the_acknowledgement_followed_is_the_ar_in_force(intake: IntakeService) -> None:
    # An e-mail with no procedure on Thursday 7 May 2026 gets an AE; qualified on 11 May,
    # its AR. The applicant following it reads the AR, with its service and its date.
    created = await submit(
        intake, datetime(2026, 5, 7, 14, 0, tzinfo=UTC), procedure=None, channel="email"
    )
    await intake.qualify(
        created["tracking_code"], "reservation-salle", now=datetime(2026, 5, 11, 9, 0, tzinfo=UTC)
    )
    ack = (await intake.get_request(created["tracking_code"])).acknowledgement
    assert ack is not None and ack.implicit_decision is not None and ack.service is not None
    assert ack.kind.value == "accuse_reception"
    assert ack.implicit_decision.decision_date == date(2026, 7, 7)
    # SVA, received Friday 15 May: the AR says 15 July. Pieces asked on 18 May arrive on
    # 25 May: the delay runs from then, and the AR restated says 25 July.
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    code = created["tracking_code"]
    await completed_after_pieces(
        intake,
        code,
        asked=datetime(2026, 5, 18, 9, 0, tzinfo=UTC),
        due_on=date(2026, 6, 10),
        received=datetime(2026, 5, 25, 9, 0, tzinfo=UTC),
    )
    followed = await intake.get_request(code)
    assert [r.kind.value for r in followed.receipts].count("accuse_reception") == 2
    ack = followed.acknowledgement
    assert ack is not None and ack.implicit_decision is not None
    assert ack.receipt_id == followed.receipts[-1].id
    assert ack.implicit_decision.decision_date == date(2026, 7, 25)
    assert any("25 juillet 2026" in m for m in ack.mentions), ack.mentions


async def test_r22_r23_a_courriel_s_instant_of_arrival_gives_its_day_in_the_tenant_s_zone(
    intake: IntakeService,
) -> None:
    # An e-mail reached the mailbox at 23:30 Paris on Sunday 17 May 2026 (21:30 UTC); the
    # connector read it at 00:10 on Monday 18 May (22:10 UTC): received 17 May, registered
    # 18 May. Deemed accepted at the end of 17 July (two months from 17 May). The sender
    # cannot time its own e-mail (R22).
    self_timed = await sent_by_the_sender(
        intake,
        datetime(2026, 5, 17, 22, 10, tzinfo=UTC),
        arrived_at=datetime(2026, 5, 17, 21, 30, tzinfo=UTC),
    )
    assert self_timed.status == 403
    created = await submit(
        intake,
        datetime(2026, 5, 17, 22, 10, tzinfo=UTC),
        channel="email",
        arrived_at=datetime(2026, 5, 17, 21, 30, tzinfo=UTC),
    )
    assert created["reception_date"] == "2026-05-17"
    assert "Votre demande a été reçue le 17 mai 2026." in created["acknowledgement"]["mentions"]
    assert created["acknowledgement"]["implicit_decision"]["decision_date"] == "2026-07-17"
    assert counted(intake.read_late, channel="email") == 1
    # The same instant declared with its day is accepted; with another day, refused by name.
    agreed = await submit(
        intake,
        datetime(2026, 5, 17, 22, 10, tzinfo=UTC),
        channel="email",
        arrived_at=datetime(2026, 5, 17, 21, 30, tzinfo=UTC),
        received_on=date(2026, 5, 17),
        payload={"autre": 1},
    )
    assert agreed["reception_date"] == "2026-05-17"
    with pytest.raises(Problem) as mismatch:
        await submit(
            intake,
            datetime(2026, 5, 17, 22, 10, tzinfo=UTC),
            channel="email",
            arrived_at=datetime(2026, 5, 17, 21, 30, tzinfo=UTC),
            received_on=date(2026, 5, 18),
            payload={"autre": 2},
        )
    assert [p.name for p in mismatch.value.invalid_params] == ["received_on"]
    assert "17 mai 2026" in mismatch.value.invalid_params[0].reason


async def test_r22_an_instant_of_arrival_a_little_ahead_of_this_clock_is_not_tomorrow(
    intake: IntakeService,
) -> None:
    # The connector's clock runs a minute ahead: an e-mail it says arrived at 00:00:30 on
    # 18 May, Paris time, is entered at 23:59:30 on 17 May by this server's clock. It
    # arrived "now": received 17 May, as a reception date of 18 May would be refused.
    created = await submit(
        intake,
        datetime(2026, 5, 17, 21, 59, 30, tzinfo=UTC),
        channel="email",
        arrived_at=datetime(2026, 5, 17, 22, 0, 30, tzinfo=UTC),
    )
    assert created["reception_date"] == "2026-05-17"
    assert created["arrived_at"] == "2026-05-17T21:59:30Z"
