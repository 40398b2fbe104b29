"""Receipts as read by the applicant (R5): every mention, in French, in text, HTML and PDF."""

from __future__ import annotations

import html
import io
import re
from datetime import UTC, date, datetime
from typing import Any, get_args

import pytest
from pydantic import ValidationError
from pypdf import PdfReader

from guichet_intake.documents import (
    ReceiptDocument,
    ReceiptKind,
    french_date,
    french_datetime,
    render_html,
    render_pdf,
    render_text,
)

KINDS: tuple[str, ...] = get_args(ReceiptKind)
TITLES = {
    "accuse_reception": "Accusé de réception",
    "accuse_enregistrement": "Accusé d'enregistrement",
    "attestation_acceptation_implicite": "Attestation d'acceptation implicite",
    "demande_pieces": "Demande de pièces complémentaires",
    "avis_transmission": "Avis de transmission de votre demande",
}
MENTIONS = [
    "Votre demande a été reçue le 15 mai 2026.",
    "Service chargé de votre dossier : Service de l'urbanisme, 1 place de la Mairie, "
    "69001 Lyon, courriel : urbanisme@lyon.example, téléphone : 04 72 00 00 00.",
    "Cette demande peut donner lieu à une décision implicite d'acceptation : en l'absence "
    "de réponse de l'administration dans un délai de deux mois, et si votre dossier est "
    "complet, elle sera réputée acceptée le 15 juillet 2026 à minuit.",
    "Vous pourrez obtenir, sur simple demande, une attestation d'acceptation implicite.",
]
# A notice of transfer names the service the request left, not one still in charge (R12).
SERVICE_HEADINGS = {
    kind: "Service qui a transmis votre demande"
    if kind == "avis_transmission"
    else "Service chargé de votre dossier"
    for kind in KINDS
}
TOKEN = "eyJhbGciOiJFZERTQSJ9." + "eyJhIjoxfQ" * 40 + ".c2lnbmF0dXJl" * 6


def _doc(**changes: Any) -> ReceiptDocument:
    values: dict[str, Any] = {
        "kind": "accuse_reception",
        "receipt_id": "5f0e6c1e-2a51-4a53-9a43-0d5d1f1c2b7a",
        "tenant": "lyon",
        "tenant_name": "Ville de Lyon",
        "tracking_code": "LYON-2026-000042",
        "issued_at": datetime(2026, 5, 15, 9, 30, tzinfo=UTC),
        "timezone": "Europe/Paris",
        "reception_date": date(2026, 5, 15),
        "procedure_title": "Déclaration préalable de travaux",
        "applicant_name": "Camille Dupré",
        "service_designation": "Service de l'urbanisme",
        "service_postal_address": "1 place de la Mairie\n69001 Lyon",
        "service_email": "urbanisme@lyon.example",
        "service_phone": "04 72 00 00 00",
        "mentions": MENTIONS,
        "verification_url": "https://guichet.lyon.example/v1/receipts/verify",
    }
    return ReceiptDocument(**(values | changes))


def _flat(text: str) -> str:
    # pypdf and wrapping both move line breaks around: compare words, not layout.
    return " ".join(text.split())


def _pdf_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return _flat(" ".join(pdf_page.extract_text() for pdf_page in reader.pages))


def _html_text(page: str) -> str:
    # What a reader sees: tags dropped, entities (&#39; for ') decoded.
    return _flat(html.unescape(re.sub(r"<[^>]+>", " ", page)))


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 5, 15), "15 mai 2026"),
        (date(2026, 7, 1), "1er juillet 2026"),
        (date(2026, 2, 28), "28 février 2026"),
        (date(2027, 8, 2), "2 août 2027"),
        (date(2026, 12, 31), "31 décembre 2026"),
    ],
)
def test_french_date(day: date, expected: str) -> None:
    assert french_date(day) == expected


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        # Reception is a local date: 23:30 UTC in winter is already the next day in Paris.
        ("Europe/Paris", "15 janvier 2026 à 0 h 30"),
        ("America/Martinique", "14 janvier 2026 à 19 h 30"),
        ("UTC", "14 janvier 2026 à 23 h 30"),
    ],
)
def test_french_datetime_in_tenant_zone(zone: str, expected: str) -> None:
    assert french_datetime(datetime(2026, 1, 14, 23, 30, tzinfo=UTC), zone) == expected


