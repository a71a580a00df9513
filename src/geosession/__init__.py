"""geosession: safe, fast PostgreSQL/PostGIS sessions for SQLAlchemy 2 and GeoAlchemy2."""

from geosession.database import SpatialDatabase
from geosession.diagnose.explain import PlanReport
from geosession.errors import (
    AccessDenied,
    CommitOutcomeUnknown,
    ConfigurationError,
    ConnectionFailed,
    DatabaseError,
    DeadlockDetected,
    GeoSessionError,
    IdleInTransactionTimeout,
    IntegrityViolation,
    InvalidGeometry,
    LockTimeout,
    PoolExhausted,
    PostGISNotInstalled,
    QueryTimeout,
    SerializationConflict,
    SRIDMismatch,
)
from geosession.observe.pool import PoolStats
from geosession.settings import DatabaseSettings

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "CommitOutcomeUnknown",
    "ConfigurationError",
    "ConnectionFailed",
    "DatabaseError",
    "DatabaseSettings",
    "DeadlockDetected",
    "GeoSessionError",
    "IdleInTransactionTimeout",
    "IntegrityViolation",
    "InvalidGeometry",
    "LockTimeout",
    "PlanReport",
    "PoolExhausted",
    "PoolStats",
    "PostGISNotInstalled",
    "QueryTimeout",
    "SRIDMismatch",
    "SerializationConflict",
    "SpatialDatabase",
    "__version__",
]
