"""Checks of the identifiers a company or an association gives (R7)."""

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
    if digits.startswith(LA_POSTE_SIREN):
        if sum(int(c) for c in digits) % 5 != 0:
            return "Ce SIRET n'est pas valide (clé de contrôle) : vérifiez les chiffres."
        return None
    if not luhn_ok(digits[:9]) or not luhn_ok(digits):
        return "Ce SIRET n'est pas valide (clé de contrôle) : vérifiez les chiffres."
    return None


def rna_error(value: str) -> str | None:
    # Répertoire national des associations: W followed by 9 digits (the 3 first
    # identify the prefecture, which may be 2 digits and a letter in Corsica).
    if not re.fullmatch(r"W[0-9]{2}[0-9AB][0-9]{6}", normalise(value).upper()):
        return "Un numéro RNA s'écrit W suivi de 9 caractères (ex. W751234567)."
    return None