def test_french_datetime_summer_time_and_naive() -> None:
    assert french_datetime(datetime(2026, 5, 15, 9, 30, tzinfo=UTC), "Europe/Paris") == (
        "15 mai 2026 à 11 h 30"
    )
    assert french_datetime(datetime(2026, 5, 15, 7, 5, tzinfo=UTC), "Europe/Paris") == (
        "15 mai 2026 à 9 h 05"
    )
    with pytest.raises(ValueError, match="naive"):
        french_datetime(datetime(2026, 5, 15, 9, 30), "Europe/Paris")


def test_issue_time_shown_in_tenant_zone_in_every_format() -> None:
    issued = datetime(2026, 1, 14, 23, 30, tzinfo=UTC)
    paris = _doc(issued_at=issued)
    martinique = _doc(issued_at=issued, timezone="America/Martinique")
    assert "le 15 janvier 2026 à 0 h 30" in render_text(paris)
    assert "le 15 janvier 2026 à 0 h 30" in render_html(paris, None)
    assert "le 15 janvier 2026 à 0 h 30" in _pdf_text(render_pdf(paris, None))
    assert "le 14 janvier 2026 à 19 h 30" in render_text(martinique)
    assert "le 14 janvier 2026 à 19 h 30" in render_html(martinique, None)
    assert "le 14 janvier 2026 à 19 h 30" in _pdf_text(render_pdf(martinique, None))


def test_model_refuses_unknown_zone_naive_time_and_unknown_kind() -> None:
    with pytest.raises(ValidationError):
        _doc(timezone="Europe/Lutèce")
    with pytest.raises(ValidationError):
        _doc(issued_at=datetime(2026, 5, 15, 9, 30))
    with pytest.raises(ValidationError):
        _doc(kind="courrier")


def test_model_round_trips_through_json() -> None:
    doc = _doc()
    assert ReceiptDocument.model_validate(doc.model_dump(mode="json")) == doc


@pytest.mark.parametrize("kind", KINDS)
def test_r5_text_and_html_carry_every_mention(kind: str) -> None:
    doc = _doc(kind=kind, reception_date=date(2026, 7, 1))
    text = render_text(doc)
    page = render_html(doc, TOKEN)
    assert f"\n{SERVICE_HEADINGS[kind]} :\nService de l'urbanisme\n" in text
    assert f'<h2 id="service">{SERVICE_HEADINGS[kind]}</h2>' in html.unescape(page)
    for rendered in (text, _html_text(page)):
        assert TITLES[kind] in rendered
        assert "LYON-2026-000042" in rendered
        assert "Service de l'urbanisme" in rendered
        assert "1er juillet 2026" in rendered
        assert "Ville de Lyon" in rendered
        assert "urbanisme@lyon.example" in rendered
        assert "04 72 00 00 00" in rendered
        positions = [rendered.index(mention) for mention in MENTIONS]
        assert positions == sorted(positions), "mentions must keep their order"
    # Each mention is its own paragraph, verbatim once entities are decoded.
    paragraphs = [html.unescape(p) for p in re.findall(r"<p>(.*?)</p>", page, re.S)]
    for mention in MENTIONS:
        assert mention in paragraphs


def test_html_is_a_complete_accessible_page() -> None:
    page = render_html(_doc(), TOKEN)
    assert page.startswith("<!DOCTYPE html>")
    assert '<html lang="fr">' in page
    assert "<title>Accusé de réception" in page
    assert "<h1>Accusé de réception</h1>" in page
    assert '<time datetime="2026-05-15">15 mai 2026</time>' in page
    assert "le 15 mai 2026 à 11 h 30" in page
    assert f'<pre aria-label="Jeton signé (JWS)"><code>{TOKEN}</code></pre>' in page
    assert "https://guichet.lyon.example/v1/receipts/verify" in page
    # Self-contained: nothing fetched from elsewhere.
    assert not re.search(r"<(link|script|img|iframe)\b", page)
    assert "@import" not in page and "url(" not in page


def test_html_without_token_has_no_signature_block() -> None:
    page = render_html(_doc(), None)
    assert "<pre" not in page and "Signature électronique" not in page


