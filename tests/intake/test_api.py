"""Intake over real HTTP: receipts as PDF/HTML/text, verification, and French problem details."""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from guichet_intake import api, documents
from guichet_intake.app import create_app
from guichet_intake.schemas import (
    RECEIPT_TOKEN_MAX_LENGTH,
    ProcedureWrite,
    RequestCreate,
    RequestCreated,
)
from guichet_intake.settings import IntakeSettings
from tests.identity import counter, handler
from tests.support import serve

REQUEST = {
    "tenant": "admiville",
    "procedure": "reservation-salle",
    "channel": "web",
    "applicant": {"name": "Camille Martin", "email": "camille.martin@example.org"},
    "payload": {"salle": "Salle des fêtes"},
}


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(create_app(IntakeSettings(data_dir=data_dir))) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        yield http


def words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


async def test_r5_receipt_fetched_as_pdf_carries_every_mention(
    client: httpx.AsyncClient,
) -> None:
    created = (await client.post("/v1/requests", json=REQUEST)).json()
    ack = created["acknowledgement"]
    pdf = await client.get(f"/v1/receipts/{ack['receipt_id']}.pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(pdf.content))
    text = words(" ".join(page.extract_text() for page in reader.pages))
    assert "Accusé de réception" in text
    assert created["tracking_code"] in text
    for mention in ack["mentions"]:
        assert words(mention) in text, mention


async def test_r2_the_longest_receipt_verifies_even_as_printed(data_dir: Path) -> None:
    """The catalogue's limits at their highest, in characters of three UTF-8 bytes: the
    AR's token stays under the verification's maximum length, and verifies as the PDF
    prints it (cut into lines)."""
    app = create_app(IntakeSettings(data_dir=data_dir))
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        longest = ProcedureWrite(
            title="€" * 200,
            service="accueil",
            required_pieces=[f"{i:02d}" + "€" * 298 for i in range(50)],
            required_information=[f"{i:02d}" + "€" * 298 for i in range(50)],
            appeal_text="€" * 2000,
        )
        await app.state.intake.put_procedure("admiville", "la-plus-longue", longest)
        created = await client.post("/v1/requests", json={**REQUEST, "procedure": "la-plus-longue"})
        token = created.json()["acknowledgement"]["token"]
        assert 100_000 < len(token) < RECEIPT_TOKEN_MAX_LENGTH
        printed = "\n".join(token[i : i + 90] for i in range(0, len(token), 90)) + "\n"
        for presented in (token, printed):
            answer = await client.post("/v1/receipts/verify", json={"token": presented})
            assert answer.status_code == 200
            assert answer.json()["authentic"] is True


async def test_a_pdf_is_rendered_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long receipt takes ReportLab a tenth of a second: on the loop, every other request
    # would wait for each download.
    rendered_in: list[str] = []

    def render(document: Any, token: str | None) -> bytes:
        rendered_in.append(threading.current_thread().name)
        return documents.render_pdf(document, token)

    monkeypatch.setattr(api, "render_pdf", render)
    created = (await client.post("/v1/requests", json=REQUEST)).json()
    pdf = await client.get(f"/v1/receipts/{created['acknowledgement']['receipt_id']}.pdf")
    assert pdf.status_code == 200
    assert len(rendered_in) == 1 and rendered_in[0] != threading.current_thread().name


async def test_r5_svr_receipt_pdf_states_service_rejection_date_and_appeal(
    data_dir: Path,
) -> None:
    """Literal strings, not the mentions the API returned. Received 31 December 2026: two
    months end on 28 February 2027 (February has no 31st; 2027 is not a leap year)."""
    app = create_app(IntakeSettings(data_dir=data_dir))
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        stored = await app.state.intake.submit(
            RequestCreate.model_validate(
                {
                    **REQUEST,
                    "procedure": "subvention-quartier",
                    "applicant": {
                        "kind": "association",
                        "name": "Les Amis du Parc",
                        "rna": "W751234567",
                        "email": "amis.parc@example.org",
                    },
                }
            ),
            None,
            now=datetime(2026, 12, 31, 10, 0, tzinfo=UTC),
        )
        receipt_id = json.loads(stored.body)["acknowledgement"]["receipt_id"]
        pdf = await client.get(f"/v1/receipts/{receipt_id}.pdf")
    text = words(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages))
    assert "reçue le 31 décembre 2026" in text
    assert (
        "réputée rejetée le 28 février 2027 à minuit (soit à compter du 1er mars 2027 à 0 h)"
        in text
    )
    assert "Direction de la citoyenneté et des conseils de quartier" in text
    assert "Hôtel de ville, 1 place de la Mairie, 99999 Admiville" in text
    assert "citoyennete@admiville.example" in text
    assert "01 99 00 00 02" in text
    assert "Voies et délais de recours : la décision implicite de rejet peut être contestée" in text
    assert "recours contentieux devant le tribunal administratif" in text
    assert "Statuts de l'association" in text


