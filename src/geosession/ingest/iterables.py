"""Iterable sources: rows pulled a batch at a time and turned column-wise.

A row may be a dict (keyed by column, or by a mapped class's attribute), a tuple or list
in the target's column order, a row that names its values (a SQLAlchemy Row, a
``db.stream`` record, a named tuple), a mapped instance, a GeoJSON Feature
(:mod:`.features`) or a bare shapely geometry (a row of the geometry column). Batch
columns follow the target's column order and hold only the columns the rows have, so
columns they lack keep their server defaults; a dict lacking a key that other rows in its
batch have gets None, or MISSING where a default fills it (a Python one: :mod:`.defaults`;
the table's: :mod:`.lacking`). Unset attributes of new mapped instances are lacking.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import shapely
from sqlalchemy import Column, inspect
from sqlalchemy.orm import InstanceState, RelationshipDirection

from geosession.errors import ConfigurationError
from geosession.ingest import held_geometries
from geosession.ingest.batches import Batch, Landing, column_named, geometry_field
from geosession.ingest.defaults import MISSING
from geosession.ingest.features import feature_values
from geosession.ingest.points import PointColumns, value_points
from geosession.ingest.stages import timed_batches


def iterable_batches(
    rows: Iterable[Any],
    landing: Landing,
    flush_interval: float | None,
    stopped: Callable[[], bool],
    attributes: Mapping[str, str] | None = None,
    defaulted: frozenset[str] = frozenset(),
    xy_columns: tuple[str, ...] | None = None,
) -> Iterator[Batch]:
    """Pull rows lazily: a generator is never consumed past the batch being built (nor,
    with a flush interval, past the two batches its pulling thread gathers ahead). Dict
    rows with coordinates (``lon`` and ``lat``...: :mod:`.points`) make the points of the
    geometry column they lack."""
    columns = landing.columns
    allowed = frozenset(columns)
    first = 1
    points: PointColumns | None = None
    field: str | None = None  # a geometry key of another usual name (wkt, the_geom...)
    for raw, cut in _pulled(iter(rows), landing.size, flush_interval, stopped):
        if not raw:  # a quiet source: send on what came before
            yield Batch(first, {}, flush=True)
            continue
        if first == 1:
            row = raw[0]
            points = landing.coordinate_fields(
                [str(key) for key in row] if isinstance(row, Mapping) else [],
                not isinstance(row, Mapping) or landing.geometry_column in row,
                xy_columns,
                "the first row",
            )
            if points is None and isinstance(raw[0], Mapping):
                field = geometry_field([str(key) for key in raw[0]], landing) or _held_key(
                    raw, landing
                )
            extra = [] if points is None else list(points.fields)
            extra += [] if field is None else [field]
            columns = [*columns, *(name for name in extra if name not in columns)]
            allowed = frozenset(columns)
        batch = (
            _geometries_batch(raw, first, landing)
            or _fast_batch(raw, first, columns, allowed, defaulted)
            or _columnar(
                [
                    _row_values(row, first + i, landing, allowed, attributes or {})
                    for i, row in enumerate(raw)
                ],
                first,
                columns,
                defaulted,
            )
        )
        if points is not None:
            batch = _with_points(batch, points, landing)
        elif field is not None and field in batch.columns:
            named = dict(batch.columns)
            named[str(landing.geometry_column)] = named.pop(field)
            batch = dataclasses.replace(batch, columns=named)
        yield dataclasses.replace(batch, flush=True) if cut else batch
        first += len(raw)


def _held_key(rows: list[Any], landing: Landing) -> str | None:
    """The first dict row's one key that no column takes whose values in the first rows
    are all geometries (an API's records of a ``footprint``), for the target's one
    geometry column that no key names."""
    named = [row for row in rows[: held_geometries.SAMPLE] if isinstance(row, Mapping)]

    def judge(keys: list[str]) -> str | None:
        samples = {key: [v for row in named if (v := row.get(key)) is not None] for key in keys}
        return held_geometries.geometry_field(samples)

    return landing.held_field([str(key) for key in rows[0]], judge, "the first row")


def _with_points(batch: Batch, points: PointColumns, landing: Landing) -> Batch:
    """``batch`` with its coordinates made into points of the geometry column (they stay
    as values of columns of their names, if the target has any)."""
    geometry = str(landing.geometry_column)
    columns = dict(batch.columns)
    rows = len(batch)
    columns[geometry] = value_points(
        [
            columns[name] if name in landing.columns else columns.pop(name, [None] * rows)
            for name in points.fields
        ],
        points.fields,
    )
    crs = dict(batch.crs) | ({geometry: points.srid} if points.srid is not None else {})
    return dataclasses.replace(batch, columns=columns, crs=crs)


def _pulled(
    iterator: Iterator[Any],
    size: Callable[[], int],
    flush_interval: float | None,
    stopped: Callable[[], bool],
) -> Iterator[tuple[list[Any], bool]]:
    """Lists of rows, and whether each was cut short by the flush interval."""
    if flush_interval is not None:
        yield from timed_batches(iterator, size, flush_interval, stopped)
        return
    while raw := list(itertools.islice(iterator, size())):
        yield raw, False


def _geometries_batch(raw: list[Any], first: int, landing: Landing) -> Batch | None:
    """Bare geometries (shapely objects), each a row of the geometry column alone."""
    if not isinstance(raw[0], shapely.Geometry):
        return None
    if landing.geometry_column is None or not all(isinstance(row, shapely.Geometry) for row in raw):
        return None  # named, row by row
    return Batch(first, {landing.geometry_column: raw})


def _fast_batch(
    raw: list[Any],
    first: int,
    columns: Sequence[str],
    allowed: frozenset[str],
    defaulted: frozenset[str],
) -> Batch | None:
    """A batch of plain dicts or full-width tuples, checked once per batch instead of per row.

    None when the batch needs the row-by-row path (which also names a faulty row).
    """
    if all(type(row) is tuple and len(row) == len(columns) for row in raw):
        return Batch(first, dict(zip(columns, map(list, zip(*raw, strict=True)), strict=True)))
    if not all(type(row) is dict and row for row in raw):
        return None
    present: set[str] = set().union(*raw)
    if not present <= allowed:
        return None
    return _columnar(raw, first, columns, defaulted, present)


def _row_values(
    row: Any,
    number: int,
    landing: Landing,
    allowed: frozenset[str],
    attributes: Mapping[str, str],
) -> Mapping[str, Any]:
    columns, check = landing.columns, landing.check
    feature = feature_values(row, number, landing.geometry_column, allowed)
    if feature is not None:
        values: Mapping[str, Any] = feature
    elif isinstance(row, shapely.Geometry):
        return {_geometry_column(landing, number): row}
    elif type(row) is dict or isinstance(row, Mapping):  # the exact-type test: fast path
        values = row
    elif (named := _named_values(row)) is not None:
        values = named
    elif isinstance(row, tuple | list):
        if len(row) != len(columns):
            raise ConfigurationError(
                f"row {number} has {len(row)} values; the target has {len(columns)} columns: "
                f"{', '.join(columns)}"
            )
        return dict(zip(columns, row, strict=True))
    else:
        values = _instance_values(row, number)
    values = _landed(values, allowed, attributes, number)
    if not values.keys() <= allowed:  # named without the coordinates a point is made of
        check([k for k in values if k in columns or k not in allowed], where=f"row {number}")
    if not values:
        raise ConfigurationError(f"row {number} has no value for any column of the target")
    return values


def _landed(
    values: Mapping[str, Any], allowed: frozenset[str], attributes: Mapping[str, str], number: int
) -> Mapping[str, Any]:
    """A row's values keyed by the columns they land in: by a mapped class's attribute
    names, or by names in another case; a row keyed by an attribute and by its column
    both is refused (one of the two values was kept unsaid)."""
    if values.keys() <= allowed:
        return values
    if attributes:
        landed = {attributes.get(key, key): value for key, value in values.items()}
        if len(landed) < len(values):
            twice = next(
                key
                for key in values
                if attributes.get(key, key) != key and attributes[key] in values
            )
            raise ConfigurationError(
                f"row {number} gives column {attributes[twice]} twice, as {twice!r} (the "
                f"attribute) and {attributes[twice]!r} (the column): give one of them"
            )
        values = landed
    return values if values.keys() <= allowed else _in_any_case(values, allowed)


def _in_any_case(values: Mapping[str, Any], allowed: frozenset[str]) -> Mapping[str, Any]:
    """Values keyed by the columns their keys name in another case, where only one column
    has the name so (a record's "Name" in the column name that create=True lower-cased, as
    a DataFrame's field lands); a key beside one already of that name stays as it is."""
    landed: dict[str, Any] = {}
    for key, value in values.items():
        named = key in allowed or not isinstance(key, str)  # a key of 1234: refused as before
        name = key if named else _column_in_any_case(key, allowed)
        landed[key if name in values and name != key else name] = value
    return landed


@functools.lru_cache(maxsize=1024)
def _column_in_any_case(key: str, allowed: frozenset[str]) -> str:
    return column_named(key, allowed)


def _geometry_column(landing: Landing, number: int) -> str:
    if landing.geometry_column is None:
        raise ConfigurationError(
            f"row {number} is a bare geometry, which needs the target's geometry column: the "
            "target has none or several; give rows of column names instead"
        )
    return landing.geometry_column


def _named_values(row: Any) -> Mapping[str, Any] | None:
    """A row that names its values: a SQLAlchemy Row or a db.stream record (``_mapping``),
    or a named tuple; taken by name, never by position."""
    mapping = getattr(row, "_mapping", None)
    if isinstance(mapping, Mapping):
        return mapping
    if isinstance(row, tuple) and hasattr(row, "_asdict"):
        return row._asdict()  # type: ignore[no-any-return]
    return None


def _instance_values(obj: Any, number: int) -> dict[str, Any]:
    """Column values of a mapped instance; attributes a new instance never set are left out."""
    state = inspect(obj, raiseerr=False)
    if not isinstance(state, InstanceState):
        raise ConfigurationError(
            f"row {number} is a {type(obj).__name__}: rows must be dicts, tuples, lists, "
            "mapped instances, SQLAlchemy Rows, GeoJSON Features or shapely geometries"
        )
    new = state.key is None  # transient or pending: unset means "use the default"
    values: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        column = attr.columns[0]
        if isinstance(column, Column) and (not new or attr.key in state.dict):
            values[column.name] = state.dict[attr.key] if new else getattr(obj, attr.key)
    if new:
        _refuse_related_objects(state, values, number)
    return values


def _refuse_related_objects(state: InstanceState[Any], values: dict[str, Any], row: int) -> None:
    """A relationship set on a new instance is left out by a COPY of the table's columns:
    ``Lot(owner=Owner(...))`` would load with owner_id NULL, and children in a collection
    not at all. Refused, unless the foreign key's columns are given too."""
    for relationship in state.mapper.relationships:
        related = state.dict.get(relationship.key)
        if related is None or related == []:
            continue
        keys = [c.name for c in relationship.local_columns if isinstance(c, Column)]
        many_to_one = relationship.direction is RelationshipDirection.MANYTOONE
        if many_to_one and all(values.get(key) is not None for key in keys):
            continue
        name = f"{state.class_.__name__}.{relationship.key}"
        how = (
            f"set {', '.join(keys)} instead (the related row must exist first)"
            if many_to_one
            else "load those rows into their own table (another ingest, or the ORM)"
        )
        held = "is set to a related object" if many_to_one else "holds related objects"
        raise ConfigurationError(
            f"row {row}: {name} {held}, which the ingest does not write: it loads the "
            f"columns of {state.mapper.local_table} only, so {how}"
        )


def _columnar(
    rows: list[Mapping[str, Any]],
    first: int,
    columns: Sequence[str],
    defaulted: frozenset[str],
    present: set[str] | None = None,
) -> Batch:
    """Column-wise values of dict rows: a key a row lacks is None, or MISSING where its
    column is ``defaulted``."""
    if present is None:
        present = set().union(*(row.keys() for row in rows))
    lacking = {name: MISSING if name in defaulted else None for name in columns if name in present}
    return Batch(
        first, {name: [row.get(name, fill) for row in rows] for name, fill in lacking.items()}
    )


def attribute_columns(target: Any) -> dict[str, str]:
    """A mapped class's attribute names that differ from their columns' names (``label =
    mapped_column("name")``); none for a Table or a table name."""
    mapper = inspect(target, raiseerr=False) if isinstance(target, type) else None
    if mapper is None or not hasattr(mapper, "column_attrs"):
        return {}
    return {
        attr.key: attr.columns[0].name
        for attr in mapper.column_attrs
        if isinstance(attr.columns[0], Column) and attr.key != attr.columns[0].name
    }
