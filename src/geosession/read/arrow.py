"""A stream as Arrow record batches, for the file writers (GeoParquet, GDAL's formats)
and for ``db.stream_arrow``.

Each column's Arrow type comes from its PostgreSQL type, never from a chunk's values, so
every batch has one schema even where a chunk holds only NULLs, and an empty result
still has it. Batches are built from the fetched rows column by column, without a
GeoDataFrame between (which cost a quarter of a GeoPackage or Shapefile export).
Geometries are ISO WKB (what GeoParquet and GDAL read), or for text formats (CSV) WKT,
with bytea as PostgreSQL's ``\\x`` hex. Types Arrow has no equivalent for are text: JSON
and arrays as JSON, the rest (uuid, interval...) as Python prints them; numeric is
float64, as GeoPackage has no decimal type either, but in CSV its exact text and in
GeoParquet a decimal128 where the column declares its precision and scale; a float's
NaN stays NaN.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Self

import orjson
import shapely

from geosession.errors import ConfigurationError, InvalidGeometry
from geosession.geometry import wkt_array
from geosession.read.decode import decode_geometries
from geosession.read.passthrough import PassedThrough, passed_through
from geosession.read.plan import Column, Projection
from geosession.read.query import ReadPlan
from geosession.read.stream import GeometryStream
from geosession.read.types import BYTEA, COLUMN_TYPES, NUMERIC

GEOPARQUET_VERSION = "1.1.0"
"""The GeoParquet version of the ``geo`` metadata written (files and Arrow streams)."""


@dataclass(frozen=True)
class Chunk:
    """What a writer learns of a fetched batch as it becomes a record batch: its row
    count, and each geometry column's decoded geometries and CRS (as ``crs_for`` gives
    it), the active column's also as ``geometry`` and ``crs``."""

    rows: int
    geometries: dict[str, Any]
    crs_by_column: dict[str, str | None]
    active: str

    @property
    def geometry(self) -> Any:
        return self.geometries[self.active]

    @property
    def crs(self) -> str | None:
        return self.crs_by_column[self.active]


OnChunk = Callable[[Chunk], None]
"""Called with each batch's Chunk before its record batch is written (counts, metadata)."""


def pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ConfigurationError(
            "GeoParquet, GeoPackage, FlatGeobuf and CSV export need pyarrow: "
            "pip install 'geosession[geo]'"
        ) from None
    return pyarrow


def record_batches(
    pa: Any,
    stream: GeometryStream,
    on_chunk: OnChunk,
    *,
    text: bool = False,
    decimals: bool = False,
    curves: bool = False,
    empty_as_null: bool = False,
) -> tuple[Any, Any, Iterator[Any]]:
    """The plan, the schema and the record batches of ``stream`` (with ``text``, no
    binary columns: geometries as WKT, bytea as hex; with ``decimals``, a numeric(p, s)
    column as Arrow's decimal128(p, s); with ``curves``, a batch of geometries shapely
    cannot hold as their WKB: :mod:`.passthrough`; with ``empty_as_null``, empty geometries
    as NULL); the query runs (and its first batch is read) here, since the schema comes
    from its columns."""
    fetched = stream.batches()
    first = next(fetched, None)
    plan = stream.plan
    assert plan is not None  # set before the first batch, or by an empty result
    files = plan.options.postgres_text
    fields = [
        arrow_field(pa, column, text=text, decimals=decimals, files=files)
        for column in plan.columns
    ]
    schema = pa.schema(fields)

    def batches() -> Iterator[Any]:
        for rows in chain([first] if first is not None else [], fetched):
            chunk, batch = record_batch(
                pa, schema, plan, rows, curves=curves, empty_as_null=empty_as_null
            )
            on_chunk(chunk)
            yield batch

    return plan, schema, batches()


_EXACT_AS_TEXT = frozenset({BYTEA, NUMERIC})
"""Types a text format (CSV) holds as PostgreSQL's text: bytea as hex, numeric with every
digit (as a float, 12345678901234567890 was written 1.2345678901234567e+19)."""


_DECIMAL_DIGITS = 38
"""The most digits Arrow's decimal128 holds."""


