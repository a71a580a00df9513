"""The geometry types of a vector layer's features, where the type it declares does not
say them, for the column ``create=True`` makes.

pyogrio names a layer of curves by its linear type (CurvePolygon as Polygon), and a layer
of GeoJSON or KML, which declare no type, as Unknown, without its heights: a column made
from that name would refuse every curve, or every 3D feature. So such layers' features
are looked at: the first 1,000 of a format that may hold curves, and every feature of a
layer of unknown type (its geometries alone, their WKB headers read once per distinct
header, each batch's coordinates only where a header says Z).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from geosession.geometry import NOT_IN_GEOS, wkb_type_name
from geosession.ingest.archives import GdalSource
from geosession.ingest.files import rereader
from geosession.ingest.gdal_batches import mended
from geosession.ingest.progress import counting
from geosession.ingest.validate import flat_z
from geosession.read.layer_types import measured_types

_CURVED_SUFFIXES = (".gpkg", ".gdb", ".fgb", ".sqlite")
"""Formats whose layers may hold curves, which pyogrio reports under linear types."""
_CURVE_SAMPLE = 1000
"""Features whose geometry types are looked at for curves."""
_HEADER = 5
"""Bytes of a WKB header that say its type: the byte order and the type word."""


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
    batches = mended(table.to_batches(), name, again, source.path, quiet=True)
    geometries = [g for batch in batches for g in batch.column(name).to_pylist()]
    kinds = {wkb_type_name(bytes(g)) for g in geometries if g}
    return sorted(kinds) if _curved(kinds) else []


def feature_types(
    pyogrio: Any, source: GdalSource, layer: str | None, *, progress: bool
) -> list[str]:
    """The geometry types of every feature of a layer whose type is unknown ("Polygon",
    "MultiPolygon", "Point Z"), read once, geometries only. Where no Z is other than 0
    (KML's altitude where it has none) the types are 2D: the load drops such Z for a 2D
    column. A curve's Z counts as a height (shapely cannot read its coordinates)."""
    kinds: set[str] = set()
    raised = False
    reading = f"reading the geometry types of {source.path.name}"
    again = rereader(pyogrio, source, layer)
    with (
        counting(progress, reading) as advance,
        measured_types(),
        pyogrio.open_arrow(source.name, layer=layer, columns=[], use_pyarrow=True) as (
            meta,
            reader,
        ),
    ):
        name = meta.get("geometry_name") or "wkb_geometry"
        for batch in mended(reader, name, again, source.path, quiet=True):
            found, heights = _batch_types(batch.column(name).drop_null())
            kinds |= found
            raised = raised or heights
            advance(batch.num_rows)
    return sorted(kinds if raised else {_flat(kind) for kind in kinds})


def _batch_types(wkb: Any) -> tuple[set[str], bool]:
    """The types of a batch's WKB geometries (each distinct header read once), and whether
    any has a Z other than 0: read from the coordinates of those whose header says Z."""
    import pyarrow
    import pyarrow.compute as pc

    headers = pc.binary_slice(wkb, 0, _HEADER).dictionary_encode()
    kinds = {
        n: wkb_type_name(h) if len(h) == _HEADER else "Unknown"  # not WKB: the load says so
        for n, h in enumerate(headers.dictionary.to_pylist())
    }
    with_z = [n for n, kind in kinds.items() if _flat(kind) != kind]
    if any(_curved({kinds[n]}) for n in with_z):
        return set(kinds.values()), True
    if not with_z:
        return set(kinds.values()), False
    lifted = pyarrow.array(np.isin(headers.indices.to_numpy(), with_z))
    geometries = shapely.from_wkb(wkb.filter(lifted).to_numpy(zero_copy_only=False))
    return set(kinds.values()), not flat_z(geometries).all()


def _flat(kind: str) -> str:
    """``kind`` without a Z it has alone (a measured type keeps it, as the load does)."""
    return kind.removesuffix(" Z")


def _curved(kinds: set[str]) -> bool:
    return any(kind.split(" ")[0] in NOT_IN_GEOS.values() for kind in kinds)