async def test_r2_receipt_negotiates_html_and_text_and_verifies(
    client: httpx.AsyncClient,
) -> None:
    created = (await client.post("/v1/requests", json=REQUEST)).json()
    receipt_id = created["acknowledgement"]["receipt_id"]
    html = await client.get(f"/v1/receipts/{receipt_id}", headers={"Accept": "text/html"})
    assert html.headers["content-type"].startswith("text/html")
    assert 'lang="fr"' in html.text
    text = await client.get(f"/v1/receipts/{receipt_id}", headers={"Accept": "text/plain"})
    assert created["tracking_code"] in text.text
    as_json = (await client.get(f"/v1/receipts/{receipt_id}")).json()
    token = as_json["token"]
    assert token == created["acknowledgement"]["token"]

    genuine = (await client.post("/v1/receipts/verify", json={"token": token})).json()
    assert (genuine["authentic"], genuine["document"]) == (True, "accuse_reception")
    assert genuine["receipt"]["reception_date"] == created["reception_date"]
    head, payload, signature = token.split(".")
    # Rewrite the payload as if the reception date had been moved back a day.
    import base64
    import json

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["reception_date"] = "2020-01-01"
    forged_payload = (
        base64.urlsafe_b64encode(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
        .rstrip(b"=")
        .decode()
    )
    forged = (
        await client.post(
            "/v1/receipts/verify", json={"token": f"{head}.{forged_payload}.{signature}"}
        )
    ).json()
    assert forged == {"authentic": False, "document": None, "receipt": None, "void": None}

    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert {k["alg"] for k in keys} == {"EdDSA"}
    assert all("d" not in k for k in keys), "never a private part"


@pytest.mark.parametrize(
    ("change", "field", "status", "french"),
    [
        (
            {"procedure": "permis-de-voler"},
            "procedure",
            404,
            "n'existe pas pour cette collectivité",
        ),
        (
            {
                "procedure": "subvention-quartier",
                "applicant": {
                    "kind": "company",
                    "name": "SARL Dupont",
                    "siret": "73282932000075",
                    "email": "contact@dupont.example",
                },
            },
            "applicant.siret",
            422,
            "clé de contrôle",
        ),
        (
            {"procedure": "inscription-periscolaire"},
            "applicant.family_name",
            422,
            "Indiquez le nom de famille",
        ),
        (
            # 201 characters as sent: the schema's maximum is 200, trimmed or not.
            {"applicant": {"name": " " + "C" * 199 + " ", "email": "c@example.org"}},
            "applicant.name",
            422,
            "trop long (au plus 200 caractères)",
        ),
        (
            {"applicant": {"name": "   ", "email": "c@example.org"}},
            "applicant.name",
            422,
            "trop court une fois retirés les espaces",
        ),
        # A code is checked as sent, as its pattern says.
        ({"tenant": "admiville "}, "tenant", 422, "format attendu"),
        # A phone number has digits: spaces and dots alone would be stored empty.
        (
            {"applicant": {"name": "Camille Martin", "phone": " . . . . "}},
            "applicant.phone",
            422,
            "format attendu",
        ),
    ],
)
async def test_bad_input_is_a_french_problem_naming_the_field(
    client: httpx.AsyncClient, change: dict[str, object], field: str, status: int, french: str
) -> None:
    answer = await client.post("/v1/requests", json={**REQUEST, **change})
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert field in [p["name"] for p in problem["invalid-params"]]
    said = problem["detail"] + " ".join(p["reason"] for p in problem["invalid-params"])
    assert french in said


def test_free_text_and_phone_numbers_are_stored_trimmed() -> None:
    data = RequestCreate.model_validate(
        {
            **REQUEST,
            "contact_preference": "sms",
            "applicant": {"name": " Camille Martin\n", "phone": " 06 12 34 56 78 "},
        }
    )
    assert (data.applicant.name, data.applicant.phone) == ("Camille Martin", "06 12 34 56 78")


async def test_missing_pieces_deadline_in_the_past_names_the_field(
    client: httpx.AsyncClient,
) -> None:
    created = (await client.post("/v1/requests", json=REQUEST)).json()
    answer = await client.post(
        f"/v1/requests/{created['tracking_code']}/missing-pieces",
        json={"pieces": ["Plan"], "due_on": "2020-01-01"},
        headers=handler("accueil"),
    )
    assert answer.status_code == 422
    assert answer.json()["invalid-params"][0]["name"] == "due_on"


async def test_r10_public_sva_listing_needs_no_login(client: httpx.AsyncClient) -> None:
    listing = await client.get("/v1/procedures/sva", params={"tenant": "admiville"})
    assert listing.status_code == 200
    # SVA is the law's default (L231-1): every demande of the demo catalogue but the copy of
    # a civil-status record, which seeks no decision.
    assert [i["code"] for i in listing.json()["items"]] == [
        "inscription-periscolaire",
        "reservation-salle",
    ]


async def test_the_answer_to_a_submission_is_the_models_own_serialisation(
    client: httpx.AsyncClient,
) -> None:
    """The answer is written from plain data at every submission: byte for byte what
    `RequestCreated` itself writes, for every kind of receipt, and what a read shows."""
    address = {"street": "2 rue Haute", "postal_code": "99999", "city": "Admiville"}
    identified = {
        **REQUEST["applicant"],  # type: ignore[dict-item]
        "family_name": "Martin",
        "given_name": "Camille",
        "postal_address": address,
    }
    catalogue = (await client.get("/v1/procedures", params={"tenant": "admiville"})).json()
    association = {**identified, "kind": "association", "rna": "W751234567"}
    bodies = [
        {
            **REQUEST,
            "procedure": p["code"],
            "applicant": association if p["identification"] == "association" else identified,
            "location": {"latitude": 48.85, "longitude": 2.35},
        }
        for p in catalogue["items"]
    ]
    paper = {"name": "Jean Dupont", "postal_address": address}
    bodies += [
        {**REQUEST, "procedure": None, "channel": "email"},  # an AE
        {**REQUEST, "channel": "counter", "applicant": paper, "contact_preference": "letter"},
    ]
    bodies += [{**REQUEST, "payload": {"même": "contenu"}}] * 3  # the third is flagged (R9)
    kinds = set()
    for body in bodies:
        headers = counter() if body["channel"] == "counter" else {}
        answer = await client.post("/v1/requests", json=body, headers=headers)
        assert answer.status_code == 201, answer.text
        assert RequestCreated.model_validate_json(answer.content).model_dump_json() == answer.text
        created = answer.json()
        kinds.add(created["acknowledgement"] and created["acknowledgement"]["kind"])
        follow = created.pop("follow_url")
        read = await client.get(follow.split("/intake", 1)[1])
        assert read.json() == created
    assert kinds == {"accuse_reception", "accuse_enregistrement", None}


async def test_r2_the_verification_address_printed_on_receipts_opens_in_a_browser(
    client: httpx.AsyncClient,
) -> None:
    # A notary or a judge types the printed address: a form, then the verdict in French.
    created = (await client.post("/v1/requests", json=REQUEST)).json()
    ack = created["acknowledgement"]
    page = await client.get("/v1/receipts/verify")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="fr">' in page.text and 'name="token"' in page.text
    # Copied from the PDF, line breaks and all.
    printed = "\n".join(ack["token"][i : i + 60] for i in range(0, len(ack["token"]), 60))
    authentic = await client.get("/v1/receipts/verify", params={"token": printed})
    assert authentic.headers["cache-control"] == "no-store"
    text = words(re.sub(r"<[^>]+>", " ", authentic.text))
    assert "Document authentique" in text and "non reconnu" not in text
    assert f"Numéro de suivi : {created['tracking_code']}." in text
    assert "Accusé de réception, signé par Commune d&#39;Admiville." in text
    head, payload, signature = ack["token"].split(".")
    tampered = ".".join(
        (head, payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB"), signature)
    )
    forged = await client.get("/v1/receipts/verify", params={"token": tampered})
    assert "Document non reconnu" in forged.text and "Document authentique" not in forged.text
    # What no JWS holds is refused before anything is echoed back.
    hostile = await client.get("/v1/receipts/verify", params={"token": "<script>"})
    assert hostile.status_code == 422
    assert hostile.headers["content-type"] == "application/problem+json"
