"""The French sentences each receipt must carry (R3, R4, R5, R11, R12, R13). Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

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


def decision_sentence(regime: str, delay: str, deadline: Deadline) -> str:
    if regime == "none":
        return "Cette demande ne peut pas donner lieu à une décision implicite."
    outcome = "acceptée" if regime == "sva" else "rejetée"
    nature = "d'acceptation" if regime == "sva" else "de rejet"
    if deadline.last_day is None:
        return (
            f"Cette demande peut donner lieu à une décision implicite {nature} au terme "
            f"d'un délai de {delay}, qui ne court qu'à compter de la réception des pièces "
            "manquantes."
        )
    return (
        f"Cette demande peut donner lieu à une décision implicite {nature} : en l'absence "
        f"de réponse de l'administration dans un délai de {delay}, et si votre dossier est "
        f"complet, elle sera réputée {outcome} le {french_date(deadline.last_day)} à minuit."
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
    required_pieces: list[str],
) -> list[str]:
    """R5: date of reception, the service in charge, and for a demande the implicit decision."""
    mentions = [
        f"Votre demande a été reçue le {french_date(reception_date)}.",
        _service_line(service),
        f"Numéro de suivi : {tracking_code}.",
    ]
    if is_demande:
        mentions.append(decision_sentence(regime, delay, deadline))
        if regime == "sva":
            mentions.append(
                "Si votre demande est acceptée implicitement, vous pourrez obtenir "
                "une attestation d'acceptation implicite."
            )
        elif regime == "svr" and appeal_text:
            mentions.append(appeal_text)
        if required_pieces:
            mentions.append(
                "Pièces et informations exigées pour ce dossier : "
                + " ; ".join(required_pieces)
                + "."
            )
    return mentions


def registration(*, reception_date: date, tracking_code: str, tenant_name: str) -> list[str]:
    """R3: the AE states the date of reception; the AR follows once the request is qualified."""
    return [
        f"Votre envoi a été enregistré le {french_date(reception_date)} par {tenant_name}.",
        f"Numéro de suivi : {tracking_code}.",
        "Un accusé de réception indiquant le service chargé de votre dossier et, le cas "
        "échéant, la date à laquelle votre demande sera réputée acceptée ou rejetée vous "
        "sera adressé dans les sept jours.",
    ]


def missing_pieces(
    *,
    pieces: list[str],
    due_on: date,
    regime: str,
    delay: str,
    deadline: Deadline,
    tracking_code: str,
) -> list[str]:
    """R11: which pieces, by when, and which clock rule applies."""
    mentions = [
        f"Votre dossier n° {tracking_code} est incomplet. Merci de nous faire parvenir "
        f"au plus tard le {french_date(due_on)} : " + " ; ".join(pieces) + "."
    ]
    if regime == "sva":
        mentions.append(
            "Le délai au terme duquel votre demande sera réputée acceptée ne "
            "commencera à courir qu'à compter de la réception de ces pièces."
        )
    elif regime == "svr":
        mentions.append(
            "Le délai au terme duquel votre demande sera réputée rejetée est "
            "suspendu jusqu'à la réception de ces pièces, et au plus tard jusqu'à "
            "la date limite ci-dessus ; il reprend dès leur réception."
        )
        if deadline.last_day is not None:
            mentions.append(
                "Si vous ne produisez pas ces pièces, la demande sera réputée "
                f"rejetée le {french_date(deadline.last_day)} à minuit."
            )
    return mentions


def transfer(
    *, tracking_code: str, destination: str, reason: str, regime: str, first_reception: date
) -> list[str]:
    """R12: the user is told; R13: which reception date each clock counts from."""
    mentions = [
        f"Votre demande n° {tracking_code} a été transmise à {destination}, "
        f"compétente pour la traiter. Motif : {reason}"
    ]
    if regime == "svr":
        mentions.append(
            "Le délai au terme duquel le silence vaut rejet court à compter de sa "
            f"réception par notre administration, le {french_date(first_reception)}."
        )
    else:
        mentions.append(
            "Le délai au terme duquel le silence vaut, le cas échéant, acceptation "
            "ne court qu'à compter de sa réception par l'administration compétente, "
            "qui vous adressera un accusé de réception."
        )
    return mentions


def attestation(
    *, tracking_code: str, procedure_title: str, reception_date: date, last_day: date, delay: str
) -> list[str]:
    return [
        f"La demande n° {tracking_code} « {procedure_title} », reçue le "
        f"{french_date(reception_date)}, n'a pas fait l'objet d'une décision expresse dans "
        f"le délai de {delay}.",
        f"Elle est réputée acceptée depuis le {french_date(last_day)} à minuit.",
        "La présente attestation d'acceptation implicite est délivrée à la demande de l'intéressé.",
    ]
