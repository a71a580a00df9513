"""What every ingest source becomes: column-wise batches, checked against the target."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from geosession.errors import ConfigurationError
from geosession.ingest.crs import SourceCrs
from geosession.ingest.points import Z_NAMES, PointColumns, coordinates_for
from geosession.ingest.target import double_quoted, stored_identifier


class CheckFields(Protocol):
    """Checks a source's field names against the target (``check_fields``, bound)."""

    def __call__(self, names: list[str], *, where: str) -> None: ...


@dataclass(frozen=True)
class Batch:
    """Consecutive source rows, column-wise: target column name -> values."""

    first_row: int
    columns: dict[str, list[Any]]
    crs: dict[str, SourceCrs] = field(default_factory=dict)
    """Column -> the CRS of its geometries that carry no SRID (the layer's), if known."""
    flush: bool = False
    """Cut short by ``flush_interval``: its rows, and any waiting with them, go out now."""
    decimal_comma: bool = False
    """Its text numbers may have a decimal comma (a semicolon-separated CSV file's)."""
    filled: Mapping[str, list[int]] = field(default_factory=dict)
    """By column, the rows (by index) that lacked its key (or the batch the column) and
    took a Python-side default (:mod:`.defaults`): with on_conflict="update" an existing
    row keeps its value."""

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), ()))


def target_name(
    name: str, geometry: str | None, columns: Sequence[str], geometry_column: str | None
) -> str:
    """The source's geometry field lands in the geometry column unless it names a column;
    another field lands in the column :func:`column_named` finds."""
    if name in columns:
        return name
    if name == geometry and geometry_column is not None:
        return geometry_column
    return column_named(name, columns)


def column_named(name: str, columns: Collection[str]) -> str:
    """The column ``name`` names: its own, or the one of its name in any case when only
    one column has it (a Shapefile's NAME in name, as ogr2ogr's laundering does), a name
    over 63 bytes cut as PostgreSQL cuts it; ``name`` itself when none does."""
    stored = stored_identifier(name)
    if stored in columns:
        return stored
    folded = [column for column in columns if column.casefold() == stored.casefold()]
    return folded[0] if len(folded) == 1 else name


@dataclass(frozen=True)
class Landing:
    """Where a source's fields land, as every reader needs it: the target's columns a
    source may fill, the geometry column a source's geometry goes to (None when the target
    has several or none), the rows per batch (asked before each batch), and the check of
    the fields' names against the columns, and whether that geometry column has Z (so
    that coordinate fields make 3D points) or M (which coordinates cannot give)."""

    columns: Sequence[str]
    geometry_column: str | None
    size: Callable[[], int]
    check: CheckFields
    geometry_z: bool = False
    geometry_m: bool = False
    found: set[str] | None = None
    """Where the field found by its values to hold the geometries is noted (the report)."""

    @property
    def heights(self) -> Sequence[str]:
        """The names of a field of heights that makes coordinates' points 3D (none: 2D)."""
        return Z_NAMES if self.geometry_z else ()

    def land(
        self, lands: Mapping[Any, str], points: PointColumns | None, where: str
    ) -> dict[Any, str]:
        """The fields that load, each with its column, once :attr:`check` passed them:
        coordinate fields (``points``) only into columns of their names (their points fill
        the geometry column), fields left out (extra_fields='ignore') not at all."""
        made = []
        if points is not None:
            lands = {f: c for f, c in lands.items() if f not in points.fields or c in self.columns}
            made = [str(self.geometry_column)]
        self.check([*lands.values(), *made], where=where)
        return {f: column for f, column in lands.items() if column in self.columns}

    def coordinate_fields(
        self,
        names: Sequence[str],
        given_geometry: bool,
        xy_columns: Sequence[str] | None,
        where: str,
    ) -> PointColumns | None:
        """The fields among ``names`` whose coordinates make the points of the geometry
        column (:func:`.points.coordinates_for`), 3D where it has Z."""
        return coordinates_for(
            names,
            self.geometry_column,
            given_geometry=given_geometry,
            xy_columns=xy_columns,
            where=where,
            heights=self.heights,
            measured=self.geometry_m,
        )

    def points_crs(self, points: PointColumns | None) -> dict[str, SourceCrs]:
        """The SRID coordinate fields' names imply for the geometry column (longitude and
        latitude: 4326), if any."""
        if points is None or points.srid is None:
            return {}
        return {str(self.geometry_column): points.srid}

    def column_for(self, name: str, geometry: str | None) -> str:
        """The column field ``name`` lands in, ``geometry`` being the source's geometry
        field (see :func:`target_name`)."""
        return target_name(name, geometry, self.columns, self.geometry_column)

    def held_field(
        self,
        names: Sequence[str],
        judge: Callable[[list[str]], str | None],
        where: str,
        xy_columns: Sequence[str] | None = None,
    ) -> str | None:
        """The field for the target's one geometry column that none of ``names`` names:
        the one ``judge`` finds holding geometries among those no column takes (noted in
        :attr:`found`), unless coordinate fields make the column's points (taken first, as
        create=True does)."""
        if self.geometry_column is None:
            return None
        landed = {name: self.column_for(name, None) for name in names}
        unnamed = [name for name, column in landed.items() if column not in self.columns]
        if self.geometry_column in landed.values() or not unnamed:
            return None
        if self.coordinate_fields(names, False, xy_columns, where) is not None:
            return None
        field = judge(unnamed)
        if field is not None and self.found is not None:
            self.found.add(field)
        return field


