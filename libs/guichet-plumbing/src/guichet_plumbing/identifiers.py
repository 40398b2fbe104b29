"""French identifiers of companies (SIREN, SIRET) and associations (RNA), and e-mail
addresses: checks shared by the services that receive them. Each error is a French
sentence for the applicant."""

from __future__ import annotations

import re
from typing import Annotated

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import AfterValidator, WithJsonSchema
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

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
    # Zeros pass Luhn but number nobody.
    if not luhn_ok(digits) or digits == "0" * 9:
        return "Ce SIREN n'est pas valide (clé de contrôle) : vérifiez les chiffres."
    return None


def siret_error(value: str) -> str | None:
    digits = normalise(value)
    if not re.fullmatch(r"[0-9]{14}", digits):
        return "Un SIRET comporte 14 chiffres."
    if digits.startswith("0" * 9):
        return "Ce SIRET n'est pas valide : son SIREN ne peut pas être 000 000 000."
    if luhn_ok(digits[:9]) and luhn_ok(digits):
        return None
    # La Poste's establishments (SIREN 356000000) are numbered so that the digits add up
    # to a multiple of 5, which Luhn would reject.
    if digits.startswith(LA_POSTE_SIREN) and sum(int(c) for c in digits) % 5 == 0:
        return None
    return "Ce SIRET n'est pas valide (clé de contrôle) : vérifiez les chiffres."


def rna_error(value: str) -> str | None:
    # Répertoire national des associations: W, then the prefecture's 3 characters (a letter
    # second for some: 2A and 2B in Corsica, 9R in La Réunion...), then 6 digits.
    if not re.fullmatch(r"W[0-9][0-9A-Z][0-9]{7}", normalise(value).upper()):
        return (
            "Un numéro RNA s'écrit W suivi de 9 chiffres, le troisième pouvant être une "
            "lettre (ex. W751234567, W9R1003737)."
        )
    return None


# The everyday address (ASCII dot-atom, domain of letter-led labels, letters-only TLD):
# email-validator accepts every such address, and only lower-cases its domain.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)


def email_address(value: str) -> str:
    """pydantic's `EmailStr`, same answers: a plain address is checked by a pattern (a
    fortieth of the cost, at every submission), anything else by email-validator."""
    match = _PLAIN_EMAIL.fullmatch(value)
    if match is not None and len(value) <= 254 and value.index("@") <= 64:
        domain = match.group(1).lower()
        # Left to email-validator: IDNA's reserved "--" and special-use domains.
        if "--" not in domain and not any(
            domain == name or domain.endswith("." + name) for name in _SPECIAL_USE
        ):
            return value[: value.index("@") + 1] + domain
    try:
        return validate_email(value)[1]
    except PydanticCustomError:
        # email-validator explains in English: the sender reads French.
        raise PydanticCustomError("value_error", _INVALID_EMAIL) from None


_INVALID_EMAIL = (
    "Adresse électronique invalide : elle s'écrit nom@domaine.fr, sans espace, avec un nom "
    "de domaine qui reçoit du courrier."
)


EmailAddress = Annotated[
    str, AfterValidator(email_address), WithJsonSchema({"type": "string", "format": "email"})
]
