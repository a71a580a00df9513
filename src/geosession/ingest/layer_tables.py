"""Loads of a command line ingest: each file, or each layer of a file into its own table.

``geosession ingest data.gpkg '{layer}' --create`` loads every layer with features into a
table named after it, as ogr2ogr loads a whole GeoPackage: the name laundered as ogr2ogr's
PostgreSQL driver does by default (lower case, other characters than letters, digits and
_ made _), so SQL need not quote it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from geosession.errors import ConfigurationError
from geosession.ingest.files import filled_layers

LAYER = "{layer}"
"""What a table name's layer part is written as."""


@dataclass(frozen=True)
class Load:
    """One load of the command: a file (and a layer of it) into a table."""

    source: Path
    layer: str | None
    table: str

    @property
    def label(self) -> str:
        return str(self.source) if self.layer is None else f"{self.source} ({self.layer})"


def planned_loads(
    sources: Sequence[Path], table: str, layer: str | None, *, piped: Sequence[Path] = ()
) -> tuple[list[Load], list[str]]:
    """The loads, and the layers a ``{layer}`` table name passed over (as ``file (layer,
    why)``: empty, or a table without geometries). Without ``{layer}``, one load per
    file into ``table``."""
    if LAYER not in table:
        return [Load(source, layer, table) for source in sources], []
    loads: list[Load] = []
    empty: list[str] = []
    for source in sources:
        if source in piped:
            raise ConfigurationError(
                f"the table name {table!r} names each layer's table, and {source} is read "
                "once, as it comes: save it to a file first, or name one table"
            )
        found = filled_layers(source) if layer is None else None
        layers: list[str | None] = [layer]
        if found is not None:
            layers = list(found.filled)
            empty += [f"{source} ({name}, empty)" for name in found.empty]
            empty += [f"{source} ({name}, no geometries)" for name in found.without_geometries]
        for name in layers:
            loads.append(Load(source, name, table.replace(LAYER, laundered(name or _stem(source)))))
    _refuse_names_alike(loads)
    return loads, empty


def _refuse_names_alike(loads: Sequence[Load]) -> None:
    """Refuses layers of different names whose tables' names are the same once laundered
    ("Road Segments-2024" and "road_segments_2024"): their rows would go into one table
    unseen. Layers of one name in several files (tiles of one layer) load into one."""
    named: dict[str, Load] = {}
    for load in loads:
        other = named.setdefault(load.table, load)
        if _layer_name(other) != _layer_name(load):
            raise ConfigurationError(
                f"{other.label} and {load.label} would both load into table {load.table} "
                "(names are made lower case, other characters than letters, digits and _ "
                "made _): load them one at a time, each with --layer NAME and a table name "
                "of its own"
            )


def _layer_name(load: Load) -> str:
    return load.layer or _stem(load.source)


def laundered(name: str) -> str:
    """A layer's name as a table's: lower case, runs of other characters than letters,
    digits and _ as one _ ("Road Segments-2024" is road_segments_2024)."""
    return re.sub(r"[^0-9a-z_]+", "_", name.lower()).strip("_") or "layer"


def _stem(source: Path) -> str:
    """A file of one layer: its name without suffixes (parcels.geojson.zip is parcels)."""
    return source.name.split(".")[0] or source.name
