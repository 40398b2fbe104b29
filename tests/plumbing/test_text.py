"""Free text: lengths as the published schema says (as sent), then trimmed."""

from __future__ import annotations

from typing import Annotated, Self

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from guichet_plumbing.problems import french_reason
from guichet_plumbing.text import Text, field_error


class Form(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Text(1, 10)]
    note: Annotated[str, Text(max_length=10)] | None = None
    pieces: list[Annotated[str, Text(3, 10)]] = Field(default_factory=list, max_length=3)


def refusal(**fields: object) -> dict[str, object]:
    with pytest.raises(ValidationError) as refused:
        Form.model_validate({"name": "Camille", **fields})
    [error] = refused.value.errors()
    return dict(error)


def test_the_schema_publishes_the_limits_it_checks() -> None:
    schema = Form.model_json_schema()["properties"]
    assert schema["name"] == {"type": "string", "minLength": 1, "maxLength": 10, "title": "Name"}
    assert schema["note"]["anyOf"][0] == {"type": "string", "maxLength": 10}
    assert schema["pieces"]["items"] == {"type": "string", "minLength": 3, "maxLength": 10}


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"name": " Camille D. "}, ("name",)),  # 12 as sent, 10 once trimmed
        ({"note": "0123456789 "}, ("note",)),
        ({"pieces": ["Plan", "  Plan RIB  "]}, ("pieces", 1)),
    ],
)
def test_a_text_longer_than_documented_is_refused_even_if_trimming_would_fit(
    fields: dict[str, object], where: tuple[object, ...]
) -> None:
    error = refusal(**fields)
    assert error["loc"] == where
    assert error["type"] == "string_too_long"
    assert french_reason(error) == "Ce texte est trop long (au plus 10 caractères)."


def test_a_text_within_its_limits_is_stored_trimmed() -> None:
    form = Form.model_validate({"name": " Camille ", "note": "\tà voir\n", "pieces": [" RIB "]})
    assert (form.name, form.note, form.pieces) == ("Camille", "à voir", ["RIB"])


@pytest.mark.parametrize(
    ("fields", "where", "minimum"),
    [
        ({"name": "   "}, ("name",), 1),
        ({"pieces": [" a  "]}, ("pieces", 0), 3),
        ({"name": "\u200b\u200b\u200b"}, ("name",), 1),  # zero-width spaces print nothing
    ],
)
def test_a_text_of_spaces_is_too_short_once_trimmed(
    fields: dict[str, object], where: tuple[object, ...], minimum: int
) -> None:
    error = refusal(**fields)
    assert error["loc"] == where
    assert error["type"] == "string_too_short_trimmed"
    assert french_reason(error) == (
        "Ce texte est trop court une fois retirés les espaces du début et de la fin "
        f"(au moins {minimum} caractère(s) visible(s))."
    )


class Letter(BaseModel):
    name: Annotated[str, Text(1, 100)]
    body: Annotated[str, Text(1, 100, lines=True)] = "Madame, Monsieur,"


@pytest.mark.parametrize(
    "name",
    [
        "Camille Martin\nDate de réception : 1er janvier 2020",  # a line of its own
        "Camille\rMartin",
        "Camille\tMartin",
        "Camille \x1b[2J Martin",  # a terminal's escape
        "Camille \x85 Martin",  # C1's next line
        "Camille Martin\u2028Date de réception : 1er janvier 2020",  # Unicode's line break
        "\u202enitraM ellimaC",  # read right to left
        "Camille \u2066Martin\u2069",
    ],
    ids=[
        "line-feed",
        "carriage-return",
        "tab",
        "escape",
        "next-line",
        "line-separator",
        "override",
        "isolate",
    ],
)
def test_r2_a_name_cannot_print_a_line_of_its_own_on_a_signed_receipt(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Letter.model_validate({"name": name})
    [error] = refused.value.errors()
    assert (error["loc"], error["type"]) == (("name",), "string_control")
    assert french_reason(error).startswith("Ce texte contient un caractère de contrôle")


def test_a_text_meant_to_span_lines_keeps_them_not_the_other_controls() -> None:
    body = "Mairie\r\n1 place de la République\n\t75001 Paris"
    assert Letter.model_validate({"name": "Camille", "body": body}).body == body
    for bad in ("Mairie\x1b[2J", "Mairie \u202eelliV"):
        with pytest.raises(ValidationError) as refused:
            Letter.model_validate({"name": "Camille", "body": bad})
        assert refused.value.errors()[0]["type"] == "string_control"


def test_an_optional_text_of_spaces_is_empty() -> None:
    assert Form.model_validate({"name": "Camille", "note": "  "}).note == ""


class Window(BaseModel):
    opens: int = 9

    @model_validator(mode="after")
    def check(self) -> Self:
        raise field_error("opens", "Format attendu : {HH:MM}, comme {09:00}.")


def test_a_check_across_fields_names_its_field_and_reads_as_written() -> None:
    with pytest.raises(ValidationError) as refused:
        Window()
    [error] = refused.value.errors()
    assert (error["ctx"]["field"], french_reason(error)) == (
        "opens",
        "Format attendu : {HH:MM}, comme {09:00}.",
    )
