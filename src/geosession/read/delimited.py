"""CSV files from a stream (``geo`` extra): the geometry as WKT, or a point's coordinates
as two columns; the rest as text.

The stream's Arrow record batches (``read.arrow``, so every column keeps one type
whatever a chunk holds) are written by pyarrow's CSV writer, with the geometries as
WKT (every double exact) in the columns of their names, the form spreadsheets, QGIS's
delimited-text layers and ``geosession ingest`` read. With ``coordinates``, the active
geometry column's points become ``longitude`` and ``latitude`` columns (a geographic CRS)
or ``x`` and ``y`` (any other), as spreadsheets and the ingest read them too. bytea is
written as PostgreSQL prints it (``\\x`` and hex). A CSV holds no CRS: one written to a
path gets the active geometry column's in a ``.prj`` file beside it
(:mod:`geosession.sidecar`).
"""

from __future__ import annotations

import contextlib
import os
from itertools import chain
from typing import IO, Any

import numpy as np
import shapely

from geosession.errors import ConfigurationError, ExportFailed
from geosession.read.arrow import Chunk, pyarrow, record_batches
from geosession.read.geojson import Progress, atomic_output
from geosession.read.query import ReadPlan
from geosession.read.stream import GeometryStream


def write_csv(
    stream: GeometryStream,
    dest: str | os.PathLike[str] | IO[bytes],
    *,
    progress: Progress | None,
    coordinates: bool = False,
) -> tuple[int, str | None]:
    """Writes ``stream`` as CSV to ``dest`` (a path, or a binary file); returns the count
    and the CRS of the active geometry column (for its ``.prj``: :mod:`geosession.sidecar`).
    ``coordinates``: the points of the active geometry column as two number columns."""
    pa = pyarrow()
    from pyarrow import csv

    count = 0
    latest: list[Chunk] = []  # the chunk whose batch comes next

    def on_chunk(chunk: Chunk) -> None:
        nonlocal count
        count += chunk.rows
        latest[:] = [chunk]
        if progress is not None:
            progress(count)

    with stream, atomic_output(dest, ".csv") as sink:
        plan, schema, batches = record_batches(pa, stream, on_chunk, text=True)
        first = next(batches, None)  # its chunk tells the CRS of a column that declares none
        batches = chain([] if first is None else [first], batches)
        crs = latest[0].crs if latest else plan.column_crs(plan.geometry, _NONE, active=True)
        as_points = None
        if coordinates:
            declared_z = "Z" in (plan.geometry.geometry_type or "").partition(" ")[2]
            z = declared_z or bool(latest and shapely.has_z(latest[0].geometry).any())
            as_points = _Coordinates(pa, schema, plan, crs, z=z)
        with csv.CSVWriter(sink, as_points.schema if as_points else schema) as writer:
            for batch in batches:
                writer.write_batch(as_points.batch(batch, latest[0]) if as_points else batch)
    return count, crs


_NONE = np.empty(0, dtype=object)
"""No geometries: a column's CRS as declared (or transformed into), for an empty export."""


class _Coordinates:
    """The active geometry column of each batch as two float columns in its place, three
    with ``z`` (points with Z: their declared type, or the first batch, says so)."""

    def __init__(self, pa: Any, schema: Any, plan: ReadPlan, crs: str | None, *, z: bool) -> None:
        self.pa = pa
        self.index = schema.get_field_index(plan.geometry.name)
        self.z = z
        self.names = (*_coordinate_names(crs), *(("z",) if z else ()))
        taken = [name for name in self.names if name in schema.names]
        if taken:
            raise ConfigurationError(
                f"the query has a column named {taken[0]}, where the coordinates would go: "
                f"rename it (... AS other_name) or export WKT"
            )
        fields = [pa.field(name, pa.float64()) for name in self.names]
        kept = list(schema)
        self.schema = pa.schema([*kept[: self.index], *fields, *kept[self.index + 1 :]])

    def batch(self, batch: Any, chunk: Chunk) -> Any:
        geometries = chunk.geometry
        kinds = shapely.get_type_id(geometries)
        wrong = np.flatnonzero((kinds != 0) & ~shapely.is_missing(geometries))
        if len(wrong):
            raise ExportFailed(
                f"coordinates=True writes points, and the rows hold a "
                f"{geometries[wrong[0]].geom_type}: export their centroids "
                "(geometry='centroid', CLI: --geometry centroid) or the geometry as WKT"
            )
        if not self.z and shapely.has_z(geometries).any():
            raise ExportFailed(
                "coordinates=True writes x and y, and points with Z came after the first "
                "rows, which had none (their column declares no type): declare it (ALTER "
                "TABLE ... TYPE geometry(PointZ, <srid>)) or export the geometry as WKT"
            )
        values = [shapely.get_x(geometries), shapely.get_y(geometries)]  # NaN: NULL or empty
        if self.z:
            values.append(shapely.get_z(geometries))  # NaN (null) for a point without Z
        columns = [self.pa.array(value, from_pandas=True) for value in values]
        arrays = batch.columns
        arrays = [*arrays[: self.index], *columns, *arrays[self.index + 1 :]]
        return self.pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def _coordinate_names(crs: str | None) -> tuple[str, str]:
    """longitude and latitude for a geographic CRS (PROJ tells), else x and y."""
    if crs is not None:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        with contextlib.suppress(CRSError):  # a CRS PROJ cannot read: x and y
            if CRS.from_user_input(crs).is_geographic:
                return "longitude", "latitude"
    return "x", "y"
