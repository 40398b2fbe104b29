"""SIREN, SIRET and RNA checks shared by intake (R7) and the gateway (recipient SIRET)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from guichet_plumbing import identifiers
from guichet_plumbing.identifiers import email_address, rna_error, siren_error, siret_error


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
        ("00000000000000", False),  # passes Luhn, numbers nobody
    ],
)
def test_r7_siret_check(siret: str, valid: bool) -> None:
    assert (siret_error(siret) is None) is valid


def test_r7_siren_and_rna_checks() -> None:
    assert siren_error("732829320") is None
    assert siren_error("732829321") is not None
    assert siren_error("73282932") == "Un SIREN comporte 9 chiffres."
    assert rna_error("W751234567") is None
    assert siren_error("000000000") is not None  # passes Luhn, numbers nobody
    assert rna_error("w2A1234567") is None  # Corsica: 2A/2B prefectures
    assert rna_error("W9R1003737") is None  # La Réunion's prefecture
    assert rna_error("X751234567") is not None
    assert rna_error("W75123456") is not None
    assert rna_error("W7512345A7") is not None


# -- e-mail addresses: the pattern's shortcut answers as pydantic's EmailStr -------------------


def _email_str(value: str) -> str | None:
    try:
        return validate_email(value)[1]
    except PydanticCustomError:
        return None


def _ours(value: str) -> str | None:
    try:
        return email_address(value)
    except PydanticCustomError:
        return None


@given(st.from_regex(identifiers._PLAIN_EMAIL, fullmatch=True))
@settings(max_examples=2000, deadline=None)
def test_r7_plain_addresses_are_accepted_exactly_as_email_validator_does(value: str) -> None:
    assert _ours(value) == _email_str(value)


@given(
    st.text(alphabet="aZ09.-_+@é ", max_size=30)
    | st.builds(
        lambda local, domain: f"{local}@{domain}",
        st.text(alphabet="aZ09.-_+'é", min_size=1, max_size=70),
        st.sampled_from(
            [
                "example.org",
                "EXAMPLE.fr",
                "a--b.fr",
                "x.test",
                "local",
                "a.b.c1",
                "exemple.localhost",
                "b.onion",
                "ça.fr",
                "-a.fr",
                "a-.fr",
                "1.2.3.4",
            ]
        ),
    )
)
@settings(max_examples=2000, deadline=None)
def test_r7_any_address_gets_email_validators_answer(value: str) -> None:
    assert _ours(value) == _email_str(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Camille.Martin@Example.ORG", "Camille.Martin@example.org"),
        ("x@mairie.test", None),  # special-use domain
        ("x@ab--cd.fr", None),  # IDNA's reserved hyphens
        ("a" * 65 + "@example.org", "a" * 65 + "@example.org"),  # past the shortcut's 64
        ("élodie@example.org", "élodie@example.org"),  # not plain: email-validator decides
        ("Camille <c@example.org>", "c@example.org"),
    ],
)
def test_r7_address_examples(value: str, expected: str | None) -> None:
    assert _ours(value) == _email_str(value) == expected
