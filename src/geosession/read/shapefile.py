"""Shapefiles from a stream (``geo`` extra), written through GDAL like GeoPackages.

A Shapefile is a set of files (.shp, .shx, .dbf, .prj, .cpg and the .qix spatial index),
or one zip of them when the name ends in ``.shp.zip``. Its dBase table has limits that
GDAL meets by truncating in silence; here they are met in the open: field names longer
than 10 bytes are shortened (made unique, as GDAL would) and reported; a text value
longer than 254 bytes, or a number wider than its field, fails the export, naming the
column and the feature; one geometry
column of one shape type (points, multipoints, lines or polygons, single and multi lines
or polygons together). Text is UTF-8, as the .cpg file declares; the files stop at 2 GB,
which older readers cannot go past.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import count
from pathlib import Path
from typing import Any

from geosession.errors import ConfigurationError, ExportFailed
from geosession.read.arrow import pyarrow
from geosession.read.geojson import Progress, temporary_path
from geosession.read.layer_types import UNKNOWN, dimensions, named
from geosession.read.ogr import (
    Rows,
    check_writable,
    copy_layer,
    gdal_failures,
    open_rows,
    write_rows,
)
from geosession.read.query import ReadPlan
from geosession.read.stream import GeometryStream

NAME_BYTES = 10
"""A dBase field name's length in bytes."""

TEXT_BYTES = 254
"""A dBase text value's length in bytes (UTF-8)."""

ZIPPED = ".shp.zip"
"""The suffix of a zipped Shapefile, which GDAL writes as one file."""

SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")
"""The files of a Shapefile that describe its rows: those of an older Shapefile of the
same name are replaced or removed (a stale .sbn index would mislead its readers)."""

_SHAPES = {
    "Point": "Point",
    "MultiPoint": "MultiPoint",
    "LineString": "MultiLineString",
    "MultiLineString": "MultiLineString",
    "Polygon": "MultiPolygon",
    "MultiPolygon": "MultiPolygon",
}
"""The shape type that holds a geometry type; a shape of lines or polygons holds both the
single and the multi form, one of points only points (points among multipoints are
written as multipoints of one)."""


@dataclass(frozen=True)
class ShapefileWritten:
    """What was written: the features, and the columns whose field names were shortened
    (column: field)."""

    count: int
    renamed: dict[str, str]


def write_shapefile(
    stream: GeometryStream, path: str, *, progress: Progress | None, spatial_index: bool
) -> ShapefileWritten:
    """Writes ``stream`` as a Shapefile at ``path`` (``*.shp``, or ``*.shp.zip`` for one
    zip), with its .qix spatial index unless ``spatial_index`` is False. The files are
    written in a hidden folder beside ``path`` and moved into place once complete."""
    target = Path(path)
    with gdal_failures(target, stream):
        folder = temporary_path(target)
        check_writable(folder)
        rows = open_rows(stream, progress)
        names = field_names(rows.schema.names, _one_geometry_column(rows.plan))
        folder.mkdir()
        try:
            _write(_within_limits(rows, names, target), folder, target, spatial_index)
            _place(folder, target)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    renamed = {column: field for column, field in names.items() if column != field}
    return ShapefileWritten(rows.seen.count, renamed)


def field_names(columns: Iterable[str], geometry: str) -> dict[str, str]:
    """Each column's dBase field name (the geometry column has none): at most 10 bytes,
    unique whatever the case, shortened ones ending in _1, _2... where they would repeat."""
    taken = {geometry.casefold()}
    names: dict[str, str] = {}
    for column in columns:
        if column == geometry:
            continue
        name = _shortened(column, NAME_BYTES)
        for number in count(1):
            if name.casefold() not in taken:
                break
            suffix = f"_{number}"
            name = _shortened(column, NAME_BYTES - len(suffix)) + suffix
        taken.add(name.casefold())
        names[column] = name
    return names


def shape_type(kinds: set[str], target: Path) -> str:
    """The Shapefile's type for rows of these geometry types (with every dimension any
    row has); an error naming ``target`` when no one shape type holds them all."""
    if not kinds:
        return UNKNOWN  # no geometry to tell: GDAL chooses
    parts = [dimensions(kind) for kind in kinds]
    bases = {base for base, _, _ in parts}
    shapes = {_SHAPES.get(base) for base in bases}
    if bases == {"Point", "MultiPoint"}:
        shapes = {"MultiPoint"}  # the points are written as multipoints of one
    if None in shapes or len(shapes) > 1:
        raise ExportFailed(
            f"Writing {target} failed: a Shapefile holds one kind of shape (points, "
            f"multipoints, lines or polygons) and the rows have {' and '.join(sorted(bases))}"
            f": make them one in the query ({_extract_advice(bases)}), or export to "
            f"GeoPackage, which holds any; {target} is left as it was"
        )
    shape = bases.pop() if len(bases) == 1 else str(shapes.pop())
    return named(shape, any(z for _, z, _ in parts), any(m for _, _, m in parts))


_EXTRACTED = {"Point": 1, "MultiPoint": 1, "MultiLineString": 2, "MultiPolygon": 3}
"""ST_CollectionExtract's number for each shape type."""


