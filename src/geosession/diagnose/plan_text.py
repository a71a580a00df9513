"""Reading the SQL a plan prints: identifiers, column references, spatial predicates.

EXPLAIN (VERBOSE) writes conditions and sort keys as SQL text with every column as
``alias.column``; these patterns and helpers read that text, and quote names for the SQL
that advice gives back.
"""

from __future__ import annotations

import re

from sqlalchemy.dialects import postgresql

_PREPARER = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]
PREDICATES = (  # the PostGIS predicates a spatial index can serve
    r"_?st_(?:3d)?(?:intersects|dwithin|dfullywithin|contains|containsproperly|within|covers"
    r"|coveredby|crosses|overlaps|touches|equals|orderingequals)"
)
PREDICATE_NAME = re.compile(PREDICATES, re.IGNORECASE)
SPATIAL_CONDITION = re.compile(rf"\b{PREDICATES}\s*\(|&&|~=|\s[~@]\s|<->|<#>", re.IGNORECASE)
"""A PostGIS predicate function (ST_Intersects, ST_DWithin, ...) or a bounding-box
operator (&&, ~, @, <->) in a condition or sort key."""
IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
"""An SQL identifier, bare or double-quoted."""
COLUMN_REF = re.compile(rf"(?<![\w\"$.])({IDENT})\.({IDENT})(?![\w\"$(])")
"""``alias.column`` (groups 1 and 2, as written), not part of a longer name or a call."""


def quote(name: str) -> str:
    """``name`` as an SQL identifier, quoted only where PostgreSQL needs it."""
    return _PREPARER.quote(name)


def qualified(schema: str | None, table: str) -> str:
    """``schema.table`` as SQL, each part quoted where needed."""
    return f"{quote(schema)}.{quote(table)}" if schema else quote(table)


def unquote(identifier: str) -> str:
    """An identifier as the catalog names it: a quoted one without its quotes."""
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier


def closing_paren(text: str, opening: int) -> int | None:
    """Index of the parenthesis closing the one at ``opening`` (skipping string literals)."""
    depth, quoted = 0, False
    for index in range(opening, len(text)):
        char = text[index]
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
            if depth == 0:
                return index
    return None
