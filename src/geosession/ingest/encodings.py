"""The text encoding of a source file: a Shapefile's DBF or a CSV file, and the error for
one that is not in it.

GeoPackage, GeoJSON, FlatGeobuf and GeoParquet hold UTF-8 by their specifications. A
Shapefile names its encoding in a .cpg file or its DBF's language byte, and GDAL then
converts its text to UTF-8; without either, GDAL hands the text over as stored (pyogrio
reports ISO-8859-1), and files written that way are as often UTF-8 as ISO-8859-1 or a
Windows code page. So a value is read as UTF-8 where it is valid UTF-8 (Latin-1 text
almost never is) and in the reported encoding otherwise; field names that are not UTF-8
have the layer opened again in that encoding, which GDAL then converts. ``encoding=``
overrides all of it.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geosession.errors import ConfigurationError
from geosession.ingest.archives import GdalSource
from geosession.ingest.compressed import data_of, inner_suffix
from geosession.read.layer_types import measured_types

CHOSEN_SUFFIXES = (".shp", ".zip", ".csv")
"""Files for which ``encoding=`` may name one (a zip archive may hold Shapefiles)."""


@dataclass(frozen=True)
class LayerText:
    """How to read a layer's text: the encoding GDAL is told (it converts to UTF-8), and
    the one that decodes values that are not UTF-8 when it is told none."""

    open_with: str | None = None
    fallback: str | None = None


def check_encoding(encoding: str | None, path: Path | None = None) -> None:
    """Refuses an encoding Python does not know, or one given for a format whose text is
    UTF-8 by its specification."""
    if encoding is None:
        return
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigurationError(
            f"encoding={encoding!r} is not a known text encoding: use a name such as "
            "'utf-8', 'latin1' (ISO-8859-1), 'cp1252' or 'cp437'"
        ) from None
    if path is not None and inner_suffix(path) not in CHOSEN_SUFFIXES and not is_utf8(encoding):
        raise _utf8_only(encoding, f"the text of {path}")


def _utf8_only(encoding: str, what: str) -> ConfigurationError:
    return ConfigurationError(
        f"encoding={encoding!r} applies to Shapefiles and CSV files; {what} is UTF-8 by its "
        "format's specification: leave it out"
    )


def is_utf8(encoding: Any) -> bool:
    """Whether an encoding name (GDAL's or Python's spelling) means UTF-8."""
    return encoding is None or codecs.lookup(str(encoding)).name == "utf-8"


def layer_text(
    pyogrio: Any, source: GdalSource, layer: str | None, encoding: str | None
) -> LayerText:
    """How to read the text of ``source``'s ``layer``: as ``encoding`` when given; else see
    the module's docstring."""
    if encoding is not None and not source.shapefiles and not is_utf8(encoding):
        raise _utf8_only(encoding, f"{source.path} holds none, and its text")
    if encoding is not None:
        return LayerText(open_with=encoding)
    if not source.shapefiles:
        return LayerText()
    with (
        measured_types(),  # pyogrio's warning that it names no M type: the M values stay
        pyogrio.open_arrow(source.name, layer=layer, use_pyarrow=True) as (meta, reader),
    ):
        reported = meta["encoding"]
        if _known(reported) is None or is_utf8(reported):
            return LayerText()
        try:
            list(reader.schema.names)
        except UnicodeDecodeError:
            return LayerText(open_with=str(reported))
    return LayerText(fallback=str(reported))


def _known(encoding: Any) -> str | None:
    try:
        return codecs.lookup(str(encoding)).name if encoding else None
    except LookupError:
        return None


def column_values(column: Any, fallback: str | None) -> list[Any]:
    """An Arrow column as Python values (WKB as bytes; maps as dicts, so a jsonb column
    gets an object, not a list of pairs), text that is not UTF-8 decoded as ``fallback``."""
    try:
        return list(column.to_pylist(maps_as_pydicts="lossy"))
    except UnicodeDecodeError:
        if fallback is None:
            raise
    except OverflowError:
        return _with_text_beyond_python(column)
    import pyarrow

    return [
        None if raw is None else _decoded(raw, fallback)
        for raw in column.cast(pyarrow.binary()).to_pylist()
    ]


def _with_text_beyond_python(column: Any) -> list[Any]:
    """A date or time column holding a year after 9999 (a GeoPackage's 23:59:60 of the
    last day): those values as their text, which the ingest sets aside naming them."""
    import pyarrow

    values = []
    for scalar, text in zip(column, column.cast(pyarrow.string()).to_pylist(), strict=True):
        try:
            values.append(scalar.as_py())
        except OverflowError:
            values.append(text)
    return values


def _decoded(raw: bytes, fallback: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode(fallback, errors="replace")


def text_codec(encoding: str | None, path: Path) -> str:
    """UTF-8 skipping a byte order mark (spreadsheets write one), unless told otherwise;
    UTF-16 when the file begins with its byte order mark (a spreadsheet's "Unicode text")."""
    if encoding is None:
        with data_of(path) as raw:
            if raw.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                return "utf-16"
    return "utf-8-sig" if encoding is None or is_utf8(encoding) else encoding


@contextlib.contextmanager
def undecodable_refused(path: Path, encoding: str | None) -> Iterator[None]:
    """A file that is not in its encoding is refused naming the line, instead of a
    decoding traceback."""
    try:
        yield
    except UnicodeDecodeError:
        codec = text_codec(encoding, path)
        line, byte = _first_undecodable(path, codec)
        if encoding is None:
            advice = (
                "Name the encoding it is in: encoding='latin1' (--encoding latin1), 'cp1252' ..."
            )
        else:
            advice = "Name the encoding it is in with encoding= (--encoding)"
        raise ConfigurationError(
            f"{path} is not {encoding or 'UTF-8'} text: byte 0x{byte:02x} on line {line} "
            f"cannot be decoded. {advice}"
        ) from None


def _first_undecodable(path: Path, codec: str) -> tuple[int, int]:
    """The line and byte where decoding first fails (in UTF-8 and the usual code pages a
    newline never splits a character, so lines decode on their own)."""
    with data_of(path) as raw:
        for number, line in enumerate(raw, start=1):
            try:
                line.decode(codec)
            except UnicodeDecodeError as error:
                return number, line[error.start]
    return 0, 0
