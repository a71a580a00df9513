"""`--help` of every command reads as prose: paragraphs reflow to the terminal's width."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import geosession
from geosession.cli import app

COMMANDS = [
    [],
    ["demo"],
    ["ingest"],
    ["export"],
    ["activity"],
    ["explain"],
    ["doctor"],
    ["local"],
    ["local", "start"],
    ["local", "stop"],
    ["local", "status"],
    ["local", "url"],
]
SHORTEST_FULL_LINE = 40
"""Lines that do not end a paragraph are filled at least this far at 80 columns (a
docstring's own line breaks kept as they are would leave stubs like 'crash or')."""


def description(command: list[str]) -> list[list[str]]:
    """The paragraphs of a command's help text (after Usage, before the first panel)."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.output.split("Usage:", 1)[1].split("╭", 1)[0]
    paragraphs: list[list[str]] = [[]]
    for line in text.splitlines()[1:]:
        if line.strip():
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "geosession")
def test_help_paragraphs_reflow_to_the_terminal(command: list[str]) -> None:
    paragraphs = description(command)
    assert paragraphs, "no help text"
    for paragraph in paragraphs:
        for line in paragraph[:-1]:
            assert len(line) >= SHORTEST_FULL_LINE, f"stub line {line!r} in {paragraph}"


def test_placeholders_in_option_help_are_shown() -> None:
    """Markdown help must not swallow <tolerance> and <srid> as HTML tags."""
    result = CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "80"})
    assert "simplify:<tolerance>" in result.output and "transform:<srid>" in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "geosession")
def test_flags_take_no_value_in_help(command: list[str]) -> None:
    """A flag (--create, --help) is shown bare, not as if it took a <bool> value."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "--help" in result.output


def test_repeatable_options_show_what_each_value_is() -> None:
    """--schema showed Python's <list[str]>; each repeatable option names its value."""
    for command in COMMANDS:
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
        options = result.output.split("Options", 1)[-1]
        assert "<list[" not in options, (command, options)


def test_options_with_values_still_show_their_type() -> None:
    result = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "120"})
    srid = next(line for line in result.output.splitlines() if "--srid " in line)
    assert "<int>" in srid or "INTEGER" in srid, srid  # typer 0.27 on, and before it


def test_version_names_geosession_and_what_it_runs_on() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"geosession {geosession.__version__}"
    for name in ("SQLAlchemy", "GeoAlchemy2", "psycopg", "asyncpg", "shapely", "GEOS"):
        assert any(line.strip().startswith(name + " ") for line in lines[1:]), name
