"""Receipts as the applicant reads them (R5): French plain text, HTML page and A4 PDF.

All three formats show the same content; the caller has already written the legal
sentences (`mentions`), which are reproduced verbatim and in order.
"""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal
from xml.sax.saxutils import escape as xml_escape
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, StrictUndefined
from pydantic import AwareDatetime, BaseModel, ConfigDict, field_validator

# reportlab ships no type information (no py.typed, types-reportlab not installed).
from reportlab.lib import colors  # type: ignore[import-untyped]
from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped]
from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped]
from reportlab.lib.units import cm  # type: ignore[import-untyped]
from reportlab.pdfbase.pdfmetrics import stringWidth  # type: ignore[import-untyped]
from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped]
from reportlab.platypus import (  # type: ignore[import-untyped]
    Flowable,
    KeepTogether,
    Paragraph,
    Preformatted,
    SimpleDocTemplate,
    Spacer,
)

__all__ = [
    "TITLES",
    "ReceiptDocument",
    "ReceiptKind",
    "french_date",
    "french_datetime",
    "render_html",
    "render_pdf",
    "render_text",
    "render_verification",
]

ReceiptKind = Literal[
    "accuse_reception",
    "accuse_enregistrement",
    "attestation_acceptation_implicite",
    "demande_pieces",
    "avis_transmission",
]

TITLES: dict[str, str] = {
    "accuse_reception": "Accusé de réception",
    "accuse_enregistrement": "Accusé d'enregistrement",
    "attestation_acceptation_implicite": "Attestation d'acceptation implicite",
    "demande_pieces": "Demande de pièces complémentaires",
    "avis_transmission": "Avis de transmission de votre demande",
}

_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


class ReceiptDocument(BaseModel):
    """What a receipt says; stored as JSON and signed as such, rendered on demand."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ReceiptKind
    receipt_id: str
    # The collectivité's code: a receipt is authentic only if signed by one of its keys.
    # Absent from receipts issued before it was signed.
    tenant: str | None = None
    tenant_name: str
    tracking_code: str
    issued_at: AwareDatetime
    timezone: str
    reception_date: date
    procedure_title: str | None
    applicant_name: str
    service_designation: str
    service_postal_address: str
    service_email: str | None
    service_phone: str | None
    mentions: list[str]
    verification_url: str | None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # A stored document read back names a zone the renderer knows (a tenant's zone is
        # checked when the tenant is written, `repository.upsert_tenant`).
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown IANA time zone: {value!r}") from error
        return value

    @property
    def title(self) -> str:
        return TITLES[self.kind]


def french_date(d: date) -> str:
    """'15 mai 2026', '1er juillet 2026' (ordinal only for the first of the month)."""
    day = "1er" if d.day == 1 else str(d.day)
    return f"{day} {_MONTHS[d.month - 1]} {d.year}"


def french_datetime(dt: datetime, timezone: str) -> str:
    """'15 mai 2026 à 11 h 30' in `timezone`: the applicant's legal time, not the server's."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime refused: the instant would be ambiguous")
    local = dt.astimezone(ZoneInfo(timezone))
    return f"{french_date(local.date())} à {local.hour} h {local.minute:02d}"


# -- shared content ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Content:
    """One reading of the document, so text, HTML and PDF cannot drift apart."""

    title: str
    tenant_name: str
    facts: list[tuple[str, str]]
    service_heading: str
    service_designation: str
    address_lines: list[str]
    email: str | None
    phone: str | None
    mentions: list[str]
    issued_when: str
    timezone: str
    reference: str
    verification_url: str | None