def arrow_field(
    pa: Any, column: Column, *, text: bool = False, decimals: bool = False, files: bool = False
) -> Any:
    """The Arrow field of a column, by its type OID; geometries are WKB binary, and with
    ``text`` geometries, bytea and numeric are strings; with ``decimals`` a numeric with a
    declared precision and scale is a decimal128 of them (else float64). An array of
    geometries is a list of EWKB, for ``files`` the JSON text of a list of GeoJSON."""
    if column.array_of is not None:
        return pa.field(column.name, pa.string() if files else pa.list_(pa.binary()))
    if column.spatial and not text:
        return pa.field(column.name, pa.binary())
    if column.spatial or column.as_text or (text and column.type_oid in _EXACT_AS_TEXT):
        return pa.field(column.name, pa.string())
    if decimals and column.type_oid == NUMERIC and _fits_decimal128(column):
        return pa.field(column.name, pa.decimal128(column.precision, column.scale))
    column_type = COLUMN_TYPES.get(column.type_oid)
    return pa.field(column.name, pa.string() if column_type is None else column_type.arrow(pa))


def _fits_decimal128(column: Column) -> bool:
    """numeric(p, s) with 0 <= s <= p <= 38 (PostgreSQL also allows a negative scale, and a
    scale above the precision, which Arrow's decimals do not)."""
    precision, scale = column.precision, column.scale
    return (
        precision is not None
        and scale is not None
        and 0 < precision <= _DECIMAL_DIGITS
        and 0 <= scale <= precision
    )


def record_batch(
    pa: Any,
    schema: Any,
    plan: ReadPlan,
    rows: Sequence[Any],
    *,
    curves: bool = False,
    empty_as_null: bool = False,
) -> tuple[Chunk, Any]:
    """Fetched rows as a record batch of ``schema``, and what was learnt of them."""
    columns = list(zip(*rows, strict=True))
    geometries: dict[str, Any] = {}
    crs: dict[str, str | None] = {}
    arrays = []
    for index, (column, field) in enumerate(zip(plan.columns, schema, strict=True)):
        values: Any = columns[index]
        if column.spatial:
            shapes = _geometries(values, curves=curves, empty_as_null=empty_as_null)
            active = index == plan.geometry_index
            geometries[column.name] = shapes
            crs[column.name] = plan.column_crs(column, shapes, active=active)
            if isinstance(shapes, PassedThrough):
                values = shapes.wkb()
            elif field.type == pa.string():
                values = wkt_array(shapes)
            else:
                values = shapely.to_wkb(shapes, flavor="iso")
        else:
            values = _plain(pa, field, column, values)
        arrays.append(pa.array(values, type=field.type))
    chunk = Chunk(len(rows), geometries, crs, plan.geometry.name)
    return chunk, pa.RecordBatch.from_arrays(arrays, schema=schema)


def _geometries(values: Sequence[Any], *, curves: bool, empty_as_null: bool) -> Any:
    """A batch's geometries as shapely objects, or (``curves``) passed through when some
    are geometries shapely cannot hold; with ``empty_as_null``, an empty one is None."""
    try:
        shapes = decode_geometries(values)
    except InvalidGeometry as refused:
        if not curves:
            raise
        return passed_through(values, refused, empty_as_null=empty_as_null)
    if empty_as_null:
        shapes[shapely.is_empty(shapes)] = None
    return shapes


def _plain(pa: Any, field: Any, column: Column, values: Sequence[Any]) -> Sequence[Any]:
    """A column's values as Arrow takes them for ``field``: text for a string field
    (JSON, uuid...), floats for numeric's Decimals."""
    if field.type == pa.string():
        return [value if type(value) is str else _text(value) for value in values]
    if pa.types.is_decimal(field.type):  # a decimal holds no NaN: null
        return [None if value is None or value.is_nan() else value for value in values]
    if column.type_oid == NUMERIC:
        return [None if value is None else float(value) for value in values]
    return values


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=_json_value).decode()
    if isinstance(value, bytes):
        return "\\x" + value.hex()  # bytea as PostgreSQL prints it
    return str(value)


def _json_value(value: Any) -> Any:
    """What orjson cannot write itself, inside arrays: numerics as numbers (as PostgreSQL's
    to_json writes them), anything else (inet, interval, ranges, bytea) as its text."""
    if isinstance(value, decimal.Decimal):
        return (
            int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
        )
    return _text(value)


def projjson(crs: str | None) -> Any:
    """The PROJJSON of a CRS PROJ reads (pyproj, a geopandas dependency); None for none."""
    if crs is None:
        return None
    from pyproj import CRS

    return CRS.from_user_input(crs).to_json_dict()


