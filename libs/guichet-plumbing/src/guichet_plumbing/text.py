"""Free text in API bodies: its length checked as sent, then trimmed.

The published schema's `minLength` and `maxLength` are about the text as sent, so that
is what they check: trimming first (pydantic's `str_strip_whitespace`) would accept 201
characters against a documented maximum of 200. The text is then trimmed, and refused
if what is left is shorter than the minimum (a name made of spaces, or of invisible
characters, is no name). A NUL character is refused: no text column of PostgreSQL can
keep it. Control characters and the marks that reorder text (bidi overrides) are refused
too: a line break in a name would print a line of its own on a signed receipt, under
the collectivité's signature. Only text meant to span lines (`lines=True`) keeps line
breaks and tabs.
Codes and identifiers are not free text: their patterns check them exactly as sent.

Days and instants are read as written too (`Day`, `Instant`): pydantic would read a
number as a Unix time, and "2026-12-01T00:00:00+14:00" as 1 December, although that
instant is 30 November in Paris. A legal date is never guessed from such input.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema


@dataclass(frozen=True)
class Text:
    """`Annotated[str, Text(1, 200)]`: between 1 and 200 characters as sent, stored trimmed."""

    min_length: int = 0
    max_length: int | None = None
    lines: bool = False  # line breaks and tabs allowed (an address, a comment, a text)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        as_sent = core_schema.str_schema(
            min_length=self.min_length or None,
            max_length=self.max_length,
            strip_whitespace=False,
        )
        return core_schema.no_info_after_validator_function(self._trimmed, as_sent)

    def _trimmed(self, value: str) -> str:
        if "\x00" in value:
            # Valid in JSON, refused by PostgreSQL's text: a 500 at the first write.
            raise PydanticCustomError("string_nul", "String should not contain U+0000")
        trimmed = value.strip()  # a form's trailing line break is no line of its own
        if (_MULTILINE_FORBIDDEN if self.lines else _LINE_FORBIDDEN).search(trimmed):
            raise PydanticCustomError(
                "string_control", "String should not contain control or reordering characters"
            )
        if len(trimmed) < self.min_length or (self.min_length and not _visible(trimmed)):
            raise PydanticCustomError(
                "string_too_short_trimmed",
                "String should have at least {min_length} characters once trimmed",
                {"min_length": self.min_length},
            )
        return trimmed


# C0 and C1 controls (with DEL), and the embeddings, overrides and isolates of Unicode's
# bidirectional algorithm, which can make a text read otherwise than it is stored.
_LINE_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_MULTILINE_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def one_line(value: str) -> str:
    """`value` with what a one-line text refuses made a space: for text this version did
    not write (a row stored by an earlier one, another administration's hand-over)."""
    return _LINE_FORBIDDEN.sub(" ", value)


def _visible(text: str) -> bool:
    """Whether anything in `text` prints: not only spaces and format characters (U+200B)."""
    return any(not c.isspace() and unicodedata.category(c) != "Cf" for c in text)


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _day_as_written(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value  # from Python (the service's own calls)
    if isinstance(value, str) and _ISO_DAY.fullmatch(value):
        return value
    raise PydanticCustomError("date_parsing", "Input should be a day written YYYY-MM-DD")


_ISO_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]")


def _instant_as_written(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_INSTANT.match(value):
        return value
    raise PydanticCustomError("datetime_parsing", "Input should be an RFC 3339 date and time")


Day = Annotated[date, BeforeValidator(_day_as_written)]
Instant = Annotated[AwareDatetime, BeforeValidator(_instant_as_written)]


def field_error(field: str, message: str) -> PydanticCustomError:
    """A model's check across fields, raised so that the problem names `field`."""
    # pydantic fills only `{field}` in the message (its context): other braces stay as sent.
    return PydanticCustomError("field_error", message, {"field": field})
