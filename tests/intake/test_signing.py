"""Receipt signatures (R2): integrity and proof of date, key rotation, hostile tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from hypothesis import example, given, settings
from hypothesis import strategies as st

from guichet_intake.signing import (
    JWS_TYPE,
    SigningKey,
    canonical_json,
    generate_key,
    jwks,
    sign,
    verify,
)

NOW = datetime(2026, 5, 15, 9, 30, tzinfo=UTC)
RECEIPT: dict[str, Any] = {
    "kind": "accuse_reception",
    "tracking_code": "DEMO-2026-0042",
    "issued_at": "2026-05-15T09:30:00Z",
    "reception_date": "2026-05-15",
    "mentions": ["Votre demande a été reçue le 15 mai 2026.", "« Guillemets » et l’œuvre."],
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _raw_token(header: dict[str, Any], body: bytes, key: SigningKey) -> str:
    """A token validly signed by `key` but built by hand, to probe what verify accepts."""
    private = load_pem_private_key(key.private_pem, password=None)
    assert isinstance(private, Ed25519PrivateKey)
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(body)}"
    return f"{signing_input}.{_b64(private.sign(signing_input.encode()))}"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_key("demo", NOW)


@pytest.fixture(scope="module")
def published(key: SigningKey) -> list[dict[str, Any]]:
    return jwks([key])["keys"]


def test_r2_receipt_signature_proves_date_and_integrity(
    key: SigningKey, published: list[dict[str, Any]]
) -> None:
    token = sign(RECEIPT, key)
    assert verify(token, published) == (key.kid, RECEIPT)
    header = json.loads(_unb64(token.split(".")[0]))
    assert header == {"alg": "EdDSA", "kid": key.kid, "typ": JWS_TYPE}
    # The date is inside the signed bytes: moving it by a second breaks the signature.
    head, body, sig = token.split(".")
    backdated = _unb64(body).replace(b"09:30:00", b"09:29:59")
    assert verify(f"{head}.{_b64(backdated)}.{sig}", published) is None


@pytest.mark.parametrize("seed", range(8))
def test_r2_signature_is_the_one_openssl_makes(seed: int) -> None:
    """libsodium signs receipts; Ed25519 is deterministic, so OpenSSL (cryptography), which
    signed the first ones, makes the same bytes from the same key and signing input."""
    key = generate_key(f"commune-{seed}", NOW)
    head, body, sig = sign({**RECEIPT, "seed": seed}, key).split(".")
    private = load_pem_private_key(key.private_pem, password=None)
    assert isinstance(private, Ed25519PrivateKey)
    assert _unb64(sig) == private.sign(f"{head}.{body}".encode())


def test_payload_is_canonical_json(key: SigningKey) -> None:
    token = sign({"b": "é", "a": [1, 2]}, key)
    assert _unb64(token.split(".")[1]) == '{"a":[1,2],"b":"é"}'.encode()
    # Same content, other key order: same signed bytes.
    assert token.split(".")[1] == sign({"a": [1, 2], "b": "é"}, key).split(".")[1]


# Signed documents as they come (receipts; transfers carry the citizen's own data): texts
# of any character, numbers of any size, lists, absent values.
_documents = st.dictionaries(
    st.text(max_size=12),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
        | st.sampled_from(["0.00001", "4e-5", "3e étage"]),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    ),
    max_size=8,
)


@given(_documents)
@example({"x": [4e-05, 1.2345e-06, 1e-4, 1e16, -0.0, 5e-324, 10**30, -(2**64)]})
@settings(max_examples=1000)
def test_canonical_json_is_the_historic_one(document: dict[str, Any]) -> None:
    """Receipts signed before orjson still verify: the signed bytes are json's, byte for byte."""
    historic = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        expected = historic.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (refused at input): neither way signs it
        with pytest.raises(UnicodeEncodeError):
            canonical_json(document)
        return
    assert canonical_json(document) == expected


def test_key_and_jwks_shape(key: SigningKey) -> None:
    assert key.kid.startswith("demo-20260515-")
    assert len(key.kid.rsplit("-", 1)[1]) == 6
    assert key.created_at == NOW
    jwk = key.public_jwk()
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
    assert jwk["kid"] == key.kid and jwk["alg"] == "EdDSA" and jwk["use"] == "sig"
    assert "d" not in jwk
    assert key.private_pem.decode() not in repr(key)
    assert jwks([key]) == {"keys": [jwk]}
    assert generate_key("demo", NOW).kid != key.kid


def test_generate_key_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        generate_key("demo", datetime(2026, 5, 15, 9, 30))


def test_rotated_out_key_verifies_while_published_only(key: SigningKey) -> None:
    old_token = sign(RECEIPT, key)
    new_key = generate_key("demo", datetime(2026, 6, 1, tzinfo=UTC))
    new_token = sign(RECEIPT, new_key)
    both = jwks([key, new_key])["keys"]
    assert verify(old_token, both) == (key.kid, RECEIPT)
    assert verify(new_token, both) == (new_key.kid, RECEIPT)
    only_new = jwks([new_key])["keys"]
    assert verify(old_token, only_new) is None
    assert verify(new_token, only_new) == (new_key.kid, RECEIPT)


