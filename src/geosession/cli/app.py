"""The root command: its options, the flags' display, and what the commands share."""

import contextlib
import functools
import importlib
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    help=(
        "geosession: safe, fast SQLAlchemy sessions for PostGIS.\n\n"
        "With no database configured (GEOSESSION_DATABASE_URL unset), geosession uses the "
        "private PostGIS that `geosession local start` runs on this machine: see "
        "`geosession local --help`."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",  # help paragraphs reflow to the terminal's width
)

stderr = Console(stderr=True, soft_wrap=True)


def _flags_without_type() -> None:
    """Since typer 0.29, --help shows ``<bool>`` after each flag as if it took a value
    (``--create <bool>``): flags are shown bare again, as click and earlier typers do."""
    option: Any = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None:  # an earlier typer: flags are shown bare
        return

    @functools.wraps(shown)
    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_bool_flag", False) else shown(self, ctx)

    option.display_type_rich = display_type_rich


_flags_without_type()


def fail(message: str) -> None:
    """Print ``message`` in red on stderr (no markup is interpreted)."""
    stderr.print(message, style="red", markup=False, highlight=False)


_REPORTED = ("SQLAlchemy", "GeoAlchemy2", "psycopg", "psycopg2-binary", "asyncpg", "shapely")
_OPTIONAL = ("pyogrio", "pyarrow", "pyproj", "geopandas")
_NATIVE = (
    ("pyogrio", "__gdal_version_string__", "GDAL (pyogrio's)"),
    ("pyproj", "proj_version_str", "PROJ (pyproj's)"),
    ("shapely", "geos_version_string", "GEOS (shapely's)"),
)


def _versions(show: bool) -> None:
    """``--version``: this package and what it runs on, for a bug report."""
    if not show:
        return
    from importlib.metadata import PackageNotFoundError, version

    import geosession

    lines = [f"geosession {geosession.__version__}"]
    for name in (*_REPORTED, *_OPTIONAL):
        try:
            lines.append(f"  {name} {version(name)}")
        except PackageNotFoundError:
            if name not in _OPTIONAL:
                lines.append(f"  {name} (not installed)")
    for module, attribute, label in _NATIVE:
        with contextlib.suppress(ImportError):
            lines.append(f"  {label} {getattr(importlib.import_module(module), attribute)}")
    typer.echo("\n".join(lines))
    raise typer.Exit


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_versions,
            is_eager=True,
            help="Print geosession's version and its libraries', then exit.",
        ),
    ] = False,
) -> None:
    """geosession: safe, fast SQLAlchemy sessions for PostGIS."""


def assignments(pairs: list[str], option: str, form: str) -> dict[str, str] | None:
    """Repeated ``NAME=VALUE`` options as a dict (None when there are none)."""
    assigned: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name or (not value and option == "--rename"):
            raise typer.BadParameter(f"{pair!r} is not {form}", param_hint=option)
        assigned[name] = value
    return assigned or None


SettingOption = Annotated[
    list[str] | None,
    typer.Option(
        "--setting",
        metavar="NAME=VALUE",
        help="A setting for the command's transactions alone (SET LOCAL; repeat for "
        "several): a tenant's --setting search_path=tenant_7,public, or a row-level "
        "security key --setting app.tenant=7.",
    ),
]
"""``--setting``, of the commands that read as the application does."""


def duration(value: str | None) -> str | None:
    """A duration flag's callback: a bare number or a misspelt unit is a usage error naming
    the flag, before anything connects."""
    from geosession.settings import checked_duration

    if value is None:
        return None
    try:
        return checked_duration(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def refuse_without(needed: str, given: dict[str, bool]) -> None:
    """Flags that only apply with ``needed`` are a usage error without it, not ignored."""
    stray = [flag for flag, present in given.items() if present]
    if stray:
        they = "they apply" if len(stray) > 1 else "it applies"
        them = "them" if len(stray) > 1 else "it"
        raise typer.BadParameter(
            f"{they} only with {needed} (add {needed}, or leave {them} out)",
            param_hint=" / ".join(stray),
        )


def local_settings_given(pairs: list[str] | None) -> dict[str, str] | None:
    """The ``--setting`` options as a dict (None when there are none)."""
    return assignments(pairs or [], "--setting", "NAME=VALUE, e.g. app.tenant=7")
