"""What GDAL is given to open a vector file, a zip archive of one included.

GDAL reads the files of a zip or tar archive in place (``/vsizip/``, ``/vsitar/``, a
.tgz's too), but opens a zip by itself only at its top level, while many downloads keep
their Shapefiles in a folder, next to a README or metadata. So the archive is looked into:
a single vector file in it is opened by its path inside; Shapefiles in one folder are
opened as that folder, each Shapefile a layer.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from geosession.errors import ConfigurationError
from geosession.ingest.compressed import gdal_gzip

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz")
GZIPPED = "/vsigzip/"
"""GDAL's path prefix of a gzipped file, read as it decompresses."""
_ZIP = ".zip"
GEODATABASE = ".gdb"
"""An Esri File Geodatabase: a folder of files that GDAL opens as one dataset."""
_DATASET_SUFFIXES = (".shp", ".gpkg", ".geojson", ".fgb", ".kml", ".gpx", ".tab", ".mif", ".sqlite")
"""Files in an archive that are data (a .json there is more often metadata)."""


@dataclass(frozen=True)
class GdalSource:
    """A vector file as pyogrio opens it."""

    path: Path
    """The file as given."""
    name: str | Path
    """What pyogrio opens: the file, or GDAL's path to the data in the archive."""
    shapefiles: bool
    """Whether its layers are Shapefiles, whose text may be in an encoding other than UTF-8."""

    @property
    def suffix(self) -> str:
        """The data's suffix, in lower case: ``.gpkg`` for a GeoPackage in a zip archive,
        ``.geojson`` for gzipped GeoJSON."""
        name = PurePosixPath(str(self.name))
        return (name.with_suffix("") if str(name).startswith(GZIPPED) else name).suffix.lower()


def shapefile_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of Shapefiles (not a File Geodatabase's), which GDAL
    opens as one dataset, each Shapefile a layer, as it opens such a folder in a zip."""
    return (
        path.is_dir()
        and path.suffix.lower() != GEODATABASE
        and any(child.suffix.lower() == ".shp" for child in path.iterdir())
    )


def gdal_source(path: Path) -> GdalSource:
    """``path`` itself (a file, or a folder of Shapefiles, each checked for its parts), or
    for a zip archive what in it holds the data, or gzipped GeoJSON as GDAL decompresses
    it."""
    if shapefile_folder(path):
        for shp in (child for child in path.iterdir() if child.suffix.lower() == ".shp"):
            _check_parts(shp.name, lambda name: (path / name).exists(), str(path))
        return GdalSource(path, path, shapefiles=True)
    if gdal_gzip(path):
        return GdalSource(path, f"{GZIPPED}{path}", shapefiles=False)
    if path.suffix.lower() not in ARCHIVE_SUFFIXES:
        shapefile = path.suffix.lower() == ".shp"
        if shapefile:
            _check_parts(path.name, lambda name: (path.parent / name).exists(), str(path.parent))
        return GdalSource(path, path, shapefiles=shapefile)
    return _archive_source(path)


def _archive_source(path: Path) -> GdalSource:
    """What in a zip or tar archive holds the data: its one vector file, its File
    Geodatabase, or its folder of Shapefiles."""
    members = _members(path)
    data = [
        member
        for member in members
        if member.suffix.lower() in _DATASET_SUFFIXES and "__MACOSX" not in member.parts
    ]
    data += sorted(_geodatabases(members))
    if not data:
        raise ConfigurationError(
            f"{path} holds no GeoPackage, Shapefile, GeoJSON, FlatGeobuf, KML, GPX, MapInfo or "
            "SpatiaLite file, nor a File Geodatabase"
        )
    for member in data:
        if member.suffix.lower() == ".shp":
            siblings = {m.name for m in members if m.parent == member.parent}
            _check_parts(member.name, siblings.__contains__, f"{path}'s {member.parent}")
    if len(data) == 1:
        shapefile = data[0].suffix.lower() == ".shp"
        inside = data[0].parent if shapefile else data[0]  # a Shapefile needs its siblings
        return GdalSource(path, _inside(path, inside), shapefiles=shapefile)
    folders = {member.parent for member in data}
    if len(folders) == 1 and all(member.suffix.lower() == ".shp" for member in data):
        return GdalSource(path, _inside(path, folders.pop()), shapefiles=True)
    listed = ", ".join(str(member) for member in data[:6]) + (", ..." if len(data) > 6 else "")
    raise ConfigurationError(
        f"{path} holds several vector files ({listed}) that GDAL cannot open as one: "
        "unzip it and load them one by one"
    )


def _members(path: Path) -> list[PurePosixPath]:
    """The names of the files and folders in a zip or tar archive."""
    zipped = path.suffix.lower() == _ZIP
    try:
        if zipped:
            with zipfile.ZipFile(path) as archive:
                return [PurePosixPath(name) for name in archive.namelist()]
        with tarfile.open(path) as archive:  # a .tgz's compression told by its bytes
            return [PurePosixPath(member.name) for member in archive.getmembers()]
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as error:
        kind = "zip" if zipped else "tar"
        raise ConfigurationError(f"cannot read {path} as a {kind} archive: {error}") from error


def _geodatabases(members: list[PurePosixPath]) -> set[PurePosixPath]:
    """The .gdb folders in an archive (the zip of a File Geodatabase holds the folder, or
    its files at the top: then the archive is the geodatabase, ".")."""
    folders = {
        PurePosixPath(*member.parts[: depth + 1])
        for member in members
        for depth, part in enumerate(member.parts[:-1])
        if part.lower().endswith(GEODATABASE) and "__MACOSX" not in member.parts
    }
    top = any(len(m.parts) == 1 and m.suffix.lower() == ".gdbtable" for m in members)
    return folders | ({PurePosixPath(".")} if top else set())


_SHAPEFILE_PARTS = {".shx": "the index of its shapes", ".dbf": "its attributes"}
"""The files a Shapefile cannot be read without (GDAL would read one without its .dbf as
geometries alone, losing every attribute unseen)."""


def _check_parts(shp: str, beside: Callable[[str], bool], where: str) -> None:
    """Refuses a Shapefile whose .shx or .dbf is not beside its .shp (``beside(name)``), of
    its name with the suffix in lower or upper case (where GDAL looks)."""
    stem = PurePosixPath(shp).stem
    missing = [
        suffix
        for suffix in _SHAPEFILE_PARTS
        if not beside(stem + suffix) and not beside(stem + suffix.upper())
    ]
    if missing:
        lacking = " and ".join(f"{suffix} ({_SHAPEFILE_PARTS[suffix]})" for suffix in missing)
        files = " and ".join(stem + suffix for suffix in missing)
        raise ConfigurationError(
            f"Shapefile {shp} in {where} lacks its {lacking}: a Shapefile is several files "
            f"of one name side by side. Put {files} beside it (all the files of the "
            "download), or load another format"
        )


def _inside(path: Path, member: PurePosixPath) -> str | Path:
    """GDAL's path to ``member`` of the archive (a zip itself for its top level)."""
    zipped = path.suffix.lower() == _ZIP
    if str(member) == ".":
        return path if zipped else f"/vsitar/{path}"
    return f"/vsi{'zip' if zipped else 'tar'}/{path}/{member}"


def archive_member(name: str, path: Path) -> tuple[str, str] | None:
    """The archive kind (zip, tar) and member a GDAL path into archive ``path`` names."""
    for kind in ("zip", "tar"):
        prefix = f"/vsi{kind}/{path}/"
        if name.startswith(prefix):
            return kind, name[len(prefix) :]
    return None
