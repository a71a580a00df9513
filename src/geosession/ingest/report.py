"""IngestReport: what an ingest read, loaded and set aside, readable by people and code."""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table

from geosession.ingest.rejects import Rejects
from geosession.ingest.validate import Reject

_MIN_WIDTH = 72
"""Characters a report's table is wide at least."""


@dataclass
class IngestReport:
    """Counts, rejects and timings of one ingest (also of a partial one, on error)."""

    ingest_id: str
    target: str
    rows_read: int = 0
    """Source rows read in this run (rows already committed by an earlier run excluded)."""
    inserted: int = 0
    rejected: Rejects = field(default_factory=Rejects)
    """Rows not loaded, each with its source row number, column and reason (a sequence,
    in the order their chunks ended, whose memory stays bounded: see :mod:`.rejects`)."""
    repaired: Rejects = field(default_factory=Rejects)
    """Rows loaded after shapely.make_valid (on_invalid='repair')."""
    reprojected: int = 0
    """Rows read with a geometry transformed into its column's SRID (reproject=True)."""
    srid_assumed: int = 0
    """Rows sent with a geometry that took its column's SRID because neither it, nor the
    source's CRS, nor ``srid=`` said one (as PostGIS does without a word)."""
    beyond_latitudes: int = 0
    """Rows loaded into a geometry column of longitudes and latitudes (EPSG:4326 ...) with
    a latitude beyond ±90: projected coordinates given that SRID, or longitude and latitude
    swapped. PostGIS stores them as they are, and so does the ingest; the count says so."""
    z_dropped: int = 0
    """Rows with a geometry whose every Z was 0 (KML's default altitude), made 2D for a 2D
    column: nothing is lost, and the count says it happened."""
    already_committed: int = 0
    """Rows skipped because an earlier run with this ingest_id committed them."""
    reloaded: int = 0
    """Rows an earlier run with this ingest_id inserted into the table, which was empty
    when this run began (they were deleted since): loaded again rather than skipped."""
    conflicts: int = 0
    """Rows not inserted because their key existed (on_conflict='ignore'), and those a
    trigger discarded (the server's count does not tell them apart)."""
    superseded: int = 0
    """Rows not written because a later row of their chunk has the same key
    (on_conflict='update': the last one is written, as if the rows were applied in turn),
    rows that give nothing but a key already there (nothing to update: the row stays as
    it was), and those a trigger discarded (the server's count does not tell them apart)."""
    discarded: int = 0
    """Rows the server took but did not store in the table: a BEFORE INSERT trigger
    returned NULL for them (trigger-based partitioning does so after writing them into
    another table)."""
    chunks: int = 0
    workers: int = 1
    """COPY connections used (``workers="auto"``: 2 when indexes are maintained, else 1)."""
    retries: int = 0
    chunk_size_min: int = 0
    """Source rows (loaded or rejected) in the smallest committed chunk; 0 before any."""
    chunk_size_max: int = 0
    created: bool = False
    """Whether this run created the table (``create=True``)."""
    made_without_srid: list[str] = field(default_factory=list)
    """The geometry columns this run created without an SRID: the source stated none
    (WKT, a CSV without a ``.prj``) and ``srid=`` did not name one. Their coordinates
    have no CRS in PostGIS until ``UpdateGeometrySRID`` gives them one."""
    geometry_fields_found: set[str] = field(default_factory=set)
    """The source's field whose values were found to be geometries, where no name said
    so: the geometry column create=True made of it, or the field that loaded into the
    table's geometry column."""
    fields_left_out: set[str] = field(default_factory=set)
    """The source's fields that are no column of the table, not loaded
    (``extra_fields='ignore'``)."""
    rejects_kept_in: str = ""
    """The table the rejects went to (``<table>_rejected``, on_invalid="quarantine"); ""
    where they were kept in the report only (on_invalid="raise" or "skip", a dry run)."""
    deferred_indexes: list[str] = field(default_factory=list)
    """Indexes dropped for the load and built after it: this run's, and those an earlier
    run of the table that was killed left to rebuild."""
    rebuild_seconds: float = 0.0
    """Of ``duration``: rebuilding indexes (deferred by this run or an earlier one) and
    the ANALYZE after a load into an empty table."""
    duration: float = 0.0
    completed: bool = False
    dry_run: bool = False
    """Every chunk was rolled back: the counts say what the load would do."""
    error: str | None = None
    """Why the load stopped before its end (the message of the error it raised), on the
    report the error carries as ``ingest_report``; None for a load that ran to its end."""

    def count_chunk_size(self, rows: int) -> None:
        """Widens the chunk size range by a committed chunk of ``rows`` source rows."""
        self.chunk_size_min = min(self.chunk_size_min or rows, rows)
        self.chunk_size_max = max(self.chunk_size_max, rows)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.duration if self.duration > 0 else 0.0

    @property
    def all_rejected(self) -> bool:
        """Whether rows were read and every one was rejected: data loaded into the wrong
        table, or in the wrong CRS, more likely than a file of nothing but bad rows."""
        return bool(self.rows_read) and not self.inserted and len(self.rejected) >= self.rows_read

    @property
    def all_beyond_latitudes(self) -> bool:
        """Whether rows were loaded and every one has a latitude beyond ±90 in a column of
        degrees: projected coordinates given a geographic SRID, or axes swapped."""
        return bool(self.inserted) and self.beyond_latitudes >= self.inserted

    def as_dict(self) -> dict[str, Any]:
        """Every field and rows_per_second, ready for JSON (a log line, an API's answer):
        rejects and repairs as dicts of row, column, kind, reason and value."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        values["rejected"] = [asdict(reject) for reject in self.rejected]
        values["repaired"] = [asdict(reject) for reject in self.repaired]
        values["deferred_indexes"] = list(self.deferred_indexes)
        values["fields_left_out"] = sorted(self.fields_left_out)
        values["geometry_fields_found"] = sorted(self.geometry_fields_found)
        values["made_without_srid"] = list(self.made_without_srid)
        values["rows_per_second"] = self.rows_per_second
        return values

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        state = "complete" if self.completed else "INCOMPLETE"
        state += " (dry run: every chunk rolled back, nothing kept)" if self.dry_run else ""
        title = f"Ingest {self.ingest_id} into {self.target}: {state}"
        table = Table(  # as wide as its title, where the console allows: on one line
            min_width=min(max(_MIN_WIDTH, len(title)), options.max_width),
            title=title,
            show_header=False,
            title_justify="left",
        )
        table.add_column(style="bold")
        table.add_column(justify="right")
        for name, value in self._rows():
            table.add_row(name, value)
        yield table
        if self.rejected:
            yield _rejects_table(self.rejected)
        if len(self.rejected) > _LISTED:
            yield _reject_kinds_table(self.rejected)

    def _rows(self) -> list[tuple[str, str]]:
        rows = [("table", "created by this run")] if self.created else []
        if self.made_without_srid:
            made = ", ".join(self.made_without_srid)
            rows.append(("made without an SRID (none stated: give --srid)", made))
        if self.geometry_fields_found:
            found = ", ".join(sorted(self.geometry_fields_found))
            rows.append(("geometry field, found by its values", found))
        rows += [
            ("rows read", f"{self.rows_read:,}"),
            ("would be inserted" if self.dry_run else "inserted", f"{self.inserted:,}"),
            ("rejected", self._rejected()),
        ]
        rows += [
            (n, f"{v:,}")
            for n, v in (
                ("repaired", len(self.repaired)),
                ("reprojected into the column's SRID", self.reprojected),
                ("without an SRID: took the column's", self.srid_assumed),
                (
                    "latitude beyond ±90 in degrees (projected? axes swapped?)",
                    self.beyond_latitudes,
                ),
                ("Z of 0 dropped for the 2D column", self.z_dropped),
                ("already committed (resumed)", self.already_committed),
                ("loaded again (deleted since the last run)", self.reloaded),
                ("key conflicts ignored", self.conflicts),
                ("superseded by a later row of its key, or giving only the key", self.superseded),
                ("not stored: a BEFORE INSERT trigger returned NULL", self.discarded),
            )
            if v
        ]
        rows += [
            ("chunks", self._chunks_over_connections()),
            ("retries", f"{self.retries:,}"),
            ("chunk size", self._chunk_sizes()),
            ("duration", f"{self.duration:.2f} s"),
            ("rows/s", f"{self.rows_per_second:,.0f}"),
        ]
        if self.fields_left_out:
            rows.append(
                (
                    "fields not loaded (no column takes them)",
                    ", ".join(sorted(self.fields_left_out)),
                )
            )
        if self.deferred_indexes:
            rows.append(("indexes built after the load", ", ".join(self.deferred_indexes)))
        if self.rebuild_seconds:
            rows.append(("rebuilding indexes, ANALYZE", f"{self.rebuild_seconds:.2f} s"))
        return rows

    def _rejected(self) -> str:
        """How many rows were rejected, and where they went."""
        count = f"{len(self.rejected):,}"
        if not self.rejected:
            return count
        if self.rejects_kept_in and not self.dry_run:
            return f"{count}, kept in {self.rejects_kept_in}"
        return f"{count}, listed here only"

    def _chunks_over_connections(self) -> str:
        parallel = min(self.workers, self.chunks)  # a writer with no chunk opened nothing
        return (
            f"{self.chunks:,} over {parallel} connections" if parallel > 1 else f"{self.chunks:,}"
        )

    def _chunk_sizes(self) -> str:
        if not self.chunks:
            return "–"  # nothing committed in this run (e.g. all of it resumed)
        return f"{self.chunk_size_min:,} – {self.chunk_size_max:,} rows"

    def __str__(self) -> str:
        console = Console(width=100, record=True, color_system=None)
        with console.capture() as capture:
            console.print(self)
        return capture.get()


_LISTED = 20
"""Rejects a printed report lists; past them, it counts them by column and kind."""


def _rejects_table(rejects: Rejects, limit: int = _LISTED) -> Table:
    table = Table(
        title=f"Rejected rows (first {min(limit, len(rejects))} of {len(rejects):,})",
        title_justify="left",
    )
    for name in ("row", "column", "kind", "reason"):
        table.add_column(name, overflow="fold")
    for reject in heapq.nsmallest(limit, rejects, key=lambda r: r.row):  # chunks end unordered
        table.add_row(str(reject.row), reject.column or "", reject.kind, reject.reason)
    return table


def _reject_kinds_table(rejects: Rejects) -> Table:
    """The rejects counted by column and kind, each kind with its first row's reason: what
    went wrong with a load that set aside thousands, told in a few lines."""
    kinds: dict[tuple[str, str], tuple[int, Reject]] = {}
    for reject in rejects:
        count, first = kinds.get((reject.column or "", reject.kind), (0, reject))
        kinds[reject.column or "", reject.kind] = (count + 1, min(first, reject, key=_row))
    table = Table(title="Rejected rows by kind", title_justify="left")
    for name in ("column", "kind", "rows", "first row", "its reason"):
        table.add_column(name, overflow="fold", justify="right" if name == "rows" else "left")
    for (column, kind), (count, first) in sorted(kinds.items(), key=lambda k: -k[1][0]):
        table.add_row(column, kind, f"{count:,}", str(first.row), first.reason)
    return table


def _row(reject: Reject) -> int:
    return reject.row
