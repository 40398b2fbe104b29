"""The French sentences each receipt must carry (R3, R4, R5, R11, R12, R13). Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from guichet_intake.deadlines import Deadline
from guichet_intake.documents import french_date


@dataclass(frozen=True)
class Service:
    designation: str
    postal_address: str
    email: str | None
    phone: str | None

    def contact(self) -> str:
        parts = [self.postal_address]
        if self.email:
            parts.append(f"courriel : {self.email}")
        if self.phone:
            parts.append(f"téléphone : {self.phone}")
        return ", ".join(parts)


def _service_line(service: Service) -> str:
    return f"Service chargé de votre dossier : {service.designation} ({service.contact()})."


def midnight_of(last_day: date) -> str:
    """ "The 15th at midnight" read by many as 00:00 on the 15th: say when it really starts."""
    return (
        f"{french_date(last_day)} à minuit (soit à compter du "
        f"{french_date(last_day + timedelta(days=1))} à 0 h)"
    )


def decision_sentence(
    regime: str, delay: str, deadline: Deadline, reception_date: date, today: date
) -> str:
    """R5: the implicit decision and its date; from when the delay runs when that is not the
    reception date (pieces produced, transfer), and why (`deadline.notes`). Said on a day
    (`today`) past its date (a request received late by transfer, R13, or qualified after
    a short delay ran out), the decision is born."""
    if regime == "none":
        return "Cette demande ne peut pas donner lieu à une décision implicite."
    outcome = "acceptée" if regime == "sva" else "rejetée"
    nature = "d'acceptation" if regime == "sva" else "de rejet"
    notes = "".join(f" {note}" for note in deadline.notes)
    if deadline.last_day is None:
        # The clock waits for the missing pieces, as the note says (R11).
        return (
            f"Cette demande peut donner lieu à une décision implicite {nature} au terme "
            f"d'un délai de {delay}." + notes
        )
    runs = f"un délai de {delay}"
    if deadline.counts_from is not None and deadline.counts_from != reception_date:
        runs += f" courant à compter du {french_date(deadline.counts_from)}"
    if deadline.last_day < today:
        # An acceptance needed the file complete (R11): said as the future tense says it.
        complete = ", si votre dossier était complet à cette date" if regime == "sva" else ""
        return (
            f"En l'absence de réponse de l'administration dans {runs}, cette demande a été "
            f"réputée {outcome} le {midnight_of(deadline.last_day)}{complete}." + notes
        )
    return (
        f"Cette demande peut donner lieu à une décision implicite {nature} : en l'absence "
        f"de réponse de l'administration dans {runs}, et si votre dossier est complet, elle "
        f"sera réputée {outcome} le {midnight_of(deadline.last_day)}." + notes
    )


def acknowledgement(
    *,
    reception_date: date,
    tracking_code: str,
    service: Service,
    is_demande: bool,
    regime: str,
    delay: str,
    deadline: Deadline,
    appeal_text: str | None,
    required_pieces: Sequence[str],
    required_information: Sequence[str] = (),
    issued_on: date,
) -> list[str]:
    """R5: date of reception, the service in charge, and for a demande the implicit decision;
    R11: the pieces and information the file must hold to be complete."""
    mentions = [
        f"Votre demande a été reçue le {french_date(reception_date)}.",
        _service_line(service),
        f"Numéro de suivi : {tracking_code}.",
    ]
    if is_demande:
        mentions.append(decision_sentence(regime, delay, deadline, reception_date, issued_on))
        if regime == "sva":
            past = deadline.last_day is not None and deadline.last_day < issued_on
            mentions.append(
                "Si votre demande a été acceptée implicitement, vous pouvez obtenir "
                "une attestation d'acceptation implicite."
                if past
                else "Si votre demande est acceptée implicitement, vous pourrez obtenir "
                "une attestation d'acceptation implicite."
            )
        elif regime == "svr" and appeal_text:
            mentions.append(appeal_text)
        if required_pieces:
            mentions.append("Pièces exigées pour ce dossier : " + " ; ".join(required_pieces) + ".")
        if required_information:
            mentions.append(
                "Informations exigées pour ce dossier : " + " ; ".join(required_information) + "."
            )
    return mentions


def registration(
    *,
    reception_date: date,
    registered_on: date,
    issued_on: date,
    receipt_due_on: date | None,
    tracking_code: str,
    tenant_name: str,
) -> list[str]:
    """R3: the AE states the date of reception, and the day of registration when the send
    was read later (a mailbox connector down); R4: by when the AR follows, as of the day
    the AE is issued (`issued_on`: later than registration when signing failed)."""
    if registered_on == reception_date:
        registered = f"Votre envoi a été enregistré le {french_date(reception_date)}"
    else:
        registered = (
            f"Votre envoi, reçu le {french_date(reception_date)}, a été enregistré le "
            f"{french_date(registered_on)}"
        )
    if receipt_due_on is not None and receipt_due_on >= issued_on:
        when = f"au plus tard le {french_date(receipt_due_on)}"
    else:  # its seven days (R4) ran out before this AE could be issued
        when = "dans les meilleurs délais"
    return [
        f"{registered} par {tenant_name}.",
        f"Numéro de suivi : {tracking_code}.",
        "Un accusé de réception indiquant le service chargé de votre dossier et, le cas "
        "échéant, la date à laquelle votre demande sera réputée acceptée ou rejetée vous "
        f"sera adressé {when}.",
    ]


def missing_pieces(
    *,
    pieces: list[str],
    due_on: date,
    regime: str | None,
    delay: str,
    deadline: Deadline,
    tracking_code: str,
    unqualified: bool = False,
) -> list[str]:
    """R11: which pieces, by when, and which clock rule applies (`regime` None: none can
    be stated, the procedure being unknown, `unqualified`, or no clock running)."""
    mentions = [
        f"Votre dossier n° {tracking_code} est incomplet. Merci de nous faire parvenir "
        f"au plus tard le {french_date(due_on)} : " + " ; ".join(pieces) + "."
    ]
    # Décret 2015-1404 art. 8: the applicable delay is stated, with what happens to it.
    if regime == "sva":
        mentions.append(
            f"Le délai de {delay} au terme duquel votre demande sera réputée acceptée ne "
            "commencera à courir qu'à compter de la réception de ces pièces."
        )
    elif regime == "svr":
        mentions.append(
            f"Le délai de {delay} au terme duquel votre demande sera réputée rejetée est "
            "suspendu jusqu'à la réception de ces pièces, et au plus tard jusqu'à "
            "la date limite ci-dessus ; il reprend dès leur réception."
        )
        if deadline.last_day is not None:
            mentions.append(
                "Si vous ne produisez pas ces pièces, la demande sera réputée "
                f"rejetée le {midnight_of(deadline.last_day)}."
            )
    elif regime == "none":
        # Neither rule: the applicant still learns that silence will decide nothing.
        mentions.append(
            "Le silence gardé sur votre demande ne vaut pas décision : elle sera instruite "
            "dès la réception de ces pièces."
        )
    elif unqualified:
        # The procedure is not known yet: both rules, and where the one that applies is said.
        mentions.append(
            "L'accusé de réception de votre demande vous indiquera si le silence gardé sur "
            "elle vaut acceptation, rejet, ou ne vaut pas décision. S'il vaut acceptation, le "
            "délai ne commencera à "
            "courir qu'à compter de la réception de ces pièces ; s'il vaut rejet, il est "
            "suspendu jusqu'à leur réception, et au plus tard jusqu'à la date limite "
            "ci-dessus."
        )
    return mentions


def transfer(
    *,
    tracking_code: str,
    destination: str,
    reason: str,
    first_reception: date,
    competent_reception: date | None,
    new_tracking_code: str | None = None,
    rejected_on: date | None = None,
) -> list[str]:
    """R12: the user is told; R13: which reception date each clock counts from; given
    to another collectivité of this guichet, the number to follow it there.

    The regime is the competent administration's to state (its AR will): both rules are
    given, each with its date; sent by post, the competent reception's date is not known
    here (None). `rejected_on`: the last day of a rejection silence gave meanwhile (the
    transfer was asked before it): the notice states it, and whose decision it is."""
    sent = (
        f"Votre demande n° {tracking_code} a été transmise à {destination}, "
        f"administration compétente pour la traiter. Motif : {reason}"
    )
    filed = [f"Elle y est enregistrée sous le n° {new_tracking_code}."] if new_tracking_code else []
    if rejected_on is not None:
        return [
            sent,
            "Le délai au terme duquel le silence vaut rejet courait depuis sa réception par "
            f"notre administration, le {french_date(first_reception)} : faute de réponse, "
            f"elle a été réputée rejetée le {midnight_of(rejected_on)}.",
            "Cette décision implicite de rejet est celle de l'administration compétente, qui "
            "peut encore répondre expressément à votre demande.",
            f"{destination} vous adressera un accusé de réception indiquant les voies et "
            "délais de recours contre cette décision.",
            *filed,
        ]
    received_there = (
        f"sa réception par {destination}, le {french_date(competent_reception)}"
        if competent_reception is not None
        else f"sa réception par {destination}"
    )
    return [
        sent,
        "S'il s'agit d'un régime de rejet implicite, le délai au terme duquel le silence "
        "vaut rejet court depuis sa réception par notre administration, le "
        f"{french_date(first_reception)} ; s'il s'agit d'un régime d'acceptation "
        f"implicite, le délai au terme duquel le silence vaut acceptation ne court qu'à "
        f"compter de {received_there}.",
        _receipt_there(destination),
        *filed,
    ]


def transfer_undecided(
    *, tracking_code: str, destination: str, act: str, acted_on: date
) -> list[str]:
    """R10, R12: a rejection a notice of transfer stated was never born, the service having
    acted in time (`act`: "répondu"): the applicant is told."""
    return [
        f"Contrairement à ce qu'indiquait notre précédent avis de transmission de votre "
        f"demande n° {tracking_code} à {destination}, elle n'a pas été réputée rejetée : "
        f"notre administration avait {act} le {french_date(acted_on)}, avant l'échéance.",
        _receipt_there(destination),
    ]


def _receipt_there(destination: str) -> str:
    return (
        f"{destination} vous adressera un accusé de réception indiquant le régime applicable "
        "et la date correspondante."
    )


def abusive_source(*, tenant_name: str, reason: str) -> list[str]:
    """R9 (L112-11): the source is told, before any blocking, why and what follows."""
    return [
        f"Des envois reçus de votre part par {tenant_name} ont été identifiés comme "
        f"abusifs : {reason}.",
        "Ces envois ne donnent pas lieu à accusé de réception. S'ils se poursuivent, les "
        "envois électroniques de cette adresse pourront être bloqués (article L112-11 du "
        "code des relations entre le public et l'administration).",
        "Vous pouvez toujours vous adresser à l'accueil de la mairie, par courrier ou au "
        "guichet, y compris pour contester cette appréciation.",
    ]


def attestation(
    *,
    tracking_code: str,
    procedure_title: str,
    reception_date: date,
    last_day: date,
    delay: str,
    counts_from: date | None = None,
) -> list[str]:
    """R5: the attestation of implicit acceptance; when the delay ran from another day
    than the reception (the file completed later, R11; a transfer, R13), that day."""
    since = (
        f", qui a couru à compter du {french_date(counts_from)}"
        if counts_from is not None and counts_from != reception_date
        else ""
    )
    return [
        f"La demande n° {tracking_code} « {procedure_title} », reçue le "
        f"{french_date(reception_date)}, n'a pas fait l'objet d'une décision expresse dans "
        f"le délai de {delay}{since}.",
        f"Elle est réputée acceptée depuis le {midnight_of(last_day)}.",
        "La présente attestation d'acceptation implicite est délivrée à la demande de l'intéressé.",
    ]