def _content(doc: ReceiptDocument) -> _Content:
    facts = [("Numéro de suivi", doc.tracking_code)]
    if doc.procedure_title:
        facts.append(("Démarche", doc.procedure_title))
    facts += [
        ("Demandeur", doc.applicant_name),
        ("Date de réception", french_date(doc.reception_date)),
    ]
    return _Content(
        title=doc.title,
        tenant_name=doc.tenant_name,
        facts=facts,
        # A notice of transfer comes from the service the request left (R12): the one in
        # charge of it now is named in its mentions.
        service_heading="Service qui a transmis votre demande"
        if doc.kind == "avis_transmission"
        else "Service chargé de votre dossier",
        service_designation=doc.service_designation,
        address_lines=[line.strip() for line in doc.service_postal_address.splitlines()]
        if doc.service_postal_address.strip()
        else [],
        email=doc.service_email or None,
        phone=doc.service_phone or None,
        mentions=list(doc.mentions),
        issued_when=french_datetime(doc.issued_at, doc.timezone),
        timezone=doc.timezone,
        reference=f"Référence du document : {doc.receipt_id}",
        verification_url=doc.verification_url or None,
    )


def _issued_sentence(content: _Content) -> str:
    # The zone is named: a Martinique receipt read in Paris must not seem hours off.
    return f"Document délivré le {content.issued_when} (heure locale, fuseau {content.timezone})."


def _signature_sentence(content: _Content) -> str:
    where = (
        f"sur {content.verification_url}"
        if content.verification_url
        else f"avec les clés publiques de {content.tenant_name}"
    )
    return (
        "Le jeton ci-dessous est la signature électronique de ce document : il prouve "
        "que son contenu n’a pas été modifié et atteste sa date de délivrance ; il peut "
        f"être vérifié {where}."
    )


# -- plain text -------------------------------------------------------------------------------


def render_text(doc: ReceiptDocument) -> str:
    """Plain-text version (e-mail body, SMS gateways); lines left unwrapped for the client."""
    c = _content(doc)
    lines = [c.tenant_name, "", c.title, "=" * len(c.title), ""]
    lines += [f"{label} : {value}" for label, value in c.facts]
    lines += ["", f"{c.service_heading} :", c.service_designation, *c.address_lines]
    if c.email:
        lines.append(f"Courriel : {c.email}")
    if c.phone:
        lines.append(f"Téléphone : {c.phone}")
    for mention in c.mentions:
        lines += ["", mention]
    lines += ["", _issued_sentence(c), c.reference]
    if c.verification_url:
        lines.append(f"Vérifier l’authenticité de ce document : {c.verification_url}")
    return "\n".join(lines) + "\n"


# -- HTML -------------------------------------------------------------------------------------