class ArrowStream:
    """A stream's rows as Arrow data: a pyarrow RecordBatchReader (``reader``) that also
    closes: pyarrow's own ``close()`` keeps the batches' source, and with it the pooled
    connection, until the reader is dropped. It exports the Arrow C stream interface, which
    ``pyarrow.table``, ``db.ingest`` and the Arrow readers of polars and DuckDB take."""

    def __init__(self, reader: Any, stream: GeometryStream) -> None:
        self.reader = reader
        self._stream = stream

    @property
    def schema(self) -> Any:
        return self.reader.schema

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.reader.__arrow_c_stream__(requested_schema)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.reader)

    def read_all(self) -> Any:
        """Every remaining row as one pyarrow Table (in memory: for results that fit)."""
        with self:
            return self.reader.read_all()

    def close(self) -> None:
        """Releases the connection at once, however much was read."""
        self._stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def arrow_stream(stream: GeometryStream) -> ArrowStream:
    """``stream`` as Arrow data: a record batch per fetched batch, numeric as decimals, each
    geometry column WKB marked with GeoArrow's ``geoarrow.wkb`` extension and its CRS (the
    column's SRID's, else the first batch's), so DuckDB, polars and geoarrow readers know
    it. The query runs (and its first batch is read) here."""
    pa = pyarrow()
    crs: dict[str, str | None] = {}

    def first_crs(chunk: Chunk) -> None:  # the first chunk's: no chunk is kept
        if not crs:
            crs.update(chunk.crs_by_column)

    try:
        plan, schema, batches = record_batches(pa, stream, first_crs, decimals=True)
        first = next(batches, None)  # its chunk has the CRS of expression columns
        crs_json = {
            column.name: projjson(crs.get(column.name) or plan.crs_for(column.srid))
            for column in plan.columns
            if column.spatial
        }
        fields = [
            _geoarrow_field(pa, field, column, crs_json[column.name]) if column.spatial else field
            for field, column in zip(schema, plan.columns, strict=True)
        ]
    except BaseException:
        stream.close()  # the first batch's connection, at once
        raise
    marked = pa.schema(fields, metadata={b"geo": _declared_geo(plan, crs_json)})

    def marked_batches() -> Iterator[Any]:
        with stream:  # closed however the reader ends
            for batch in chain([first] if first is not None else [], batches):
                yield pa.RecordBatch.from_arrays(batch.columns, schema=marked)

    return ArrowStream(pa.RecordBatchReader.from_batches(marked, marked_batches()), stream)


def _declared_geo(plan: ReadPlan, crs_json: dict[str, Any]) -> bytes:
    """GeoParquet's ``geo`` metadata from the geometry columns' own declarations (the
    type modifier's type, as ``geometry=`` leaves it: Point for centroids; none for M,
    which GeoParquet does not name) and their CRS (``crs_json``: PROJJSON by column):
    pyarrow's write_table of the stream writes GeoParquet, and a table made from it
    (create=True) gets the declared types."""
    columns: dict[str, Any] = {}
    for column in plan.columns:
        if not column.spatial:
            continue
        projected = plan.options.projection if column == plan.geometry else Projection("full")
        declared = projected.declared(column.geometry_type)
        named = declared is not None and declared.partition(" ")[2] in ("", "Z")
        described = {
            "encoding": "WKB",
            "geometry_types": [declared] if named else [],  # GeoParquet names no M
            "crs": crs_json[column.name],  # null: unknown
            **({"edges": "spherical"} if column.spatial == "geography" else {}),
        }
        columns[column.name] = described
    document = {"version": GEOPARQUET_VERSION, "primary_column": plan.geometry.name}
    return orjson.dumps({**document, "columns": columns})


def _geoarrow_field(pa: Any, field: Any, column: Column, crs_json: Any) -> Any:
    """A geometry field marked as GeoArrow WKB, with its CRS as PROJJSON (none: unknown)
    and, for geography, spherical edges."""
    metadata: dict[str, Any] = {}
    if crs_json is not None:
        metadata["crs"] = crs_json
    if column.spatial == "geography":
        metadata["edges"] = "spherical"
    extension = {
        b"ARROW:extension:name": b"geoarrow.wkb",
        b"ARROW:extension:metadata": orjson.dumps(metadata),
    }
    return field.with_metadata(extension)
