"""GeoDataFrame chunks and GeoPackage / FlatGeobuf files, from a stream (``geo`` extra).

Each batch becomes one GeoDataFrame; geometries are decoded per batch in one vectorized
call. GeoPackage files grow by appending each chunk; FlatGeobuf cannot be appended to
cheaply (GDAL rewrites the file), so its chunks go to a temporary GeoPackage that GDAL
then streams into the FlatGeobuf file through Arrow, never holding the whole layer.
"""

from __future__ import annotations

import datetime
import decimal
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import shapely

from geosession.errors import ConfigurationError
from geosession.read.decode import decode_geometries
from geosession.read.geojson import Progress, temporary_path
from geosession.read.plan import Column
from geosession.read.query import ReadPlan
from geosession.read.stream import GeometryStream


def _geopandas() -> Any:
    try:
        import geopandas
    except ImportError:
        raise ConfigurationError(
            "GeoDataFrames and GeoPackage/FlatGeobuf export need geopandas and pyogrio: "
            "pip install 'geosession[geo]'"
        ) from None
    return geopandas


def frames(stream: GeometryStream) -> Iterator[Any]:
    """One GeoDataFrame per fetched batch of ``stream`` (whose output is ``"row"``)."""
    geopandas = _geopandas()
    for batch in stream.batches():
        assert stream.plan is not None
        yield to_frame(geopandas, stream.plan, batch)


def to_frame(geopandas: Any, plan: ReadPlan, rows: list[Any]) -> Any:
    """A GeoDataFrame of ``rows``; the geometry column keeps its name and gets a CRS."""
    columns = list(zip(*rows, strict=True))
    geometries = decode_geometries(columns[plan.geometry_index])
    crs = _crs(plan, geometries)
    data: dict[str, Any] = {}
    for index, column in enumerate(plan.columns):
        if index == plan.geometry_index:
            data[column.name] = geopandas.GeoSeries(geometries, crs=crs)
        elif column.spatial:
            data[column.name] = geopandas.GeoSeries(decode_geometries(columns[index]))
        else:
            data[column.name] = _series(plan, column, columns[index])
    return geopandas.GeoDataFrame(data, geometry=plan.geometry.name, crs=crs)


_DTYPES = {
    16: "boolean",
    21: "Int16",
    23: "Int32",
    20: "Int64",
    700: "float32",
    701: "float64",
    1114: "datetime64[us]",
}
"""pandas dtypes by type OID for the columns whose inferred dtype would depend on the
chunk's values (integers with a NULL as floats, booleans with one as objects, a chunk of
NULLs as objects): every chunk of a column gets the same, and files the field type.
Timestamps keep PostgreSQL's microseconds (and its range, which nanoseconds lack)."""
_TIMESTAMPTZ = 1184


def _series(plan: ReadPlan, column: Column, values: tuple[Any, ...]) -> Any:
    import pandas  # geopandas's own dependency

    if column.as_text:
        return list(values)
    if column.type_oid == _TIMESTAMPTZ:  # in the session's TimeZone, as the driver gave them
        return pandas.Series(values, dtype=pandas.DatetimeTZDtype("us", plan.timezone))
    dtype = _DTYPES.get(column.type_oid)
    return list(values) if dtype is None else pandas.Series(values, dtype=dtype)


def _crs(plan: ReadPlan, geometries: Any) -> str | None:
    projection = plan.options.projection
    srid = projection.value if projection.kind == "transform" else plan.geometry.srid
    if srid is None:
        known = shapely.get_srid(geometries[shapely.get_srid(geometries) > 0])
        srid = int(known[0]) if len(known) else None
    return f"EPSG:{srid}" if srid else None