def _extract_advice(bases: set[str]) -> str:
    """How to make collections the rows' one other shape type: ST_CollectionExtract of that
    type (an empty collection, as ST_Intersection gives for shapes apart, becomes an empty
    one of it, which a Shapefile writes as a NULL shape)."""
    shapes = {_SHAPES[base] for base in bases if base in _SHAPES}
    if len(shapes) == 1 and "GeometryCollection" in bases:
        number = _EXTRACTED[shapes.pop()]
        return f"ST_CollectionExtract(geom, {number}) makes the collections of that type"
    return "ST_CollectionExtract(geom, 1), 2 or 3 takes a collection's points, lines or polygons"


def _shortened(name: str, size: int) -> str:
    """``name`` cut to ``size`` bytes of UTF-8, never inside a character."""
    return name.encode()[:size].decode(errors="ignore")


def _one_geometry_column(plan: ReadPlan) -> str:
    others = [c.name for c in plan.columns if c.spatial and c.name != plan.geometry.name]
    if others:
        raise ConfigurationError(
            f"a Shapefile holds one geometry column, and the query has {plan.geometry.name} "
            f"and {', '.join(others)}: leave the others out (or give them as text, "
            "ST_AsText(...), if they are short), or export to GeoPackage"
        )
    return plan.geometry.name


def _within_limits(rows: Rows, names: dict[str, str], target: Path) -> Rows:
    """``rows`` under their field names, each batch checked for text too long for a
    dBase field before GDAL would truncate it."""
    pa = pyarrow()
    schema = pa.schema(
        [field.with_name(names.get(field.name, field.name)) for field in rows.schema]
    )

    def batches() -> Iterator[Any]:
        done = 0
        for batch in rows.batches:
            _check_text(batch, names, done, target)
            done += batch.num_rows
            yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)

    return replace(rows, schema=schema, batches=batches())


def _check_text(batch: Any, names: dict[str, str], done: int, target: Path) -> None:
    """Fails on the first value longer than a dBase field holds: text as UTF-8, bytea as
    the hex GDAL writes (two characters a byte)."""
    pa = pyarrow()
    compute = pa.compute
    for column, field in zip(batch.columns, batch.schema, strict=True):
        text = pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
        if field.name not in names or not (text or pa.types.is_binary(field.type)):
            continue
        lengths = compute.multiply(compute.binary_length(column), 1 if text else 2)
        over = compute.greater(lengths, TEXT_BYTES)
        if not compute.any(over).as_py():
            continue
        row = compute.index(over, True).as_py()
        size = lengths[row].as_py()
        shorten = f"shorten it in the query (left({field.name}, 200), say), " if text else ""
        raise ExportFailed(
            f"Writing {target} failed: column {field.name} of feature {done + row + 1:,} "
            f"holds {size:,} bytes {'of text' if text else 'as hex'}, and a Shapefile's "
            f"fields hold {TEXT_BYTES}: {shorten}leave it out, or export to GeoPackage, "
            f"which holds any length; {target} is left as it was"
        )


_OPTIONS = {"ENCODING": "UTF-8", "2GB_LIMIT": "YES"}


def _write(rows: Rows, folder: Path, target: Path, spatial_index: bool) -> None:
    """The Shapefile ``target`` in ``folder``; when no column declares the geometry type,
    the rows go to a GeoPackage first, which holds any, and are copied from it into a
    Shapefile of the shape type they turned out to have."""
    written = folder / target.name
    layer = _stem(written)
    if rows.seen.declared is not None:
        shape_type({rows.seen.declared}, target)  # refuses a type no Shapefile holds
        write_rows(
            rows, written, layer, driver="ESRI Shapefile", indexed=spatial_index, options=_OPTIONS
        )
        return
    package = folder / f"{layer}.staged.gpkg"
    seen = write_rows(rows, package, layer, driver="GPKG", indexed=False, staged=True)
    kind = shape_type(seen.kinds, target)
    options = {**_OPTIONS, "SPATIAL_INDEX": "YES" if spatial_index else "NO"}
    mixed = dimensions(kind)[0] == "MultiPoint" and any(
        dimensions(seen_kind)[0] == "Point" for seen_kind in seen.kinds
    )
    copy_layer(
        package,
        written,
        layer,
        driver="ESRI Shapefile",
        kind=kind,
        options=options,
        points_as_multi=mixed,
    )
    package.unlink()


def _stem(path: Path) -> str:
    """The name the Shapefile's files share: ``parcels`` of parcels.shp and parcels.shp.zip."""
    if path.name.lower().endswith(ZIPPED):
        return path.name[: -len(ZIPPED)]
    return path.stem


def _place(folder: Path, target: Path) -> None:
    """Moves the written files beside ``target``, first removing the files of an older
    Shapefile of that name that were not written again."""
    written = {path.name for path in folder.iterdir()}
    if not target.name.lower().endswith(ZIPPED):
        stem = _stem(target)
        for suffix in SIDECARS:
            for stale in (target.with_name(stem + suffix), target.with_name(stem + suffix.upper())):
                if stale.name not in written:
                    stale.unlink(missing_ok=True)
    for name in sorted(written, key=lambda n: n == target.name):  # the .shp last
        os.replace(folder / name, target.with_name(name))
