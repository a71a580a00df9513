"""Pooled psycopg connections for the ingest, and retrying a step when one is lost."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine

from geosession.engine_errors import translate_for
from geosession.errors import ConfigurationError, ConnectionFailed, GeoSessionError
from geosession.retry import restart_backoff

T = TypeVar("T")
_CONNECTION_LOST = ("08", "57P01", "57P02", "57P03")


class Connections:
    """Borrows driver connections from the engine's pool, and gives them back."""

    def __init__(self, engine: Engine, max_retries: int, on_retry: Callable[[], None]) -> None:
        self.engine = engine
        self.max_retries = max_retries
        self.on_retry = on_retry
        self.connected = False
        """Whether a connection was opened: before, a server that cannot be reached fails
        the load at once, as a session would; after, it is waited for (a restart)."""

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled psycopg connection; invalidated when it broke, else returned."""
        try:
            proxy = self.engine.raw_connection()
        except ConnectionFailed as error:
            raise self._unopened(error)  # noqa: B904 - error itself, or chained to it
        except psycopg.Error as error:  # the pool gives the driver's own error
            failed = translate_for(self.engine, error, connecting=True)
            failed.__cause__ = error
            raise self._unopened(failed)  # noqa: B904 - chained above
        self.connected = True
        try:
            driver = proxy.driver_connection
            if not isinstance(driver, psycopg.Connection):
                raise ConfigurationError(
                    f"ingest needs psycopg (3) connections, not {type(driver).__module__}'s"
                )
            yield driver
        except psycopg.Error:
            if proxy.driver_connection is None or proxy.driver_connection.broken:
                proxy.invalidate()
            raise
        finally:
            proxy.close()

    def _unopened(self, failed: GeoSessionError) -> Exception:
        """What a connection that could not be opened raises: a driver error, retried,
        once the load has connected (a server restarting); else ``failed`` itself, as a
        session would (a login refused, no server there)."""
        if failed.transient and self.connected:
            retried = psycopg.OperationalError(str(failed))
            retried.__cause__ = failed  # what translated() gives when retries run out
            return retried
        return failed

    def translated(self, error: psycopg.Error) -> GeoSessionError:
        """The error to raise: the pool's own where connecting failed (it names the server
        and what to check, which the driver error made of it for the retries lost), else
        the driver's translated."""
        if isinstance(error.__cause__, GeoSessionError):
            return error.__cause__
        return translate_for(self.engine, error)

    def retrying(self, step: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Runs ``step`` on a connection, again on a fresh one if the connection is lost."""
        for attempt in range(self.max_retries + 1):
            try:
                with self.connection() as conn:
                    return step(conn)
            except psycopg.Error as error:
                if not connection_lost(error) or attempt == self.max_retries:
                    raise self.translated(error) from error
                self.on_retry()
                time.sleep(restart_backoff(attempt))
        raise AssertionError("unreachable")


def connection_lost(error: psycopg.Error) -> bool:
    """The connection (not the statement) failed: the work may be retried elsewhere."""
    state = error.sqlstate or ""
    return state.startswith(_CONNECTION_LOST) or (
        state == "" and isinstance(error, psycopg.OperationalError)
    )
