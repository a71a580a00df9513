"""The geometry types of a vector layer's features, where the type it declares does not
say them, for the column ``create=True`` makes.

pyogrio names a layer of curves by its linear type (CurvePolygon as Polygon), and a layer
of GeoJSON or KML, which declare no type, as Unknown, without its heights: a column made
from that name would refuse every curve, or every 3D feature. So such layers' features
are looked at: the first 1,000 of a format that may hold curves, and every feature of a
layer of unknown type, geometries alone (:mod:`.seen_types`).
"""

from __future__ import annotations

from typing import Any

from geosession.ingest.archives import GdalSource
from geosession.ingest.file_read import FileRead
from geosession.ingest.files import filtering, rereader
from geosession.ingest.gdal_batches import mended
from geosession.ingest.progress import counting
from geosession.ingest.seen_types import FoundTypes, is_curved
from geosession.read.layer_types import measured_types

_CURVED_SUFFIXES = (".gpkg", ".gdb", ".fgb", ".sqlite")
"""Formats whose layers may hold curves, which pyogrio reports under linear types."""
_CURVE_SAMPLE = 1000
"""Features whose geometry types are looked at for curves."""


def curved_types(pyogrio: Any, source: GdalSource, layer: str | None) -> list[str]:
    """The geometry types of a layer's first features when any is a curve or surface
    (a cadastre's CurvePolygons), which pyogrio's layer type names as linear (Polygon);
    [] otherwise, the declared type then standing."""
    if source.suffix not in _CURVED_SUFFIXES:
        return []
    with measured_types():
        meta, table = pyogrio.read_arrow(
            source.name, layer=layer, columns=[], max_features=_CURVE_SAMPLE
        )
    name = meta.get("geometry_name") or "wkb_geometry"
    again = rereader(pyogrio, source, layer)
    found = FoundTypes()
    for batch in mended(table.to_batches(), name, again, source.path, quiet=True):
        found.see_wkb(batch.column(name))
    return sorted(found.kinds) if any(map(is_curved, found.kinds)) else []


def feature_types(
    pyogrio: Any, source: GdalSource, layer: str | None, read: FileRead, *, progress: bool
) -> list[str]:
    """The geometry types of every feature of a layer whose type is unknown that ``read``'s
    where= and bbox= keep (those the load reads), read once, geometries only
    (:class:`FoundTypes`)."""
    found = FoundTypes()
    reading = f"reading the geometry types of {source.path.name}"
    spatial = read.spatial_filter()
    again = rereader(pyogrio, source, layer, where=read.where, spatial_filter=spatial)
    opened = pyogrio.open_arrow(
        source.name, layer=layer, columns=[], where=read.where, **spatial, use_pyarrow=True
    )
    with (
        counting(progress, reading) as advance,
        measured_types(),
        filtering(read, source.path),
        opened as (meta, reader),
    ):
        name = meta.get("geometry_name") or "wkb_geometry"
        for batch in mended(reader, name, again, source.path, quiet=True):
            found.see_wkb(batch.column(name))
            advance(batch.num_rows)
    return found.types
