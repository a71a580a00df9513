"""The ``:name`` placeholders of a statement and the values given for them (``params=``).

A placeholder without a value, or a value without a placeholder, is refused before the
statement runs, with the two ways SQLAlchemy's text() surprises: a colon meant as text
is a placeholder (``'{"a":1}'``: write ``\\:1``), and ``:v::int`` is none (write
``CAST(:v AS int)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ClauseElement, Dialect
from sqlalchemy.sql.compiler import SQLCompiler


def unbound(statement: ClauseElement, params: Mapping[str, Any], dialect: Dialect) -> list[str]:
    """The placeholders of ``statement`` that need a value and ``params`` gives none."""
    return _unbound(*_binds(statement, dialect), params)


def mismatch(statement: ClauseElement, params: Mapping[str, Any], dialect: Dialect) -> str | None:
    """What does not match between the placeholders and ``params``, in words; None when
    every placeholder has a value and every value a placeholder."""
    binds, values = _binds(statement, dialect)
    missing = _unbound(binds, values, params)
    if missing:
        given = ", ".join(f"{key!r}: ..." for key in missing)
        return (
            f"the statement's {', '.join(':' + key for key in missing)} "
            f"{'have' if len(missing) > 1 else 'has'} no value; give params={{{given}}}, or "
            f"write \\:{missing[0]} where the colon is text (as in a JSON literal "
            """'{"a":1}')"""
        )
    unknown = [key for key in params if key not in binds]
    if unknown:
        placeholders = ", ".join(f":{key}" for key in binds) or "none"
        return (
            f"params names {', '.join(':' + key for key in unknown)}, which the statement "
            f"does not have (its placeholders: {placeholders}; :{unknown[0]}::int is not "
            f"one to SQLAlchemy: write CAST(:{unknown[0]} AS int))"
        )
    return None


def _unbound(
    binds: Mapping[str, Any], values: Mapping[str, Any], params: Mapping[str, Any]
) -> list[str]:
    """``values``: what the statement itself holds (``text(...).params(n=1)`` leaves its
    placeholder required, with the value beside it)."""
    return [
        key
        for key, bind in binds.items()
        if bind.required and key not in params and values.get(key) is None
    ]


def _binds(
    statement: ClauseElement, dialect: Dialect
) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The statement's placeholders by name, and the values it holds for them."""
    compiled = statement.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler):
        return {}, {}
    return compiled.binds, compiled.params
