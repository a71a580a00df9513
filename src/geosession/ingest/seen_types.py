"""The geometry types of the values seen, for the column ``create=True`` makes where a
source does not declare them: WKB by its headers, text by its WKT words or hex header.

Each distinct WKB header is read once; coordinates are read only to tell heights from a
Z of 0 at every point (KML's altitude where it has none), which keeps a column 2D.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from geosession.ingest.geometry_values import parse_geometries
from geosession.ingest.validate import flat_z
from geosession.wkb import NOT_IN_GEOS, WKT_TYPE_NAMES, wkb_type_name

_HEADER = 5
"""Bytes of a WKB header that say its type: the byte order and the type word."""


@dataclass
class FoundTypes:
    """The geometry types of the values seen ("Polygon", "MultiPolygon", "Point Z").
    Where no Z is other than 0 (KML's altitude where it has none) the types are 2D: the
    load drops such Z for a 2D column. A curve's Z, and a Z in text, count as heights
    (shapely cannot read a curve's coordinates; text is not parsed)."""

    kinds: set[str] = field(default_factory=set)
    raised: bool = False
    """Whether a Z seen is other than 0."""

    @property
    def types(self) -> list[str]:
        return sorted(self.kinds if self.raised else {_flat(kind) for kind in self.kinds})

    def see_wkb(self, wkb: Any) -> None:
        """An Arrow array of WKB (a GeoArrow WKB extension's too): each distinct header read
        once; the coordinates of those whose header says Z, while no height was seen."""
        import pyarrow
        import pyarrow.compute as pc

        wkb = getattr(wkb, "storage", wkb)
        if wkb.type == pyarrow.binary_view():  # polars' binary: few kernels take it
            wkb = wkb.cast(pyarrow.binary())
        wkb = wkb.drop_null()
        headers = pc.binary_slice(wkb, 0, _HEADER).dictionary_encode()
        kinds = {
            n: wkb_type_name(h) if len(h) == _HEADER else "Unknown"  # not WKB: the load says
            for n, h in enumerate(headers.dictionary.to_pylist())
        }
        self.kinds.update(kinds.values())
        with_z = [n for n, kind in kinds.items() if _flat(kind) != kind]
        if self.raised or not with_z:
            return
        if any(is_curved(kinds[n]) for n in with_z):
            self.raised = True
            return
        lifted = pyarrow.array(np.isin(headers.indices.to_numpy(), with_z))
        geometries = shapely.from_wkb(wkb.filter(lifted).to_numpy(zero_copy_only=False))
        self.raised = not flat_z(geometries).all()

    def see_values(self, values: list[Any]) -> None:
        """Python values as the load reads them (shapely objects, WKB, text, GeoJSON dicts);
        those that cannot be read are left to the load."""
        import pyarrow

        geometries, _, _ = parse_geometries(values, None)
        read = geometries[geometries != None]  # noqa: E711
        if len(read):
            wkb = shapely.to_wkb(read, flavor="iso", output_dimension=4)
            self.see_wkb(pyarrow.array(wkb.tolist(), pyarrow.binary()))

    def see_text(self, values: Iterable[str]) -> None:
        """Geometries as text: WKT, EWKT (a Z told by its word or by three coordinates, as
        PostGIS writes EWKT) or hex (E)WKB; anything else is left to the load."""
        for value in values:
            kind = _text_type(value)
            if kind is not None:
                self.kinds.add(kind)
                self.raised = self.raised or _flat(kind) != kind


_WKT_HEAD = re.compile(
    r"\s*(?:SRID=-?[0-9]+;\s*)?([A-Za-z]+?)\s*(ZM|Z|M)?\s*(?:EMPTY|\()", re.IGNORECASE
)
"""WKT's type word and its dimensions' word."""
_FIRST_POINT = re.compile(r"\(\s*([-+0-9.eE]+(?:\s+[-+0-9.eE]+)*)\s*[,)]")
"""The first coordinates of WKT, in the innermost parentheses (past a curve's words)."""


def _text_type(value: str) -> str | None:
    if value[:2] in ("00", "01") and len(value) >= 2 * _HEADER:
        with contextlib.suppress(ValueError):
            return wkb_type_name(bytes.fromhex(value[: 2 * _HEADER]))
    head = _WKT_HEAD.match(value)
    kind = WKT_TYPE_NAMES.get(head.group(1).upper()) if head is not None else None
    if head is None or kind is None:
        return None
    dimensions = (head.group(2) or "").upper()
    point = _FIRST_POINT.search(value, head.end() - 1)
    numbers = len(point.group(1).split()) if point is not None else 2
    if not dimensions and numbers > 2:  # EWKT: POINT(1 2 3) is Z, POINT(1 2 3 4) ZM
        dimensions = "Z" if numbers == 3 else "ZM"
    return f"{kind} {dimensions}" if dimensions else kind


def _flat(kind: str) -> str:
    """``kind`` without a Z it has alone (a measured type keeps it, as the load does)."""
    return kind.removesuffix(" Z")


def is_curved(kind: str) -> bool:
    """Whether a type is one shapely cannot hold (a curve, a surface)."""
    return kind.split(" ")[0] in NOT_IN_GEOS.values()


def arrow_value_types(
    arrow: Any, read: Callable[[list[str]], Iterable[Any]], names: list[str]
) -> dict[str, list[str]]:
    """The geometry types of the WKB or WKT values of fields ``names`` (:class:`FoundTypes`);
    a GeoArrow extension's field is read as its storage."""
    kinds = {name: str(getattr(arrow.field(name).type, "storage_type", "")) for name in names}
    kinds = {n: kind or str(arrow.field(n).type) for n, kind in kinds.items()}
    found = {name: FoundTypes() for name, kind in kinds.items() if kind in _HELD_TYPES}
    for batch in read(list(found)) if found else ():
        for name, types in found.items():
            column = batch.column(name)
            values = getattr(column, "storage", column)
            if "string" in kinds[name]:
                types.see_text(v for v in values.to_pylist() if v is not None)
            else:
                types.see_wkb(values)
    return {name: types.types for name, types in found.items()}


_HELD_TYPES = ("binary", "large_binary", "binary_view", "string", "large_string", "string_view")
"""Arrow types of a field of WKB or WKT values."""
