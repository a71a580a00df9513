"""A CSV's CRS in a ``.prj`` file beside it (GeoCSV's sidecar, as a Shapefile keeps its
own): written by the CSV export, read by GDAL and by the ingest of a CSV.

``parcels.csv`` and ``parcels.csv.gz`` both keep theirs in ``parcels.prj``.
"""

from __future__ import annotations

import os
from pathlib import Path

from geosession.compression import compression_suffix
from geosession.errors import ConfigurationError


def prj_path(path: str | os.PathLike[str]) -> Path:
    """The ``.prj`` that holds the CRS of the file at ``path``."""
    plain = Path(path)
    if compression_suffix(plain) is not None:
        plain = plain.with_suffix("")
    return plain.with_suffix(".prj")


def refuse_a_shapefiles_prj(path: str | os.PathLike[str]) -> None:
    """Refuses a CSV whose ``.prj`` is a Shapefile's: ``parcels.csv`` beside
    ``parcels.shp`` would replace that Shapefile's CRS with its own, or remove it."""
    prj = prj_path(path)
    shapefile = next(
        (prj.with_suffix(s) for s in (".shp", ".SHP") if prj.with_suffix(s).is_file()), None
    )
    if shapefile is not None:
        raise ConfigurationError(
            f"{os.fspath(path)} would keep its CRS in {prj}, which holds the CRS of the "
            f"Shapefile {shapefile} beside it: name the CSV otherwise ({prj.stem}_rows.csv, "
            "say) or write it to another directory"
        )


def write_prj(path: str | os.PathLike[str], crs: str | None) -> None:
    """The CRS of the file at ``path`` into its ``.prj`` (WKT1 as GDAL writes it, with the
    EPSG code; WKT2 for a CRS WKT1 cannot hold). Without one, a ``.prj`` left by an
    earlier export to that name is removed: it would give the new file a wrong CRS."""
    prj = prj_path(path)
    if crs is None:
        prj.unlink(missing_ok=True)
        return
    from pyproj import CRS

    parsed = CRS.from_user_input(crs)
    prj.write_text(parsed.to_wkt("WKT1_GDAL") or parsed.to_wkt("WKT2_2019"))