_HTML = """\
<!DOCTYPE html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>{{ c.title }} – {{ tracking_code }} – {{ c.tenant_name }}</title>
<style>
  :root { color-scheme: light; }
  body { font-family: Marianne, Arial, Helvetica, sans-serif; font-size: 1rem;
         line-height: 1.5; color: #161616; background: #fff; margin: 0; }
  .page { max-width: 48rem; margin: 0 auto; padding: 2rem 1.5rem; }
  header { border-bottom: 3px solid #000091; margin-bottom: 1.5rem; }
  .collectivite { font-weight: bold; margin: 0; }
  h1 { font-size: 1.75rem; color: #000091; margin: 0.5rem 0 1rem; }
  h2 { font-size: 1.15rem; margin: 1.75rem 0 0.5rem; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1rem; margin: 0; }
  dt { font-weight: bold; }
  dd { margin: 0; overflow-wrap: anywhere; }
  address { font-style: normal; }
  a { color: #000091; }
  .signature { border-top: 1px solid #929292; margin-top: 2rem; font-size: 0.9rem; }
  pre { font-family: "Courier New", Courier, monospace; font-size: 0.8rem;
        white-space: pre-wrap; word-break: break-all; background: #f6f6f6;
        border: 1px solid #ddd; padding: 0.75rem; }
  @page { size: A4; margin: 2cm; }
  @media print {
    .page { max-width: none; padding: 0; }
    a { color: inherit; text-decoration: none; }
    pre { background: none; }
  }
</style>
</head>
<body>
<div class="page">
<header>
  <p class="collectivite">{{ c.tenant_name }}</p>
  <h1>{{ c.title }}</h1>
</header>
<main>
  <section aria-labelledby="dossier">
    <h2 id="dossier">Votre dossier</h2>
    <dl>
      {%- for label, value in c.facts %}
      <dt>{{ label }}</dt>
      <dd>{% if label == "Date de réception" -%}
        <time datetime="{{ reception_iso }}">{{ value }}</time>
      {%- else %}{{ value }}{% endif %}</dd>
      {%- endfor %}
    </dl>
  </section>
  <section aria-labelledby="service">
    <h2 id="service">{{ c.service_heading }}</h2>
    <address>
      <strong>{{ c.service_designation }}</strong>
      {%- for line in c.address_lines %}<br>
      {{ line }}{% endfor %}
      {%- if c.email %}<br>
      Courriel : <a href="mailto:{{ c.email }}">{{ c.email }}</a>{% endif %}
      {%- if c.phone %}<br>
      Téléphone : <a href="tel:{{ phone_uri }}">{{ c.phone }}</a>{% endif %}
    </address>
  </section>
  <section aria-labelledby="mentions">
    <h2 id="mentions">Informations relatives à votre demande</h2>
    {%- for mention in c.mentions %}
    <p>{{ mention }}</p>
    {%- endfor %}
  </section>
</main>
<footer>
  <p>Document délivré <time datetime="{{ issued_iso }}">le {{ c.issued_when }}</time>
    (heure locale, fuseau {{ c.timezone }}).<br>{{ c.reference }}</p>
  {%- if token %}
  <section class="signature" aria-labelledby="signature">
    <h2 id="signature">Signature électronique</h2>
    <p>{{ signature_sentence }}</p>
    <pre aria-label="Jeton signé (JWS)"><code>{{ token }}</code></pre>
  </section>
  {%- endif %}
</footer>
</div>
</body>
</html>
"""

# Autoescape everywhere: applicant names and mentions come from outside.
_ENV = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
_HTML_TEMPLATE = _ENV.from_string(_HTML)


def render_html(doc: ReceiptDocument, token: str | None) -> str:
    """A complete, printable, self-contained French HTML page."""
    c = _content(doc)
    return _HTML_TEMPLATE.render(
        c=c,
        tracking_code=doc.tracking_code,
        reception_iso=doc.reception_date.isoformat(),
        issued_iso=doc.issued_at.isoformat(),
        phone_uri="".join(ch for ch in (c.phone or "") if ch.isdigit() or ch == "+"),
        token=token,
        signature_sentence=_signature_sentence(c),
    )


# -- PDF --------------------------------------------------------------------------------------

# Characters the standard PDF fonts (WinAnsi) lack; reportlab would draw them as black
# squares. French typography's narrow no-break space is the usual culprit.
_WINANSI_FALLBACK = {
    "\u202f": "\u00a0",  # espace fine insécable
    "\u2007": "\u00a0",
    "\u2009": " ",
    "\u200a": " ",
    "\u2002": " ",
    "\u2003": " ",
    "\u2010": "-",
    "\u2011": "-",
    "\u2212": "-",
    "\u2032": "'",
    "\u200b": "",
    "\u2060": "",
    "\ufeff": "",
    "ł": "l",
    "Ł": "L",
    "đ": "d",
    "Đ": "D",
    "ı": "i",
}


