"""Receipt signatures (R2): compact JWS over canonical JSON, Ed25519 keys. Pure, no I/O.

The signature is what lets an applicant prove, later and to anyone, that the
administration issued this receipt, with this content, at this date.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from joserfc import jws
from joserfc.jwa import EdDSAAlgorithm, JWSAlgModel
from joserfc.jwk import OKPKey
from joserfc.jws import JWSRegistry
from nacl.bindings import crypto_sign, crypto_sign_seed_keypair

__all__ = ["JWS_TYPE", "SigningKey", "generate_key", "jwks", "sign", "verify"]

ALGORITHM = "EdDSA"
JWS_TYPE = "guichet-receipt+jws"
_HEADER_FIELDS = frozenset({"alg", "kid", "typ"})
_KID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_JOSERFC_EDDSA = EdDSAAlgorithm()


class _EdDSA(JWSAlgModel):
    # joserfc's own EdDSA warns on every use since RFC 9864 prefers "Ed25519"; we keep
    # "EdDSA" because verifiers in the wild know it, so delegate without the warning.
    name = ALGORITHM
    description = "EdDSA with Ed25519 keys"
    key_type = "OKP"

    def sign(self, msg: bytes, key: Any) -> bytes:
        return _JOSERFC_EDDSA.sign(msg, key)

    def verify(self, msg: bytes, sig: bytes, key: Any) -> bool:
        return _JOSERFC_EDDSA.verify(msg, sig, key)


class _ReceiptRegistry(JWSRegistry):
    def __init__(self) -> None:
        super().__init__(algorithms=[ALGORITHM])
        # Our own table, so "none", HS256 and every other algorithm are unknown here: an
        # attacker choosing the algorithm (alg confusion) gets nowhere.
        self.algorithms = {ALGORITHM: _EdDSA()}
        self.recommended = [ALGORITHM]
        # joserfc's default (128 kB) would make big transfer payloads signable but never
        # verifiable; sign() refuses what verify() would refuse.
        self.max_payload_length = 1_000_000


_REGISTRY = _ReceiptRegistry()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    # Kept out of repr so that logging a key never logs its secret.
    private_pem: bytes = field(repr=False)
    created_at: datetime
    retired_at: datetime | None = None

    def public_jwk(self) -> dict[str, Any]:
        """The public half, as published in the JWKS (never the private `d`). A retired key
        says since when (`retired_at`, a member JOSE libraries ignore): what it signed
        before still verifies, but a retired key, leaked perhaps, vouches for nothing new."""
        jwk = dict(
            _private_key(self).as_dict(private=False, kid=self.kid, alg=ALGORITHM, use="sig")
        )
        if self.retired_at is not None:
            jwk["retired_at"] = self.retired_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return jwk


def _private_key(key: SigningKey) -> OKPKey:
    return _parsed_private_key(key.kid, key.private_pem)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@lru_cache(maxsize=256)
def _signer(kid: str, private_pem: bytes) -> tuple[bytes, bytes]:
    """The libsodium secret key and the encoded protected header, both the same for every
    receipt it signs.

    libsodium signs a receipt in about 35 µs here, where OpenSSL took 45–66 µs (it sets up
    a digest context at every call); Ed25519 is deterministic: the same bytes either way.
    """
    private = _parsed_private_key(kid, private_pem).private_key
    assert isinstance(private, Ed25519PrivateKey)  # _parsed_private_key checked the curve
    public, secret = crypto_sign_seed_keypair(
        private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    )
    if public != private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw):
        # Never sign with a key pair other than the published one: nothing would verify.
        raise ValueError(f"signing key {kid!r}: libsodium derives another public key")
    header = {"alg": ALGORITHM, "kid": kid, "typ": JWS_TYPE}
    return secret, _b64(json.dumps(header, separators=(",", ":")).encode())


@lru_cache(maxsize=256)
def _parsed_private_key(kid: str, private_pem: bytes) -> OKPKey:
    # Parsing the PEM costs more than signing: once per key, not once per receipt.
    okp = OKPKey.import_key(private_pem)
    # A stored PEM of another type must not silently sign with another algorithm.
    if okp.curve_name != "Ed25519" or not okp.is_private:
        raise ValueError(f"signing key {kid!r} is not an Ed25519 private key")
    return okp


def generate_key(tenant: str, now: datetime) -> SigningKey:
    """A fresh Ed25519 key; the kid says whose and from when, the random part makes it unique."""
    if now.tzinfo is None:
        raise ValueError("naive datetime refused: signing keys carry an aware creation time")
    kid = f"{_kid_slug(tenant)}-{now.astimezone(UTC):%Y%m%d}-{secrets.token_hex(3)}"
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    return SigningKey(kid=kid, private_pem=pem, created_at=now)


def _kid_slug(tenant: str) -> str:
    return _KID_UNSAFE.sub("-", tenant).strip("-") or "tenant"


def key_of(kid: str, tenant: str) -> bool:
    """Whether `kid` names a key of `tenant`: on a platform publishing the keys of many
    collectivités in one JWKS, one collectivité's key must not vouch for another's act."""
    # The whole kid: "ville-nord-20261202-a1b2c3" is not a key of "ville".
    whose = re.escape(_kid_slug(tenant))
    return re.fullmatch(rf"{whose}-[0-9]{{8}}-[0-9a-f]{{6}}", kid) is not None


def canonical_json(payload: Any) -> bytes:
    """One byte sequence per content: whoever re-serialises the JSON gets the same bytes.

    Sorted keys, no spaces, UTF-8 as is: the bytes of `json.dumps(sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)`, which signed the first receipts
    (`test_canonical_json_is_the_historic_one`). orjson writes them at a tenth of the
    cost, except integers past 64 bits (it refuses them) and floats under 1e-4 (it
    writes `0.00004` and `4e-6` where json writes `4e-05` and `4e-06`): those go to json.
    NaN and infinities, which orjson would write as null, are refused at input.
    """
    try:
        body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return _json_canonical(payload)
    return _json_canonical(payload) if _may_hold_small_float(body) else body


def _may_hold_small_float(body: bytes) -> bool:
    """Whether orjson may have written a float as json would not: `0.0000…` or a
    one-digit negative exponent. Such text inside a string also says yes (json then
    writes the same bytes, only slower). Plain searches: a regex cost 15 µs a receipt."""
    if b"0.0000" in body:
        return True
    at = body.find(b"e-")
    while at != -1:
        if body[at + 2 : at + 3].isdigit() and not body[at + 3 : at + 4].isdigit():
            return True
        at = body.find(b"e-", at + 2)
    return False


def _json_canonical(payload: Any) -> bytes:
    text = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


class PayloadTooLarge(ValueError):
    """The content would make a JWS longer than verifiers accept."""


def sign(payload: dict[str, Any], key: SigningKey) -> str:
    """Compact JWS (EdDSA) of the canonical JSON of `payload`, naming the key by `kid`."""
    body = canonical_json(payload)
    # Base64url grows the payload by 4/3: refuse now rather than issue an unverifiable receipt.
    if (len(body) + 2) // 3 * 4 > _REGISTRY.max_payload_length:
        raise PayloadTooLarge("payload too large to be signed as a receipt")
    # RFC 7515 compact serialisation written out: joserfc's generic path cost as much as
    # the signature itself at every submission. Verification below stays joserfc's.
    secret, header = _signer(key.kid, key.private_pem)
    signing_input = header + b"." + _b64(body)
    # crypto_sign returns the signature followed by the message.
    signature = crypto_sign(signing_input, secret)[:64]
    return (signing_input + b"." + _b64(signature)).decode("ascii")


def segment(token: str, index: int) -> bytes:
    """One part of a compact JWS (0: header, 1: payload), decoded, not verified."""
    return base64.urlsafe_b64decode(token.split(".")[index] + "==")


def signed_by(token: str) -> str | None:
    """The `kid` a token of ours names, read without verifying it."""
    try:
        header = json.loads(segment(token, 0))
    except ValueError:
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def resign(token: str, key: SigningKey) -> str:
    """The payload of a token this guichet signed, signed again by `key`."""
    return sign(json.loads(segment(token, 1)), key)


def _verify(token: str, public_jwks: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    signed = jws.extract_compact(token.encode("ascii"), registry=_REGISTRY)
    header = signed.headers()
    if (
        set(header) != _HEADER_FIELDS
        or header["alg"] != ALGORITHM
        or header["typ"] != JWS_TYPE
        or not isinstance(header["kid"], str)
    ):
        return None
    for jwk in public_jwks:
        if not isinstance(jwk, dict) or jwk.get("kid") != header["kid"]:
            continue
        # Only Ed25519 public keys count, whatever else a caller's key list may hold.
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        public = {k: v for k, v in jwk.items() if k != "d"}
        if jws.validate_compact(signed, OKPKey.import_key(public), registry=_REGISTRY):
            payload = json.loads(signed.payload.decode("utf-8"))
            # Only our canonical encoding is a receipt (no duplicate keys, no NaN, one form).
            if isinstance(payload, dict) and canonical_json(payload) == signed.payload:
                return header["kid"], payload
            return None
    return None


def verify(token: str, public_jwks: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The key's `kid` and the payload if `token` is signed by the published key it names,
    else None.

    Never raises: the token comes from anyone, and every failure means "not authentic".
    A JWS has no whitespace: what a copy from the PDF or an e-mail adds (its line breaks)
    is dropped.
    """
    try:
        return _verify("".join(token.split()), public_jwks)
    except Exception:
        # Trust boundary: joserfc, base64, JSON and cryptography each raise their own
        # errors on hostile input; all of them mean the same thing to the caller.
        return None


def jwks(keys: Iterable[SigningKey]) -> dict[str, list[dict[str, Any]]]:
    """The JWK Set to publish: every key whose receipts must still verify."""
    return {"keys": [key.public_jwk() for key in keys]}
