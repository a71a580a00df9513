"""The source as chunks ready for COPY: batches read, checked and encoded on threads of
their own, then sealed into chunks of the sizer's size.

Reading (mostly Python) and validation (mostly GEOS, off the GIL) overlap on threads
joined by one-slot handoffs (:mod:`.stages`), so only a few batches are in flight.
With on_invalid="raise" the rows before the first bad geometry still make a chunk, and
so do the rows read before a source's own error: then the error is raised.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from geosession.errors import DatabaseError
from geosession.ingest import ledger
from geosession.ingest.batches import Batch
from geosession.ingest.checking import check_batch
from geosession.ingest.chunking import ChunkSizer, PendingRows
from geosession.ingest.copy import Chunk
from geosession.ingest.defaults import ColumnDefaults, with_defaults
from geosession.ingest.lacking import Lacking
from geosession.ingest.options import IngestOptions
from geosession.ingest.planning import Planner
from geosession.ingest.report import IngestReport
from geosession.ingest.sources import iter_batches
from geosession.ingest.stages import map_in_order, read_ahead
from geosession.ingest.target import Target
from geosession.ingest.validate import Reject, invalid_geometry_error
from geosession.ingest.write_plan import WritePlan

_BATCH = 5_000
"""Rows per source batch at most. About six are in flight (read ahead, validated two at
a time); 10,000 measured no faster and grew peak RSS by up to 40 MB more."""
_FIRST_BATCH = 500
"""Rows per source batch until their size is known: 500 rows of large polygons (tens of
kB each) still fit in memory several times over."""
_VALIDATORS = 2
"""Threads validating batches at once: GEOS releases the GIL, so two keep two cores busy."""

Validated = tuple[
    WritePlan | None, list[list[Any]], list[int], list[Reject], list[Lacking] | None, bool
]
"""A validated batch: the plan it was checked for (None for a quiet source's flush), its kept rows
column-wise, their source row numbers, its rejects, the columns each kept row lacks
(:mod:`.lacking`), and whether it was cut by the flush interval."""


@dataclass
class ChunkReader:
    """Reads one ingest's source into chunks; counts what it read in the report."""

    source: Any
    """The opened source (:func:`.sources.opened`)."""
    target: Target
    options: IngestOptions
    planner: Planner
    sizer: ChunkSizer
    committed: ledger.CommittedRows
    """Rows earlier runs of the ingest id committed: skipped before any work."""
    report: IngestReport
    report_lock: threading.Lock
    """Held while the report is updated: batches are checked on several threads."""
    defaults: ColumnDefaults
    attributes: dict[str, str]
    """Mapped attribute names dict rows may use, by column."""
    started_empty: bool
    ingest_id: str
    stopped: Callable[[], bool]
    """Whether the ingest is stopping (a failure, Ctrl-C, cancel())."""
    stop_source: Callable[[], None] | None = None
    """Ends a source waiting for its next row (an async one) when reading stops early."""
    typed_from: int = 0
    """The first rows of a source read once that create=True typed the table from."""

    def chunks(self) -> Generator[Chunk]:
        """The chunks in source order; closing the generator stops the threads."""
        finished = threading.Event()

        def done() -> bool:
            return finished.is_set() or self.stopped()

        geometry = self.target.geometry_columns
        spec = geometry[0].geometry if len(geometry) == 1 else None
        source = iter_batches(
            self.source,
            columns=[c.name for c in self.target.columns if not c.generated],
            computed={c.name: c.generated_as for c in self.target.columns if c.generated},
            geometry_column=geometry[0].name if len(geometry) == 1 else None,
            batch_size=lambda: batch_rows(self.sizer),
            flush_interval=self.options.flush_interval,
            stopped=done,
            wkt_column=self.options.wkt_column,
            layer=self.options.layer,
            encoding=self.options.encoding,
            where=self.options.where,
            bbox=self.options.bbox,
            rename=self.options.rename,
            xy_columns=self.options.xy_columns,
            left_out=self.report.fields_left_out if self.options.extra_fields == "ignore" else None,
            found=self.report.geometry_fields_found,
            attributes=self.attributes,
            feature_ids=self.started_empty,
            defaulted=frozenset(self.defaults.python) | self.planner.may_lack,
            geometry_z=spec is not None and spec.has_z,
            geometry_m=spec is not None and spec.measured,
            typed_from=self.typed_from,
        )
        batches = with_defaults(self._source_errors_named(source), self.defaults)
        # reading, validating and COPY-encoding each on a thread: the GEOS work of one
        # overlaps the Python work of the others
        read = read_ahead(batches, "read", done)
        validated = map_in_order(
            self._encode, read, "validate", _VALIDATORS, urgent=lambda batch: batch.flush
        )
        try:
            yield from self._sealed(validated)
        finally:
            finished.set()
            validated.close()
            if self.stop_source is not None:
                self.stop_source()
            read.close()

    def _source_errors_named(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """The source's batches; a database error raised by the source (db.stream_arrow's
        stream, a query's rows) says it is the source's, which its text would not tell
        from the target's, and how to go on."""
        try:
            yield from batches
        except DatabaseError as error:
            error.reword(
                f"{error.message}. Raised by the source the ingest reads, not its target: "
                f"ingest {self.ingest_id}'s committed chunks stay, and rerunning it with the "
                "same ingest_id resumes after them (a query's rows in the same order: ORDER BY)"
            )
            raise

    def _sealed(self, validated: Iterator[Validated]) -> Iterator[Chunk]:
        """Chunks of the sizer's size from validated batches (sealed by PendingRows.take);
        a batch cut by the flush interval sends what is pending at once, and so does a
        failing source: the rows read before its error still load, then it is raised."""
        pending: PendingRows | None = None
        try:
            for batch in validated:
                (plan, columns, numbers, rejects, lacking, flush), first_bad = self._cut(batch)
                pending, left = _pending_for(plan, pending)
                yield from left
                if pending is None:  # a quiet source's flush before any row
                    continue
                if columns:  # none in a quiet source's flush
                    pending.add(columns, numbers, rejects, lacking)
                while len(pending) >= self.sizer.size or ((first_bad or flush) and len(pending)):
                    chunk = pending.take(min(self.sizer.size, len(pending)))
                    self.sizer.observe_bytes(len(chunk), chunk.nbytes)
                    yield chunk
                if first_bad is not None:
                    raise invalid_geometry_error(first_bad)
        except Exception:
            if pending is not None and len(pending) and not self.stopped():
                yield pending.take(len(pending))
            raise
        if pending is not None and len(pending):
            yield pending.take(len(pending))

    def _cut(self, batch: Validated) -> tuple[Validated, Reject | None]:
        """With on_invalid="raise", the rows of ``batch`` before its first bad geometry,
        and that geometry's reject (the load stops there)."""
        plan, columns, numbers, rejects, lacking, flush = batch
        first_bad = self._first_invalid(rejects)
        if first_bad is None:
            return batch, None
        cut = bisect.bisect_left(numbers, first_bad.row)
        kept_rejects = [r for r in rejects if r.row < first_bad.row]  # values only
        kept_lacking = None if lacking is None else lacking[:cut]
        columns = [c[:cut] for c in columns]
        return (plan, columns, numbers[:cut], kept_rejects, kept_lacking, flush), first_bad

    def _first_invalid(self, rejects: list[Reject]) -> Reject | None:
        """With on_invalid="raise", the first bad geometry (values that cannot be sent, and
        NULLs in other NOT NULL columns, are set aside whatever on_invalid says, as when
        the server refuses them)."""
        if self.options.on_invalid != "raise":
            return None
        geometries = {column.name for column in self.target.geometry_columns}
        return next((r for r in rejects if r.kind != "value" and r.column in geometries), None)

    def _encode(self, batch: Batch) -> Validated:
        """Validated, encoded rows of one source batch (rows committed earlier are skipped)."""
        if not len(batch):  # a quiet source's flush: nothing to check
            return None, [], [], [], None, batch.flush
        plan = self.planner.plan_for(batch)
        checked = check_batch(
            batch,
            plan,
            self.options,
            self.committed,
            self.sizer,
        )
        with self.report_lock:  # batches are validated on several threads
            self.report.rows_read += checked.fresh
            self.report.repaired.extend(checked.repaired)
            self.report.reprojected += checked.reprojected
            self.report.srid_assumed += checked.srid_assumed
            self.report.beyond_latitudes += checked.beyond_latitudes
            self.report.z_dropped += checked.z_dropped
        return plan, checked.columns, checked.numbers, checked.rejects, checked.lacking, batch.flush


def batch_rows(sizer: ChunkSizer) -> int:
    """Rows per source batch: few until the rows' size is known, then at most what
    fits an automatic chunk, so the batches in flight hold a few chunks' worth."""
    if sizer.adaptive and not sizer.measured:
        return min(_FIRST_BATCH, sizer.size)
    return min(_BATCH, sizer.size, sizer.row_limit)


def _pending_for(
    plan: WritePlan | None, pending: PendingRows | None
) -> tuple[PendingRows | None, list[Chunk]]:
    """The rows pending for ``plan`` (None: a quiet source's flush, for any): rows pending
    for another, narrower plan leave as a chunk of their own."""
    if plan is None or (pending is not None and pending.plan is plan):
        return pending, []
    left = [pending.take(len(pending))] if pending is not None and len(pending) else []
    return PendingRows(plan), left
