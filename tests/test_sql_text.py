"""Statements told apart in SQL a person typed, as PostgreSQL's lexer tells them."""

from __future__ import annotations

import pytest

from geosession import ConfigurationError
from geosession.sql_text import one_statement, statements


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1; COMMIT; DELETE FROM t", ["SELECT 1", " COMMIT", " DELETE FROM t"]),
        ("SELECT ';' AS a", ["SELECT ';' AS a"]),
        ("SELECT 'it''s; fine'", ["SELECT 'it''s; fine'"]),
        ("SELECT 1;", ["SELECT 1"]),
        ("SELECT 1; -- done\n", ["SELECT 1"]),
        ("SELECT 1 -- a comment; DELETE FROM t", ["SELECT 1 -- a comment; DELETE FROM t"]),
        (
            "SELECT 1 /* a /* nested; */ comment; */ ; DELETE",
            ["SELECT 1 /* a /* nested; */ comment; */ ", " DELETE"],
        ),
        ("SELECT $$a;b$$, $tag$ $$; $tag$", ["SELECT $$a;b$$, $tag$ $$; $tag$"]),
        ("SELECT $1; SELECT 2", ["SELECT $1", " SELECT 2"]),
        ("SELECT a$b$c FROM t; DELETE", ["SELECT a$b$c FROM t", " DELETE"]),
        ("SELECT E'it\\'s; x'", ["SELECT E'it\\'s; x'"]),
        ("SELECT 'a\\'; DELETE", ["SELECT 'a\\'", " DELETE"]),
        ('SELECT "we;ird" FROM t', ['SELECT "we;ird" FROM t']),
        ("SELECT date'2020-01-01';", ["SELECT date'2020-01-01'"]),
        ("  ;  ; /* only */ -- comments", []),
        ("SELECT 'not closed; DELETE", ["SELECT 'not closed; DELETE"]),
    ],
)
def test_statements_end_at_semicolons_outside_quotes_and_comments(
    sql: str, expected: list[str]
) -> None:
    assert statements(sql) == expected


def test_backslashes_escape_quotes_where_strings_are_not_standard_conforming() -> None:
    sql = "SELECT 'a\\''; DELETE FROM t; SELECT '"
    assert statements(sql) == [sql]  # one string a' then a string not closed
    assert statements(sql, backslash_quotes=True) == [
        "SELECT 'a\\''",
        " DELETE FROM t",
        " SELECT '",
    ]


def test_one_statement_names_the_second_of_a_script_and_refuses_none() -> None:
    assert one_statement("SELECT 1;  -- psql's habit", what="A read") == "SELECT 1"
    with pytest.raises(ConfigurationError, match="holds 3 \\(the second: 'COMMIT'\\)"):
        one_statement("SELECT 1;\nCOMMIT;\nDELETE FROM t", what="explain")
    with pytest.raises(ConfigurationError, match="holds none"):
        one_statement(" -- nothing", what="explain")
