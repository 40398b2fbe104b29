"""SIREN, SIRET and RNA checks shared by intake (R7) and the gateway (recipient SIRET)."""

from __future__ import annotations

import pytest

from guichet_plumbing.identifiers import rna_error, siren_error, siret_error


@pytest.mark.parametrize(
    ("siret", "valid"),
    [
        ("13002526500013", True),  # DINUM, API Particulier's own example
        ("73282932000074", True),
        ("732 829 320 00074", True),  # as printed on a Kbis
        ("35600000000048", True),  # La Poste head office: passes Luhn
        ("35600000049837", True),  # La Poste establishment: digit sum multiple of 5
        ("35600000000001", True),  # fails Luhn, follows La Poste's rule
        ("35600000012345", False),
        ("13002526500014", False),
        ("1300252650001", False),
        ("１３００２５２６５０００１３", False),  # full-width digits
    ],
)
def test_r7_siret_check(siret: str, valid: bool) -> None:
    assert (siret_error(siret) is None) is valid


def test_r7_siren_and_rna_checks() -> None:
    assert siren_error("732829320") is None
    assert siren_error("732829321") is not None
    assert siren_error("73282932") == "Un SIREN comporte 9 chiffres."
    assert rna_error("W751234567") is None
    assert rna_error("w2A1234567") is None  # Corsica: 2A/2B prefectures
    assert rna_error("X751234567") is not None
