"""Turning fetched batches into what the caller asked for: pure, shared by sync and async.

The geometry column of a whole batch is decoded in one vectorized ``shapely.from_wkb``
call; there is no per-row geometry work in Python. Batch sizes adapt to the rows' size
so that one batch stays a few megabytes whatever the geometries look like.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import shapely

from geosession.errors import InvalidGeometry
from geosession.geometry import not_in_geos
from geosession.read.plan import FEATURE_TEXT
from geosession.read.query import ReadPlan

Rows = Sequence[Sequence[Any]]

_FIRST_BATCH = 1_024
_MIN_BATCH = 256
_MAX_BATCH = 65_536
_TARGET_BATCH_BYTES = 1024 * 1024  # larger batches measured slower (CPU cache)
_PAGE_FACTOR = 4
_SAMPLE = 64  # rows measured per batch to estimate the row size
_OTHER_COLUMN_BYTES = 32


def decode_geometries(values: Sequence[Any]) -> Any:
    """EWKB values (bytes or None) to an array of shapely geometries (SRID kept)."""
    try:
        return shapely.from_wkb(np.asarray(values, dtype=object))
    except (NotImplementedError, shapely.errors.GEOSException):
        raise InvalidGeometry(_not_decodable(values)) from None


def _not_decodable(values: Sequence[Any]) -> str:
    """What a batch holds that shapely cannot, and how to read it anyway."""
    kinds = sorted({kind for value in values if (kind := not_in_geos(value)) is not None})
    held = " and ".join(kinds) if kinds else "a geometry shapely cannot parse"
    return (
        f"the rows hold {held}, which shapely (GEOS) cannot: turn them into what it holds in "
        "the query (ST_CurveToLine(geom) straightens curves, ST_ForceCollection(geom) makes "
        "a polyhedral surface's faces polygons), or read the bytes with output='wkb' "
        "(GeoPackage and FlatGeobuf exports write them as they are)"
    )


def batch_decoder(plan: ReadPlan) -> Callable[[Rows], list[Any]]:
    """The function turning one fetched batch into the rows to yield for ``plan``."""
    output = plan.options.output
    if output == FEATURE_TEXT:
        return lambda rows: [row[0] for row in rows]
    if output == "geojson":
        return lambda rows: [orjson.loads(row[0]) for row in rows]
    if output == "row":
        return lambda rows: [row if type(row) is tuple else tuple(row) for row in rows]
    record = record_type(tuple(plan.names))
    index = plan.geometry_index
    rebuild = _rebuild(record, len(plan.columns), index)
    shapes = output == "shapely"

    def decode(rows: Rows) -> list[Any]:
        geometries = [row[index] for row in rows]
        if shapes:
            return rebuild(rows, decode_geometries(geometries).tolist())
        return rebuild(rows, geometries)

    return decode


@functools.lru_cache(maxsize=256)  # a service's queries: few shapes, read again and again
def record_type(names: tuple[str, ...]) -> type:
    """A namedtuple class for columns ``names`` with SQLAlchemy's ``_mapping``.

    A name that cannot be an attribute (``"Seg No"``, ``"class"``, a repeated ``id``) is
    renamed ``_<position>`` by namedtuple; ``record._mapping["Seg No"]`` still reaches it,
    as on a SQLAlchemy ``Row``. Records pickle (to another process) by their names and
    values, since the class is made here, not found by name.
    """
    fields = namedtuple("Record", names, rename=True)  # type: ignore[misc]

    def mapping(self: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(names, self, strict=True))

    def reduce(self: tuple[Any, ...]) -> tuple[Any, ...]:
        return _record, (names, tuple(self))

    namespace = {"__slots__": (), "_mapping": property(mapping), "__reduce__": reduce}
    return type("Record", (fields,), namespace)


def _record(names: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    """A record unpickled: its class made again from its names."""
    return tuple.__new__(record_type(names), values)


def _rebuild(record: type, width: int, index: int) -> Callable[[Rows, list[Any]], list[Any]]:
    """``rebuild(rows, geometries)``: the rows as records, geometry ``index`` replaced.

    Generated for the row width (only integers go into the source), because spelling out
    ``(r[0], r[1], g, r[3])`` costs a third of slicing or transposing the batch.
    """
    items = ", ".join("g" if i == index else f"r[{i}]" for i in range(width))
    source = f"lambda rows, geoms: [new(record, ({items},)) for r, g in zip(rows, geoms)]"
    scope = {"new": tuple.__new__, "record": record}
    rebuild: Callable[[Rows, list[Any]], list[Any]] = eval(source, scope)
    return rebuild


class BatchSizer:
    """Rows to fetch next: fixed, or adapted so that one batch is about 1 MB on the wire
    (4 MB for keyset pages, each of which costs a checkout and a transaction).

    Sizes are powers of two between 256 and 65,536, so that few distinct FETCH
    statements are prepared.
    """

    def __init__(self, fixed: int | None, measured_index: int, target_bytes: int) -> None:
        self._fixed = fixed
        self._index = measured_index
        self._target = target_bytes
        self._size = fixed or _FIRST_BATCH

    @classmethod
    def for_plan(cls, plan: ReadPlan) -> BatchSizer:
        measured = 0 if plan.features else plan.geometry_index
        pages = plan.key_index is not None
        target = _TARGET_BATCH_BYTES * (_PAGE_FACTOR if pages else 1)
        return cls(plan.options.batch_size, measured, target)

    def next(self) -> int:
        return self._size

    def observe(self, rows: Rows) -> None:
        """Re-estimates the row size from a sample of the batch just fetched."""
        if self._fixed is not None or not rows:
            return
        sample = rows[:: max(1, len(rows) // _SAMPLE)]
        width = _OTHER_COLUMN_BYTES * (len(sample[0]) - 1)
        total = sum(len(row[self._index] or b"") for row in sample)
        per_row = max(1.0, total / len(sample) + width)
        wanted = self._target / per_row
        size = 1 << max(0, int(wanted).bit_length() - 1)
        self._size = min(_MAX_BATCH, max(_MIN_BATCH, size))
