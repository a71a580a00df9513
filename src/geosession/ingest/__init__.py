"""Bulk spatial ingest at COPY speed that never loses or duplicates a row."""

from geosession.ingest.report import IngestReport
from geosession.ingest.validate import Reject

__all__ = ["IngestReport", "Reject"]
