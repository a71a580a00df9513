"""The options of one ingest: what ``db.ingest`` and the CLI accept, checked up front."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypedDict

from geosession.errors import ConfigurationError
from geosession.ingest.batches import repeated
from geosession.ingest.encodings import check_encoding
from geosession.ingest.file_read import FileRead
from geosession.ingest.validate import OnInvalid
from geosession.ingest.write_plan import OnConflict
from geosession.settings import local_settings

DeferIndexes = Literal["auto"] | bool
_MAX_SRID = 999_999  # PostGIS's SRID_MAXIMUM


@dataclass(frozen=True)
class IngestOptions:
    """How one ingest runs; ``db.ingest`` documents each option."""

    chunk_size: int | str = "auto"
    on_invalid: OnInvalid = "quarantine"
    on_conflict: OnConflict = "error"
    ingest_id: str | None = None
    srid: int | None = None
    workers: int | Literal["auto"] = "auto"
    defer_indexes: DeferIndexes = "auto"
    max_retries: int = 10
    progress: bool = False
    flush_interval: float | None = None
    wkt_column: str | None = None
    layer: str | None = None
    encoding: str | None = None
    where: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    rename: Mapping[str, str] | None = None
    xy_columns: tuple[str, ...] | None = None
    extra_fields: str = "error"
    create: bool = False
    reproject: bool | int = False
    """True: into each column's SRID; an SRID: into that one, which create=True gives the
    geometry columns it makes (an existing table's must have it)."""
    dry_run: bool = False
    """Every chunk written and rolled back: the report of a load, nothing kept."""
    settings: Mapping[str, str] | None = None
    """Settings for the ingest's connections while it holds them (checked by
    :func:`ingest_settings`): a row-level security key, a role."""

    @property
    def reprojecting(self) -> bool:
        return self.reproject is not False

    @property
    def reproject_srid(self) -> int | None:
        """The SRID ``reproject`` names, if it names one."""
        reproject = self.reproject
        return reproject if type(reproject) is int else None

    @property
    def filtered(self) -> bool:
        """Whether only some of a file's features load (where=, bbox=)."""
        return self.where is not None or self.bbox is not None

    @property
    def file_read(self) -> FileRead:
        """The options that apply to some kinds of source only."""
        return FileRead(
            self.wkt_column,
            self.layer,
            self.encoding,
            self.where,
            self.bbox,
            rename=self.rename,
            xy_columns=self.xy_columns,
        )

    def check(self) -> None:
        """Refuses option values no ingest can run with, naming the valid ones."""
        choices = {
            "on_invalid": ("quarantine", "raise", "repair", "skip"),
            "on_conflict": ("error", "ignore", "update"),
            "defer_indexes": ("auto", True, False),
            "extra_fields": ("error", "ignore"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigurationError(
                    f"{name}={getattr(self, name)!r} is not valid: use one of {allowed}"
                )
        interval = self.flush_interval
        if interval is not None and (
            isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0
        ):
            raise ConfigurationError(
                f"flush_interval={interval!r} is not valid: use None (batches cut by size only) "
                "or the seconds a row may wait for its batch to fill, e.g. 5.0"
            )
        check_encoding(self.encoding)
        self._check_rename()
        xy = self.xy_columns
        if xy is not None and not (
            isinstance(xy, tuple | list)
            and len(xy) in (2, 3)
            and all(isinstance(name, str) and name for name in xy)
            and len(set(xy)) == len(xy)
        ):
            raise ConfigurationError(
                f"xy_columns={xy!r} is not valid: give a CSV's two coordinate columns, x "
                "(longitude) first, and its heights third for a column with Z: "
                "('lon_deg', 'lat_deg') or ('lon_deg', 'lat_deg', 'height_m')"
            )
        srid = self.srid
        if srid is not None and (type(srid) is not int or not 0 <= srid <= _MAX_SRID):
            raise ConfigurationError(
                f"srid={srid!r} is not valid: use the SRID (an EPSG code, such as 4326) of "
                "the source's coordinates, a whole number up to 999999 (0: none, for a "
                "column create=True makes without one)"
            )
        reproject = self.reproject
        if type(reproject) is not bool and (
            type(reproject) is not int or not 0 < reproject <= _MAX_SRID
        ):
            raise ConfigurationError(
                f"reproject={reproject!r} is not valid: use True (into each geometry column's "
                "SRID) or the SRID to transform into, such as 4326, which create=True then "
                "gives the new table's geometry columns"
            )
        self._check_flags()
        ingest_id = self.ingest_id
        if ingest_id is not None and (not isinstance(ingest_id, str) or not ingest_id.strip()):
            raise ConfigurationError(  # '' was taken as none given: a new id, no resume
                f"ingest_id={ingest_id!r} is not valid: name the load (text, such as "
                "'parcels-2024-06'), or leave it out (None) for a new id each run"
            )
        workers = self.workers
        if workers != "auto" and (type(workers) is not int or not 1 <= workers <= 32):
            raise ConfigurationError(
                f"workers={workers!r} is not valid: use 'auto' or 1 to 32 COPY connections"
            )

    def _check_flags(self) -> None:
        """dry_run and create are booleans (dry_run="false" from a config file was a dry
        run), and not both."""
        for name in ("dry_run", "create"):
            if type(getattr(self, name)) is not bool:
                raise ConfigurationError(
                    f"{name}={getattr(self, name)!r} is not valid: use True or False"
                )
        if self.dry_run and self.create:
            raise ConfigurationError(
                "dry_run=True tries a load into an existing table, and create=True would make "
                "one (committed): create the table first, or leave dry_run out"
            )

    def _check_rename(self) -> None:
        rename = self.rename
        if rename is None:
            return
        if not isinstance(rename, Mapping) or not all(
            isinstance(name, str) and isinstance(column, str) and column
            for name, column in rename.items()
        ):
            raise ConfigurationError(
                f"rename={rename!r} is not valid: use a dict of a file's field names to the "
                "target's column names, e.g. {'classifica': 'classification_code'}"
            )
        twice = repeated(list(rename.values()))
        if twice:
            raise ConfigurationError(
                f"rename={dict(rename)!r} gives {', '.join(twice)} to several fields: one "
                "field a column"
            )


def ingest_settings(
    settings: Mapping[str, object] | None, *, pgbouncer: bool
) -> dict[str, str] | None:
    """``settings=`` of an ingest, checked as a transaction's, less what it cannot carry:
    search_path (the ingest's own tables, its ledger above all, are found on it; name
    the target's schema instead) and, behind PgBouncer, any (its connections are
    PgBouncer's, whose server sessions other clients share)."""
    checked = local_settings(settings)
    if not checked:
        return None
    if "search_path" in (name.lower() for name in checked):
        raise ConfigurationError(
            "settings={'search_path': ...} is not taken by an ingest: its ledger and "
            "rejects tables are found on the search_path too. Name the target's schema "
            "instead: db.ingest('tenant_7.parcels', ...)"
        )
    if pgbouncer:
        raise ConfigurationError(
            "settings= is not taken by an ingest behind PgBouncer (pgbouncer=True): the "
            "settings would reach server sessions other clients share. Ingest through a "
            "SpatialDatabase connected to PostgreSQL itself"
        )
    return checked


class IngestArguments(TypedDict, total=False):
    """The keyword options of ``db.ingest`` and ``db.async_ingest`` (checked when used)."""

    chunk_size: int | str
    on_invalid: str
    on_conflict: str
    ingest_id: str | None
    srid: int | None
    workers: int | str
    defer_indexes: str | bool
    progress: bool
    flush_interval: float | None
    wkt_column: str | None
    layer: str | None
    encoding: str | None
    where: str | None
    bbox: tuple[float, float, float, float] | None
    rename: Mapping[str, str] | None
    xy_columns: tuple[str, ...] | None
    extra_fields: str
    create: bool
    reproject: bool | int
    dry_run: bool
    settings: Mapping[str, object] | None
