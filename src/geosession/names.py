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
