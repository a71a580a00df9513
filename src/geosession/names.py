"""Table names as a person types them: ``parcels``, ``gis.parcels``, ``"Weird Names"``,
``gis."Parcels 2024"``.

A part in double quotes is read as SQL reads it (``""`` stands for a quote), so it may hold
dots, spaces and capitals. A part that does not begin with a quote is taken as written,
capitals (and any quote inside) included, because geosession writes every name quoted:
``Made_Frame`` is the table that ``geosession ingest ... Made_Frame --create`` made.
"""

from __future__ import annotations

import re

_PART = r'\s*("(?:[^"]|"")+"|[^".\s](?:[^.]*[^.\s])?)\s*'
_NAME = re.compile(rf"^{_PART}(?:\.{_PART})?$")


_IDENTIFIER = r'\s*(?:"(?:[^"]|"")+"|[^\W\d][\w$]*)\s*'
_IDENTIFIER_NAME = re.compile(rf"^{_IDENTIFIER}(?:\.{_IDENTIFIER})?$")


def identifier_table_name(text: str) -> tuple[str | None, str] | None:
    """``(schema, table)`` when ``text`` is a table name made of identifiers (``parcels``,
    ``gis.parcels``, ``gis."Parcels 2024"``; parts read as :func:`split_table_name` reads
    them), which no SQL statement is; else None."""
    return split_table_name(text) if _IDENTIFIER_NAME.match(text) else None


def split_table_name(text: str) -> tuple[str | None, str] | None:
    """``(schema, table)``, the schema None when not given; None when ``text`` is no table
    name (more than two parts, an unclosed quote, nothing)."""
    match = _NAME.match(text)
    if match is None:
        return None
    first, second = match.groups()
    if second is None:
        return None, _unquoted(first)
    return _unquoted(first), _unquoted(second)


def _unquoted(part: str) -> str:
    if part.startswith('"') and part.endswith('"') and len(part) > 1:
        return part[1:-1].replace('""', '"')
    return part
