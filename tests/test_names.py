"""geosession.names: table names as people type them; no database needed."""

from __future__ import annotations

import pytest

from geosession.errors import ConfigurationError
from geosession.ingest.target import schema_and_name
from geosession.names import identifier_table_name, split_table_name


@pytest.mark.parametrize(
    ("typed", "parsed"),
    [
        ("parcels", (None, "parcels")),
        ("gis.parcels", ("gis", "parcels")),
        ("Made_Frame", (None, "Made_Frame")),  # capitals kept: every name is written quoted
        ('"Weird Names"', (None, "Weird Names")),
        ('public."Weird Names"', ("public", "Weird Names")),
        ("Weird Names", (None, "Weird Names")),
        (" gis . Parcels ", ("gis", "Parcels")),
        ('"a.b"."say ""hi"""', ("a.b", 'say "hi"')),
        ('odd"schema.t', ('odd"schema', "t")),  # a quote inside a bare part is a character
    ],
)
def test_names_split_into_schema_and_table(typed: str, parsed: tuple[str | None, str]) -> None:
    assert split_table_name(typed) == parsed
    assert schema_and_name(typed) == parsed  # the ingest's target reads them alike


@pytest.mark.parametrize("typed", ["a.b.c", '"unclosed', "", "   ", "x.", '""'])
def test_what_is_no_table_name(typed: str) -> None:
    assert split_table_name(typed) is None
    with pytest.raises(ConfigurationError, match="is not a table name"):
        schema_and_name(typed)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("parcels", (None, "parcels")),
        (" gis.parcels ", ("gis", "parcels")),
        ('gis."Parcels 2024"', ("gis", "Parcels 2024")),
        ("Made_Frame", (None, "Made_Frame")),
        ("x$y", (None, "x$y")),
        ("Weird Names", None),  # SQL for the library: quote such a name
        ("SELECT 1", None),
        ("TABLE parcels", None),
        ("-- the parcels\nSELECT * FROM parcels", None),
        ("parcels;", None),
        ("1parcels", None),
    ],
)
def test_a_string_read_as_a_table_name_is_made_of_identifiers(
    text: str, parsed: tuple[str | None, str] | None
) -> None:
    assert identifier_table_name(text) == parsed