def test_html_escapes_hostile_input() -> None:
    hostile = "<script>alert(1)</script>"
    doc = _doc(
        applicant_name=hostile,
        tenant_name=f"Ville {hostile}",
        procedure_title=f'"><img src=x onerror=alert(1)>{hostile}',
        service_email='a@b.example"><script>alert(2)</script>',
        mentions=[*MENTIONS, hostile],
    )
    page = render_html(doc, f"{hostile}.x.y")
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("kind", KINDS)
def test_r5_receipt_pdf_contains_every_mention(kind: str) -> None:
    pdf = render_pdf(_doc(kind=kind), TOKEN)
    assert pdf.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(pdf))
    text = _pdf_text(pdf)
    assert TITLES[kind] in text
    assert "LYON-2026-000042" in text
    assert "15 mai 2026" in text
    assert f"{SERVICE_HEADINGS[kind]} Service de l'urbanisme 1 place de la Mairie" in text
    assert "1 place de la Mairie 69001 Lyon" in text
    for mention in MENTIONS:
        assert _flat(mention) in text
    # The JWS is there in full, cut over lines (Courier, hence no hidden hyphenation).
    assert TOKEN in "".join(text.split())
    assert reader.metadata is not None
    assert reader.metadata.title == f"{TITLES[kind]} – LYON-2026-000042"
    assert reader.metadata.author == "Ville de Lyon"
    assert reader.metadata.subject is not None and "LYON-2026-000042" in reader.metadata.subject
    assert reader.pages[0].mediabox.width == pytest.approx(595.2756, abs=0.01)  # A4


def test_pdf_french_typography_round_trips() -> None:
    mention = (
        "Le maire vous rappelle « l’œuvre » du cœur : à Noël, ça déçoit ; "
        "ÉÈÀÇÔŒ « Ô » — fin’ ‘simple’ “double” …"
    )
    text = _pdf_text(render_pdf(_doc(mentions=[mention]), None))
    assert _flat(mention) in text


def test_pdf_replaces_glyphs_the_standard_fonts_lack() -> None:
    # Narrow no-break space (French typography) and letters outside WinAnsi would
    # otherwise come out as black squares.
    doc = _doc(
        applicant_name="Łucja Nguyễn",
        mentions=["Délai\u202f: deux mois\u202f; « voilà »", "Ștefan"],
    )
    text = _pdf_text(render_pdf(doc, None))
    assert "Lucja Nguyen" in text
    assert "Délai : deux mois ; « voilà »" in text
    assert "Stefan" in text
    assert "■" not in text


def test_pdf_wraps_long_text_and_spans_pages() -> None:
    long_mention = " ".join(["Pièce justificative demandée au titre de l’article R. 431-36."] * 12)
    doc = _doc(mentions=[long_mention] * 8, applicant_name="<b>Gras</b> & Cie")
    pdf = render_pdf(doc, TOKEN)
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) >= 2
    # Each page's footer is extracted amid a paragraph split across pages: drop it.
    text = _flat(re.sub(r"Accusé de réception – LYON-2026-000042 page \d+", " ", _pdf_text(pdf)))
    assert text.count(_flat(long_mention)) == 8
    assert "<b>Gras</b> & Cie" in text


def test_optional_fields_are_left_out() -> None:
    doc = _doc(
        procedure_title=None,
        service_email=None,
        service_phone=None,
        service_postal_address="",
        verification_url=None,
    )
    text = render_text(doc)
    assert "Démarche" not in text and "Courriel" not in text and "Téléphone" not in text
    page = render_html(doc, TOKEN)
    assert "mailto:" not in page and "tel:" not in page
    assert "avec les clés publiques de Ville de Lyon" in page
    assert "Démarche" not in _pdf_text(render_pdf(doc, TOKEN))


def test_r2_the_printed_token_is_never_cut_by_a_page_break() -> None:
    """Whatever the length of the mentions before it, the token is printed whole on one
    page, so a copy of it never takes the page's footer along."""
    for extra in range(0, 40):
        mentions = [*MENTIONS, *(f"Pièce exigée n° {n} : justificatif." for n in range(extra))]
        reader = PdfReader(io.BytesIO(render_pdf(_doc(mentions=mentions), TOKEN)))
        pages = ["".join(page.extract_text().split()) for page in reader.pages]
        assert any(TOKEN in page for page in pages), f"token cut with {extra} more mentions"