def write_ogr(stream: GeometryStream, path: str, *, format: str, progress: Progress | None) -> int:
    """Writes ``stream`` as a GeoPackage or FlatGeobuf file at ``path``; returns the count."""
    geopandas = _geopandas()
    import pyogrio

    target = Path(path)
    package = temporary_path(target, ".gpkg")
    layer = target.stem or "features"
    try:
        count, nulls = _write_package(geopandas, pyogrio, stream, package, layer, progress)
        if format == "fgb":
            flat = temporary_path(target, ".fgb")
            try:
                _package_to_flatgeobuf(package, flat, spatial_index=not nulls)
                os.replace(flat, target)
            finally:
                flat.unlink(missing_ok=True)
        else:
            os.replace(package, target)
    finally:
        stream.close()
        package.unlink(missing_ok=True)
    return count


def _write_package(
    geopandas: Any, pyogrio: Any, stream: GeometryStream, package: Path, layer: str, progress: Any
) -> tuple[int, int]:
    """Appends each chunk to the GeoPackage; returns the features and NULL geometries."""
    _check_writable(package)
    count = nulls = 0
    for frame in frames(stream):
        pyogrio.write_dataframe(
            _for_ogr(frame), package, layer=layer, driver="GPKG", append=count > 0
        )
        count += len(frame)
        nulls += int(frame.geometry.isna().sum())
        if progress is not None:
            progress(count)
    if count == 0:
        plan = stream.plan
        assert plan is not None
        empty: dict[str, list[Any]] = {
            c.name: [] for i, c in enumerate(plan.columns) if i != plan.geometry_index
        }
        frame = geopandas.GeoDataFrame(
            {**empty, plan.geometry.name: geopandas.GeoSeries([])}, geometry=plan.geometry.name
        )
        pyogrio.write_dataframe(frame, package, layer=layer, driver="GPKG")
    return count, nulls


def _check_writable(package: Path) -> None:
    try:
        package.touch(exist_ok=False)
        package.unlink()
    except OSError as error:
        raise ConfigurationError(
            f"cannot write in {package.parent}: {error.strerror}; choose a writable directory"
        ) from None


def _package_to_flatgeobuf(package: Path, flat: Path, *, spatial_index: bool) -> None:
    """Streams the GeoPackage layer into FlatGeobuf in Arrow batches (GDAL >= 3.8).

    FlatGeobuf's spatial index cannot hold NULL geometries: with any, it is left out.
    """
    from pyogrio.raw import open_arrow, write_arrow

    with open_arrow(package, use_pyarrow=False) as (meta, reader):
        write_arrow(
            reader,
            flat,
            driver="FlatGeobuf",
            geometry_name=meta["geometry_name"] or "geometry",
            geometry_type=meta["geometry_type"],
            crs=meta["crs"],
            layer_options={"SPATIAL_INDEX": "YES" if spatial_index else "NO"},
        )


def _for_ogr(frame: Any) -> Any:
    """Values GDAL has no field type for, as the nearest it has: Decimal as float,
    UUID as text, dates as ISO text, JSON as text; times with a zone in UTC, as GeoPackage
    stores them."""
    for name in frame.columns:
        if getattr(frame[name].dtype, "tz", None) is not None:
            frame[name] = frame[name].dt.tz_convert("UTC")
        if name == frame.geometry.name or frame[name].dtype != object:
            continue
        sample = next((v for v in frame[name] if v is not None), None)
        if isinstance(sample, decimal.Decimal):
            frame[name] = frame[name].astype(float)
        elif isinstance(sample, uuid.UUID):
            frame[name] = frame[name].map(lambda v: None if v is None else str(v))
        elif isinstance(sample, bytes | memoryview):
            frame[name] = frame[name].map(lambda v: None if v is None else bytes(v).hex())
        elif isinstance(sample, dict | list):
            frame[name] = frame[name].map(lambda v: None if v is None else orjson.dumps(v).decode())
        elif isinstance(sample, datetime.date) and not isinstance(sample, datetime.datetime):
            frame[name] = frame[name].map(lambda v: None if v is None else v.isoformat())
    return frame
