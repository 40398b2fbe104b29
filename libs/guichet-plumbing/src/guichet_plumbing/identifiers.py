"""French identifiers of companies (SIREN, SIRET) and associations (RNA): checks shared by
the services that receive them. Each error is a French sentence for the applicant."""

from __future__ import annotations

import re

# La Poste's establishments share SIREN 356000000, whose SIRETs escape the Luhn rule
# (INSEE); they are checked by digit sum instead.
LA_POSTE_SIREN = "356000000"


def luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def normalise(value: str) -> str:
    return re.sub(r"[\s.\-]", "", value)


def siren_error(value: str) -> str | None:
    digits = normalise(value)
    if not re.fullmatch(r"[0-9]{9}", digits):
        return "Un SIREN comporte 9 chiffres."
    if not luhn_ok(digits):
        return "Ce SIREN n'est pas valide (clé de contrôle) : vérifiez les chiffres."
    return None


def siret_error(value: str) -> str | None:
    digits = normalise(value)
    if not re.fullmatch(r"[0-9]{14}", digits):
        return "Un SIRET comporte 14 chiffres."
    if luhn_ok(digits[:9]) and luhn_ok(digits):
        return None
    # La Poste's establishments (SIREN 356000000) are numbered so that the digits add up
    # to a multiple of 5, which Luhn would reject.
    if digits.startswith(LA_POSTE_SIREN) and sum(int(c) for c in digits) % 5 == 0:
        return None
    return "Ce SIRET n'est pas valide (clé de contrôle) : vérifiez les chiffres."


def rna_error(value: str) -> str | None:
    # Répertoire national des associations: W, then the prefecture's 3 characters (2A or 2B
    # then a digit in Corsica), then 6 digits.
    if not re.fullmatch(r"W[0-9][0-9AB][0-9]{7}", normalise(value).upper()):
        return "Un numéro RNA s'écrit W suivi de 9 caractères (ex. W751234567)."
    return None