GEOMETRY_FIELD_NAMES = ("wkt", "wkt_geom", "geometry", "geom", "the_geom", "wkb_geometry", "wkb")
"""Names a geometry field usually has (WKT text, WKB), in order of preference."""


def geometry_field(names: Sequence[str], landing: Landing) -> str | None:
    """The field of a DataFrame or of dict rows holding the geometries of the target's one
    geometry column under another usual name (``wkt``, ``the_geom``...), as a CSV's WKT
    column lands there; None where the source has the column's own name."""
    geometry = landing.geometry_column
    if geometry is None or geometry in names:
        return None
    folded = {name.casefold(): name for name in reversed(names) if name not in landing.columns}
    return next((folded[n] for n in GEOMETRY_FIELD_NAMES if n in folded), None)


def repeated(names: Sequence[str]) -> list[str]:
    """The names that come more than once, sorted."""
    return sorted({name for name in names if names.count(name) > 1})


_SHAPEFILE_NAME_BYTES = 10


def _cut_names_hint(unknown: list[str], free: list[str]) -> str:
    """For fields named as a Shapefile cuts names (10 bytes; GDAL ends repeats in _1, _2),
    the columns no field fills whose names they may be cut from, and a rename to give
    (each field the first such column no earlier field took, as GDAL numbers repeats)."""
    found: dict[str, list[str]] = {}
    for name in unknown:
        if not isinstance(name, str) or len(name.encode()) != _SHAPEFILE_NAME_BYTES:
            continue  # (a dict row's key may be no str)
        stem, underscore, number = name.rpartition("_")
        start = stem if underscore and number.isdigit() else name
        found[name] = [c for c in free if c.casefold().startswith(start.casefold()) and c != name]
    found = {name: candidates for name, candidates in found.items() if candidates}
    if not found:
        return ""
    maybe = "; ".join(f"{name!r} may be {' or '.join(c)}" for name, c in found.items())
    first: dict[str, str] = {}
    for name, candidates in found.items():
        first[name] = next((c for c in candidates if c not in first.values()), candidates[0])
    flags = " ".join(f"--rename {name}={column}" for name, column in first.items())
    return (
        f". A Shapefile keeps 10 bytes of a name: {maybe}. Say which column each is for with "
        f"rename={first!r} (CLI: {flags})"
    )


def check_fields(
    names: list[str],
    *,
    where: str,
    columns: Sequence[str],
    computed: Mapping[str, str],
    left_out: set[str] | None = None,
    typed_from: int = 0,
) -> None:
    """Refuses, before the first row, fields the target cannot take: values for generated
    columns (``computed``: what generates each), names that are no column, several fields
    for one column. ``left_out`` collects the first two instead: they are not loaded.
    ``typed_from``: the first rows of a generator create=True made the table from."""
    generated = [name for name in names if name in computed]
    if generated and left_out is None:
        raise ConfigurationError(_generated_message(where, {n: computed[n] for n in generated}))
    unknown = [name for name in names if name not in columns]
    if unknown and left_out is not None:
        left_out.update(unknown)
    elif unknown:
        raise ConfigurationError(
            f"{where} has fields that are not columns of the target: "
            f"{', '.join(map(repr, unknown))}; the target's columns: {', '.join(columns)}. "
            + _add_columns(typed_from)
            + ", or leave the fields out: "
            "extra_fields='ignore' (CLI: --ignore-extra-fields) loads only those the table has"
            + _cut_names_hint(unknown, [c for c in columns if c not in names])
        )
    duplicated = repeated(names)
    if duplicated:
        raise ConfigurationError(f"{where}: several fields map to {', '.join(duplicated)}")


def _add_columns(typed_from: int) -> str:
    """How to have columns for fields the target lacks; for a table create=True made from
    a generator's first rows, why it lacks them."""
    if not typed_from:
        return "Add those columns to the table"
    return (
        f"create=True made the table from the source's first {typed_from:,} rows (a "
        "generator is read once), which lack them: give the rows as a list (typed over "
        "every row), add those columns to the table"
    )


def _generated_message(where: str, generated: Mapping[str, str]) -> str:
    """What to do with values for generated columns: leave them out, or for an identity's
    own values, let the column take them."""
    described = ", ".join(f"{name!r} ({kind})" for name, kind in generated.items())
    message = (
        f"{where} has values for {described}: the server computes or numbers these columns "
        "and takes no value for them. Leave them out of the source, or extra_fields='ignore' "
        "(CLI: --ignore-extra-fields) leaves them out for you"
    )
    identities = [name for name, kind in generated.items() if kind.endswith("IDENTITY")]
    if identities:
        alters = " ".join(
            f"ALTER TABLE ... ALTER COLUMN {double_quoted(name)} SET GENERATED BY DEFAULT;"
            for name in identities
        )
        message += f". To keep the source's values of an identity column instead: {alters}"
    return message
