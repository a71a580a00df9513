"""GeoDataFrame chunks from a stream (``geo`` extra): ``db.stream_frames`` and the file
writers' input.

Each batch becomes one GeoDataFrame; geometries are decoded per batch in one vectorized
call, and each column's dtype follows its PostgreSQL type.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from geosession.errors import ConfigurationError
from geosession.read.decode import decode_geometries
from geosession.read.plan import Column
from geosession.read.query import ReadPlan
from geosession.read.stream import GeometryStream
from geosession.read.types import COLUMN_TYPES, TIMESTAMPTZ


def _geopandas() -> Any:
    try:
        import geopandas
    except ImportError:
        raise ConfigurationError(
            "GeoDataFrames and GeoPackage/FlatGeobuf/GeoParquet export need geopandas: "
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
    """A GeoDataFrame of ``rows``; the geometry columns keep their names and get their CRS
    (the active one's transformed as asked)."""
    columns = list(zip(*rows, strict=True))
    crs = None
    data: dict[str, Any] = {}
    for index, column in enumerate(plan.columns):
        if column.spatial:
            geometries = decode_geometries(columns[index])
            active = index == plan.geometry_index
            found = plan.column_crs(column, geometries, active=active)
            crs = found if active else crs
            data[column.name] = geopandas.GeoSeries(geometries, crs=found)
        else:
            data[column.name] = _series(plan, column, columns[index])
    return geopandas.GeoDataFrame(data, geometry=plan.geometry.name, crs=crs)


def _series(plan: ReadPlan, column: Column, values: tuple[Any, ...]) -> Any:
    import pandas  # geopandas's own dependency

    if column.as_text:
        return list(values)
    if column.type_oid == TIMESTAMPTZ:  # in the session's TimeZone, as the driver gave them
        return pandas.Series(values, dtype=pandas.DatetimeTZDtype("us", plan.timezone))
    column_type = COLUMN_TYPES.get(column.type_oid)
    if column_type is None or column_type.dtype is None:
        return list(values)
    return pandas.Series(values, dtype=column_type.dtype)
