"""SQL a person typed, split into its statements as PostgreSQL's lexer splits them.

A semicolon inside a string, a quoted name, a dollar-quoted body or a comment ends
nothing; any other ends a statement. Knowing where they end lets geosession refuse a
script where it runs one statement (``EXPLAIN`` applies to the first only, and a
``COMMIT`` after it would end the transaction meant to keep the rest from taking effect),
and accept the trailing semicolon and comment that SQL pasted from psql has.
"""

from __future__ import annotations

import re

from geosession.errors import ConfigurationError

_START = re.compile(
    r"""--|/\*|(?<![\w$])[eE]'|'|"|;|(?<![\w$])\$(?:[^\W\d]\w*)?\$""",
)
"""What the lexer must look at: a comment, a string or quoted name, a dollar quote (not
``$1``, a parameter, nor the ``$`` inside a name), or a semicolon."""
_BLOCK_COMMENT = re.compile(r"/\*|\*/")
_QUOTED = {
    "'": re.compile(r"(?:[^']|'')*'"),
    '"': re.compile(r'(?:[^"]|"")*"'),
    "E'": re.compile(r"(?:[^'\\]|\\.|'')*'", re.DOTALL),
}


def statements(sql: str, *, backslash_quotes: bool = False) -> list[str]:
    """The statements of ``sql``, each without the semicolon that ends it; pieces that
    hold nothing but spaces and comments are left out. ``backslash_quotes``: the server
    has standard_conforming_strings off, so a backslash escapes a quote in any string."""
    found: list[str] = []
    start = at = 0
    while (match := _START.search(sql, at)) is not None:
        token = match.group()
        if token == ";":
            found.append(sql[start : match.start()])
            start = at = match.end()
        else:
            at = _past(sql, token, match.end(), backslash_quotes)
    found.append(sql[start:])
    return [piece for piece in found if _holds_a_statement(piece, backslash_quotes)]


def one_statement(sql: str, *, what: str, backslash_quotes: bool = False) -> str:
    """``sql``'s one statement (a trailing semicolon and comments after it left out);
    refused when it holds none or several, ``what`` saying what takes one."""
    found = statements(sql, backslash_quotes=backslash_quotes)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigurationError(f"{what} takes an SQL statement, and the text holds none")
    second = " ".join(found[1].split())
    shown = second if len(second) <= 60 else second[:57] + "..."
    raise ConfigurationError(
        f"{what} takes one SQL statement, and the text holds {len(found)} (the second: "
        f"{shown!r}): give them one at a time"
    )


def without_leading_comments(sql: str) -> str:
    """``sql`` from its first word: the spaces and comments before it left out."""
    at = 0
    while (match := _START.match(sql, len(sql) - len(sql[at:].lstrip()))) is not None:
        if match.group() not in ("--", "/*"):
            break
        at = _past(sql, match.group(), match.end(), False)
    return sql[at:].lstrip()


def _past(sql: str, token: str, at: int, backslash_quotes: bool) -> int:
    """Where the comment, string, quoted name or dollar-quoted body ``token`` opened
    (ending at ``at``) ends; the text's end when it is not closed."""
    if token == "--":
        end = sql.find("\n", at)
        return len(sql) if end < 0 else end + 1
    if token == "/*":
        return _past_block_comment(sql, at)
    if token.startswith("$"):
        end = sql.find(token, at)
        return len(sql) if end < 0 else end + len(token)
    kind = "E'" if token[0] in "eE" or (backslash_quotes and token == "'") else token
    closed = _QUOTED[kind].match(sql, at)
    return len(sql) if closed is None else closed.end()


def _past_block_comment(sql: str, at: int) -> int:
    """Where a ``/*`` comment ends: PostgreSQL's nest."""
    depth = 1
    for mark in _BLOCK_COMMENT.finditer(sql, at):
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return mark.end()
    return len(sql)


def _holds_a_statement(piece: str, backslash_quotes: bool) -> bool:
    """Whether ``piece`` holds anything but spaces and comments."""
    at = 0
    while at < len(piece):
        match = _START.search(piece, at)
        if piece[at : match.start() if match else len(piece)].strip():
            return True
        if match is None or match.group() not in ("--", "/*"):
            return match is not None
        at = _past(piece, match.group(), match.end(), backslash_quotes)
    return False
