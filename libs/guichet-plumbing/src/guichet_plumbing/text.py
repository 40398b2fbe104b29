"""Free text in API bodies: its length checked as sent, then trimmed.

The published schema's `minLength` and `maxLength` are about the text as sent, so that
is what they check: trimming first (pydantic's `str_strip_whitespace`) would accept 201
characters against a documented maximum of 200. The text is then trimmed, and refused
if what is left is shorter than the minimum (a name made of spaces is no name). A NUL
character is refused: no text column of PostgreSQL can keep it.
Codes and identifiers are not free text: their patterns check them exactly as sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema


@dataclass(frozen=True)
class Text:
    """`Annotated[str, Text(1, 200)]`: between 1 and 200 characters as sent, stored trimmed."""

    min_length: int = 0
    max_length: int | None = None

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
        trimmed = value.strip()
        if len(trimmed) < self.min_length:
            raise PydanticCustomError(
                "string_too_short_trimmed",
                "String should have at least {min_length} characters once trimmed",
                {"min_length": self.min_length},
            )
        return trimmed


def field_error(field: str, message: str) -> PydanticCustomError:
    """A model's check across fields, raised so that the problem names `field`."""
    # pydantic fills only `{field}` in the message (its context): other braces stay as sent.
    return PydanticCustomError("field_error", message, {"field": field})
