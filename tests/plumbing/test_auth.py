"""Guichet's own tokens: signed, expiring, rotatable; development secrets refused in
production."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from guichet_intake.settings import IntakeSettings
from guichet_plumbing.auth import Kind, Principal, Role, TokenKeys, development_keys, generate_keys
from guichet_plumbing.settings import ServiceSettings

AGENT = Principal(
    Kind.agent,
    subject="marie",
    tenant="admiville",
    roles=frozenset({Role.case_handler}),
    services=frozenset({"voirie"}),
)
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_token_round_trip_and_expiry() -> None:
    keys = TokenKeys(generate_keys())
    token = keys.issue(AGENT, timedelta(minutes=30), now=NOON)
    assert keys.verify(token, now=NOON + timedelta(minutes=29)) == AGENT
    assert keys.verify(token, now=NOON + timedelta(minutes=31)) is None
    assert keys.public_jwks()["keys"][0].keys() >= {"kid", "kty", "crv", "x", "y"}
    assert all("d" not in k for k in keys.public_jwks()["keys"]), "never a private part"


def test_rotation_keeps_old_tokens_until_the_old_key_is_dropped() -> None:
    first = generate_keys()
    rotated = generate_keys(previous=first)
    old_token = TokenKeys(first).issue(AGENT, timedelta(minutes=30), now=NOON)
    assert TokenKeys(rotated).verify(old_token, now=NOON) == AGENT
    new_token = TokenKeys(rotated).issue(AGENT, timedelta(minutes=30), now=NOON)
    assert TokenKeys(first).verify(new_token, now=NOON) is None, "signed with the new key"
    assert TokenKeys(generate_keys()).verify(old_token, now=NOON) is None


def test_forged_and_foreign_tokens_are_refused() -> None:
    keys = TokenKeys(development_keys())
    token = keys.issue(AGENT, timedelta(minutes=30), now=NOON)
    head, payload, signature = token.split(".")
    assert keys.verify(f"{head}.{payload[:-2]}AA.{signature}", now=NOON) is None
    assert TokenKeys(development_keys(), issuer="ailleurs").verify(token, now=NOON) is None
    # A follow-up link is not a login, and a login is not a link.
    link = keys.issue_link("request:ABCD", timedelta(days=1), now=NOON)
    assert keys.verify(link, now=NOON) is None
    assert not keys.verify_link(token, "request:ABCD", now=NOON)


def test_sealed_links_survive_rotation_and_refuse_forgery() -> None:
    first = generate_keys()
    link = TokenKeys(first).issue_link("request:ABCD", timedelta(days=1), now=NOON)
    assert link.split(".")[0] != TokenKeys(first).issue(AGENT, timedelta(1), NOON).split(".")[0]
    rotated = TokenKeys(generate_keys(previous=first))
    assert rotated.verify_link(link, "request:ABCD", now=NOON), "the old key still unseals"
    assert not rotated.verify_link(link, "request:ABCE", now=NOON), "another resource"
    assert not rotated.verify_link(link, "request:ABCD", now=NOON + timedelta(days=2))
    assert not TokenKeys(generate_keys()).verify_link(link, "request:ABCD", now=NOON)
    head, payload, mac = link.split(".")
    forged = f"{head}.{payload}.{mac[:-2]}{'A' if mac[-2] != 'A' else 'B'}{mac[-1]}"
    assert not rotated.verify_link(forged, "request:ABCD", now=NOON)


def test_links_sealed_before_the_mac_still_open_until_they_expire() -> None:
    # Follow-up links were ES256 signatures until 30 November 2026; they live 90 days.
    first = generate_keys()
    old_link = TokenKeys(first)._encode(
        {"sub": "request:ABCD", "iss": "guichet", "aud": "guichet-link", "exp": 2**40}
    )
    rotated = TokenKeys(generate_keys(previous=first))
    assert rotated.verify_link(old_link, "request:ABCD", now=NOON)
    assert not rotated.verify_link(old_link, "request:ABCE", now=NOON)
    assert not TokenKeys(generate_keys()).verify_link(old_link, "request:ABCD", now=NOON)
    head, payload, signature = old_link.split(".")
    assert not rotated.verify_link(f"{head}.{payload}.{signature[::-1]}", "request:ABCD", NOON)
    expired = TokenKeys(first)._encode(
        {"sub": "request:ABCD", "iss": "guichet", "aud": "guichet-link", "exp": 1}
    )
    assert not rotated.verify_link(expired, "request:ABCD", now=NOON)


def test_development_secrets_are_refused_in_production(data_dir: Path) -> None:
    with pytest.raises(ValidationError, match="GUICHET_AUTH_SIGNING_KEYS"):
        ServiceSettings(env="production", demo_logins=False)
    with pytest.raises(ValidationError, match="demo logins are refused"):
        ServiceSettings(env="production", auth_signing_keys=generate_keys())
    with pytest.raises(ValidationError, match="PSEUDONYM_SECRET"):
        IntakeSettings(env="production", auth_signing_keys=generate_keys(), demo_logins=False)
    # Receipts sign intake's public address as where to verify them: never a local one.
    required: dict[str, Any] = {
        "env": "production",
        "auth_signing_keys": generate_keys(),
        "demo_logins": False,
        "pseudonym_secret": "0" * 64,
    }
    with pytest.raises(ValidationError, match="GUICHET_INTAKE_PUBLIC_URL"):
        IntakeSettings(**required)
    with pytest.raises(ValidationError, match="GUICHET_INTAKE_TRANSFER_SENDERS"):
        IntakeSettings(
            **required,
            public_url="https://guichet.example.fr/intake",
            transfer_senders={"Voisinville": "http://voisinville.example.fr/jwks.json"},
        )
    production = IntakeSettings(
        **required,
        data_dir=data_dir,
        transfer_senders={"Voisinville": "https://voisinville.example.fr/intake/jwks.json"},
        public_url="https://guichet.example.fr/intake",
    )
    assert production.token_keys().public_jwks() != TokenKeys(development_keys()).public_jwks()