def _winansi(text: str) -> str:
    """Keep what WinAnsi can show; otherwise the nearest letter (ș → s), else leave it."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        try:
            ch.encode("cp1252")
        except UnicodeEncodeError:
            if ch in _WINANSI_FALLBACK:
                ch = _WINANSI_FALLBACK[ch]
            else:
                base = "".join(
                    b for b in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(b)
                )
                try:
                    base.encode("cp1252")
                    ch = base or ch
                except UnicodeEncodeError:
                    pass  # reportlab may still find it in the Symbol font (→, ≥)
        out.append(ch)
    return "".join(out)


def _markup(text: str) -> str:
    # Paragraph reads a small XML dialect: a "<" in a name must not become a tag.
    return xml_escape(_winansi(text))


_BODY = ParagraphStyle("body", fontName="Helvetica", fontSize=10.5, leading=14, spaceAfter=6)
_SMALL = ParagraphStyle("small", parent=_BODY, fontSize=9, leading=12, spaceAfter=2)
_TENANT = ParagraphStyle("tenant", parent=_BODY, fontName="Helvetica-Bold", fontSize=11)
_TITLE = ParagraphStyle(
    "title",
    parent=_BODY,
    fontName="Helvetica-Bold",
    fontSize=18,
    leading=22,
    spaceBefore=4,
    spaceAfter=12,
    textColor=colors.HexColor("#000091"),
)
_HEADING = ParagraphStyle(
    "heading", parent=_BODY, fontName="Helvetica-Bold", fontSize=12, spaceBefore=10
)
_MONO = ParagraphStyle("mono", fontName="Courier", fontSize=7.5, leading=9.5)

_MARGIN = 2 * cm
_FRAME_PADDING = 6  # SimpleDocTemplate's frame pads each side by 6 pt


def _token_lines(token: str, width: float) -> str:
    # A JWS has no spaces to break on: cut it ourselves, as many Courier glyphs as fit.
    per_line = max(16, int(width // stringWidth("M", _MONO.fontName, _MONO.fontSize)) - 1)
    return "\n".join(token[i : i + per_line] for i in range(0, len(token), per_line))


def render_pdf(doc: ReceiptDocument, token: str | None) -> bytes:
    """A4 PDF with the same content as the HTML page, the JWS at the end."""
    c = _content(doc)
    buffer = io.BytesIO()
    pdf = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=_MARGIN,
        rightMargin=_MARGIN,
        topMargin=_MARGIN,
        bottomMargin=_MARGIN,
        title=_winansi(f"{c.title} – {doc.tracking_code}"),
        author=_winansi(c.tenant_name),
        subject=_winansi(f"{c.title} – dossier {doc.tracking_code} – {c.service_designation}"),
        creator="Guichet",
        lang="fr-FR",
        displayDocTitle=1,
    )
    story: list[Flowable] = [
        Paragraph(_markup(c.tenant_name), _TENANT),
        Paragraph(_markup(c.title), _TITLE),
    ]
    story += [Paragraph(f"<b>{_markup(k)} :</b> {_markup(v)}", _BODY) for k, v in c.facts]
    story.append(Paragraph(_markup(c.service_heading), _HEADING))
    service = [f"<b>{_markup(c.service_designation)}</b>", *map(_markup, c.address_lines)]
    if c.email:
        service.append(f"Courriel : {_markup(c.email)}")
    if c.phone:
        service.append(f"Téléphone : {_markup(c.phone)}")
    story.append(Paragraph("<br/>".join(service), _BODY))
    story.append(Paragraph("Informations relatives à votre demande", _HEADING))
    story += [Paragraph(_markup(mention), _BODY) for mention in c.mentions]
    story += [Spacer(1, 8), Paragraph(_markup(_issued_sentence(c)), _SMALL)]
    story.append(Paragraph(_markup(c.reference), _SMALL))
    if token:
        width = A4[0] - 2 * _MARGIN - 2 * _FRAME_PADDING
        # On one page when it fits: copied across a page break, the footer would come too.
        signature = [
            Paragraph("Signature électronique", _HEADING),
            Paragraph(_markup(_signature_sentence(c)), _SMALL),
            Spacer(1, 4),
            Preformatted(_token_lines(token, width), _MONO),
        ]
        story.append(KeepTogether(signature))

    footer = _winansi(f"{c.title} – {doc.tracking_code}")

    def number_page(canvas: Canvas, _: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(colors.HexColor("#666666"))
        canvas.drawString(_MARGIN, _MARGIN / 2, footer)
        canvas.drawRightString(A4[0] - _MARGIN, _MARGIN / 2, f"page {canvas.getPageNumber()}")
        canvas.restoreState()

    pdf.build(story, onFirstPage=number_page, onLaterPages=number_page)
    return buffer.getvalue()


_VERIFICATION_HTML = """<!DOCTYPE html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ verdict or "Vérifier un document signé" }}</title>
<style>
  body { font-family: Marianne, Arial, Helvetica, sans-serif; font-size: 1rem;
         line-height: 1.5; color: #161616; background: #fff; margin: 0; }
  .page { max-width: 48rem; margin: 0 auto; padding: 2rem 1.5rem; }
  h1 { font-size: 1.75rem; color: #000091; }
  .verdict { border-left: 4px solid {{ colour }}; padding: 0.5rem 1rem; margin: 1rem 0; }
  label { display: block; font-weight: bold; margin-bottom: 0.5rem; }
  textarea { width: 100%; font-family: "Courier New", Courier, monospace; font-size: 0.8rem; }
  button { margin-top: 0.75rem; padding: 0.5rem 1.5rem; font-size: 1rem; color: #fff;
           background: #000091; border: 0; }
</style>
</head>
<body>
<div class="page">
<main>
  <h1>Vérifier un document signé</h1>
  {%- if verdict %}
  <section class="verdict" role="status" aria-labelledby="verdict">
    <h2 id="verdict">{{ verdict }}</h2>
    {%- for line in details %}
    <p>{{ line }}</p>
    {%- endfor %}
  </section>
  {%- endif %}
  <form method="get">
    <label for="token">Jeton signé (JWS) imprimé au bas de l'accusé ou de l'attestation</label>
    <textarea id="token" name="token" rows="8" required>{{ token }}</textarea>
    <p>Copiez-le en entier ; les retours à la ligne sont ignorés.</p>
    <button type="submit">Vérifier</button>
  </form>
</main>
</div>
</body>
</html>
"""
_VERIFICATION_TEMPLATE = _ENV.from_string(_VERIFICATION_HTML)


def render_verification(
    token: str, authentic: bool | None, document: dict[str, Any] | None, void: str | None
) -> str:
    """R2: the page a citizen, a notary or a judge opens at the address a receipt prints:
    a form for the token and, once sent, whether it is authentic and what was signed.
    `authentic` None: no token sent yet."""
    details: list[str] = []
    if authentic is None:
        verdict, colour = "", "#000091"
    elif not authentic:
        verdict, colour = "Document non reconnu", "#ce0500"
        details.append(
            "Ce jeton n'est pas signé par une collectivité de ce guichet, ou il a été modifié "
            "depuis : le document qui le porte n'est pas authentique."
        )
    else:
        signed = document or {}
        verdict, colour = "Document authentique", "#18753c"
        title = TITLES.get(str(signed.get("kind")), "Transmission d'une demande")
        who = signed.get("tenant_name") or signed.get("from") or signed.get("tenant")
        details.append(f"{title}, signé par {who}.")
        if isinstance(signed.get("issued_at"), str) and signed.get("timezone"):
            try:
                issued = datetime.fromisoformat(signed["issued_at"])
                details.append(
                    f"Délivré le {french_datetime(issued, signed['timezone'])} (heure locale)."
                )
            except (ValueError, LookupError):  # an instant or a zone that cannot be
                pass
        if signed.get("tracking_code"):
            details.append(f"Numéro de suivi : {signed['tracking_code']}.")
        details += [str(m) for m in signed.get("mentions") or []]
        if void:
            verdict, colour = "Document authentique, qui ne vaut plus", "#b34000"
            details.append(void)
    return _VERIFICATION_TEMPLATE.render(
        verdict=verdict, colour=colour, details=details, token=token
    )