def test_tampered_payload_fails(key: SigningKey, published: list[dict[str, Any]]) -> None:
    head, body, sig = sign(RECEIPT, key).split(".")
    text = _unb64(body).decode()
    index = text.index("0042")
    tampered = text[:index] + "1" + text[index + 1 :]
    assert verify(f"{head}.{_b64(tampered.encode())}.{sig}", published) is None


@pytest.mark.parametrize("position", [0, 40, -1])
def test_tampered_signature_fails(
    key: SigningKey, published: list[dict[str, Any]], position: int
) -> None:
    head, body, sig = sign(RECEIPT, key).split(".")
    chars = list(sig)
    # The last character also carries padding bits: joserfc rejects a non-canonical one.
    chars[position] = "B" if chars[position] != "B" else "C"
    assert verify(f"{head}.{body}.{''.join(chars)}", published) is None


def test_flipped_signature_bytes_fail(key: SigningKey, published: list[dict[str, Any]]) -> None:
    head, body, sig = sign(RECEIPT, key).split(".")
    raw = bytearray(_unb64(sig))
    raw[10] ^= 0x01
    assert verify(f"{head}.{body}.{_b64(bytes(raw))}", published) is None


def test_unknown_kid_fails(key: SigningKey, published: list[dict[str, Any]]) -> None:
    _, body, sig = sign(RECEIPT, key).split(".")
    head = _b64(
        json.dumps({"alg": "EdDSA", "kid": "demo-19990101-000000", "typ": JWS_TYPE}).encode()
    )
    assert verify(f"{head}.{body}.{sig}", published) is None
    # Another published key under the token's kid does not help either.
    other = generate_key("demo", NOW).public_jwk() | {"kid": key.kid}
    assert verify(sign(RECEIPT, key), [other]) is None


def test_alg_none_is_refused(key: SigningKey, published: list[dict[str, Any]]) -> None:
    head = _b64(json.dumps({"alg": "none", "kid": key.kid, "typ": JWS_TYPE}).encode())
    body = _b64(json.dumps(RECEIPT, sort_keys=True, separators=(",", ":")).encode())
    assert verify(f"{head}.{body}.", published) is None
    assert verify(f"{head}.{body}.{_b64(b'x')}", published) is None


def test_hs256_forged_with_public_key_is_refused(
    key: SigningKey, published: list[dict[str, Any]]
) -> None:
    # The classic confusion attack: HMAC keyed with the public key, which anyone has.
    public = published[0]
    head = _b64(json.dumps({"alg": "HS256", "kid": key.kid, "typ": JWS_TYPE}).encode())
    body = _b64(json.dumps(RECEIPT, sort_keys=True, separators=(",", ":")).encode())
    for secret in (_unb64(public["x"]), public["x"].encode(), json.dumps(public).encode()):
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        assert verify(f"{head}.{body}.{_b64(mac)}", published) is None
    oct_jwk = {"kty": "oct", "kid": key.kid, "k": public["x"]}
    mac = hmac.new(_unb64(public["x"]), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert verify(f"{head}.{body}.{_b64(mac)}", [oct_jwk]) is None


def test_hand_built_token_accepted_only_in_our_exact_form(
    key: SigningKey, published: list[dict[str, Any]]
) -> None:
    header = {"alg": "EdDSA", "kid": key.kid, "typ": JWS_TYPE}
    canonical = json.dumps(RECEIPT, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert verify(_raw_token(header, canonical.encode(), key), published) == (
        key.kid,
        RECEIPT,
    )
    # Each is validly signed, yet none is a receipt we issue.
    refused = [
        _raw_token({"alg": "EdDSA", "kid": key.kid}, canonical.encode(), key),
        _raw_token(header | {"typ": "JWT"}, canonical.encode(), key),
        _raw_token(header | {"b64": False, "crit": ["b64"]}, canonical.encode(), key),
        _raw_token(header, json.dumps(RECEIPT, indent=2).encode(), key),
        _raw_token(header, b'{"a":1,"a":2}', key),
        _raw_token(header, b"[1,2]", key),
        _raw_token(header, b'{"a":NaN}', key),
        _raw_token(header, b"\xff\xfe", key),
    ]
    for token in refused:
        assert verify(token, published) is None


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "a.b.c",
        "...",
        "é.é.é",
        "eyJhbGciOiJFZERTQSJ9..",
        "eyJhbGciOiJFZERTQSJ9.e30.e30.e30",
        pytest.param("x" * 5_000_000, id="5-MB"),
        "\x00\xff",
    ],
)
def test_garbage_returns_none(garbage: str, published: list[dict[str, Any]]) -> None:
    assert verify(garbage, published) is None


def test_malformed_key_list_returns_none(key: SigningKey) -> None:
    token = sign(RECEIPT, key)
    hostile: list[Any] = [None, "key", {"kid": key.kid}, {"kid": key.kid, "kty": "OKP"}]
    assert verify(token, hostile) is None


@given(text=st.text(max_size=300))
def test_any_text_returns_none(published: list[dict[str, Any]], text: str) -> None:
    assert verify(text, published) is None
