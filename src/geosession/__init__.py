"""geosession: safe, fast PostgreSQL/PostGIS sessions for SQLAlchemy 2 and GeoAlchemy2."""

from geosession.database import SpatialDatabase
from geosession.diagnose.activity import LockWait, SessionActivity
from geosession.diagnose.doctor import DoctorReport
from geosession.diagnose.explain import PlanReport
from geosession.errors import (
    AccessDenied,
    CommitOutcomeUnknown,
    ConfigurationError,
    ConnectionFailed,
    DatabaseError,
    DeadlockDetected,
    ExportFailed,
    GeoSessionError,
    IdleInTransactionTimeout,
    IntegrityViolation,
    InvalidGeometry,
    LockTimeout,
    PoolExhausted,
    PostGISNotInstalled,
    QueryTimeout,
    SchemaChanged,
    SerializationConflict,
    SRIDMismatch,
)
from geosession.ingest.report import IngestReport
from geosession.observe.leaks import Holder
from geosession.observe.pool import PoolStats
from geosession.read import AsyncGeometryStream, ExportResult, GeometryStream
from geosession.retry import RetryPolicy
from geosession.settings import DatabaseSettings

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AsyncGeometryStream",
    "CommitOutcomeUnknown",
    "ConfigurationError",
    "ConnectionFailed",
    "DatabaseError",
    "DatabaseSettings",
    "DeadlockDetected",
    "DoctorReport",
    "ExportFailed",
    "ExportResult",
    "GeoSessionError",
    "GeometryStream",
    "Holder",
    "IdleInTransactionTimeout",
    "IngestReport",
    "IntegrityViolation",
    "InvalidGeometry",
    "LockTimeout",
    "LockWait",
    "PlanReport",
    "PoolExhausted",
    "PoolStats",
    "PostGISNotInstalled",
    "QueryTimeout",
    "RetryPolicy",
    "SRIDMismatch",
    "SchemaChanged",
    "SerializationConflict",
    "SessionActivity",
    "SpatialDatabase",
    "__version__",
]
