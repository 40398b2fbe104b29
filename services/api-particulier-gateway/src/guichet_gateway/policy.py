"""Purpose binding (rule R16) and the outcomes every consultation is traced with.

Data obtained from API Particulier may only serve to tell a person about a
possible right and to grant it; fraud detection and sanctions are named by the
rule as forbidden uses, so they get an explicit refusal rather than a bare
"unknown value".
"""

from __future__ import annotations

from enum import StrEnum

ALLOWED_PURPOSES: dict[str, str] = {
    "tariff_granting": "attribution d'un tarif (cantine, centre de loisirs, conservatoire…)",
    "benefit_granting": "attribution d'une aide ou d'une prestation",
    "eligibility_information": "information de l'usager sur un droit possible (aller-vers)",
}

FORBIDDEN_PURPOSES: dict[str, str] = {
    "fraud_detection": "détection de la fraude",
    "sanction": "sanction",
}


def allowed_purposes_text() -> str:
    return " ; ".join(f"{code} : {label}" for code, label in ALLOWED_PURPOSES.items())


class Outcome(StrEnum):
    """How a consultation ended, as stored in the audit trail."""

    SUCCESS = "success"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    IDENTITY_REJECTED = "identity_rejected"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    PURPOSE_FORBIDDEN = "purpose_forbidden"
    PURPOSE_UNKNOWN = "purpose_unknown"
    CONSENT_MISSING = "consent_missing"


class Dataset(StrEnum):
    QUOTIENT_FAMILIAL = "quotient_familial"
