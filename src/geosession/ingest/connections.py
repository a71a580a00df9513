"""Pooled psycopg connections for the ingest, and retrying a step when one is lost."""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine

from geosession.engine import PgBouncerConnection
from geosession.engine_errors import translate_for
from geosession.errors import ConfigurationError, ConnectionFailed, GeoSessionError
from geosession.retry import restart_backoff

T = TypeVar("T")
_CONNECTION_LOST = ("08", "57P01", "57P02", "57P03")
_ENDED_BY_SERVER = ("57P01", "57P02")
"""admin_shutdown, crash_shutdown: a server that answered, then ended the connection."""
_CANNOT_CONNECT_NOW = "57P03"
"""A server starting up, shutting down or recovering: it will take connections again."""


WITHOUT_STATEMENT_TIMEOUT = (
    "SELECT set_config('lock_timeout', CASE current_setting('lock_timeout') WHEN '0' THEN "
    "current_setting('statement_timeout') ELSE current_setting('lock_timeout') END, true), "
    "set_config('statement_timeout', '0', true)"
)
"""For the transactions of the table's upkeep after a load: an index rebuild, the ANALYZE,
the max() that moves a sequence. statement_timeout bounds the application's statements
(30 s by default), not these, which no chunk size makes shorter: a GiST build over 20M
rows takes longer, failed on every run, and left the table without its index. Lock waits
keep the bound they had."""


_RETRIED_COPIES: weakref.WeakSet[psycopg.Copy] = weakref.WeakSet()
"""The ingest's COPYs: a failed one is retried, so psycopg's word on ending it is noise."""


class _RetriedCopyEnds(logging.Filter):
    """Drops psycopg's warning that ending a COPY failed too, after the COPY itself failed
    ("error ignored terminating <psycopg.Copy [BAD]>: the connection is lost"), for the
    ingest's own COPYs only: the load retries the chunk and says so in its report, and
    the warning (printed by Python's last-resort handler where logging is not set up)
    broke into the progress bar without saying whose COPY. Other COPYs keep it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and args and args[0] in _RETRIED_COPIES)


logging.getLogger("psycopg").addFilter(_RetriedCopyEnds())


class Connections:
    """Borrows driver connections from the engine's pool, and gives them back."""

    def __init__(
        self,
        engine: Engine,
        max_retries: int,
        on_retry: Callable[[], None],
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.max_retries = max_retries
        self.on_retry = on_retry
        self.settings = dict(settings or {})
        """Set on each connection for as long as the ingest holds it, and reset after."""
        self.connected = False
        """Whether a connection was opened: before, a server that cannot be reached fails
        the load at once, as a session would; after, it is waited for (a restart)."""
        self.restarting = False
        """Whether the server said it is starting up or shutting down: then it is waited
        for, and its refusals while it is down too, before any connection was opened."""

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled psycopg connection; invalidated when it broke, else returned."""
        proxy = self._checked_out()
        try:
            driver = _psycopg(proxy)
            self._set(driver)
            if isinstance(driver, PgBouncerConnection):
                driver.implicit_settings = True  # its lookups outside chunks get them too
            yield driver
        except psycopg.Error:
            if proxy.driver_connection is None or proxy.driver_connection.broken:
                proxy.invalidate()
            raise
        finally:
            self._reset(proxy)
            proxy.close()

    def _checked_out(self) -> Any:
        """A connection from the engine's pool (its proxy), or the error to raise."""
        try:
            proxy = self.engine.raw_connection()
        except ConnectionFailed as error:
            raise self._unopened(error)  # noqa: B904 - error itself, or chained to it
        except psycopg.Error as error:  # the pool gives the driver's own error
            failed = translate_for(self.engine, error, connecting=True)
            failed.__cause__ = error
            raise self._unopened(failed)  # noqa: B904 - chained above
        self.connected = True
        return proxy

    def kept(
        self, step: Callable[[psycopg.Connection[Any]], None], *, retried: bool = True
    ) -> psycopg.Connection[Any]:
        """A connection taken out of the pool once ``step`` ran on it (retried as
        :meth:`retrying` is, unless not ``retried``), for the caller to close: held for a
        whole load, it takes no room the writers need, and closing it ends what its
        server session holds."""
        connected = False

        def on_a_connection() -> psycopg.Connection[Any]:
            nonlocal connected
            connected = False
            proxy = self._checked_out()
            connected = True
            try:
                driver = _psycopg(proxy)
            except ConfigurationError:
                proxy.close()
                raise
            proxy.detach()
            try:
                step(driver)
            except BaseException:
                driver.close()
                raise
            return driver

        if not retried:
            return on_a_connection()
        return self._retried(on_a_connection, connected=lambda: connected)

    def _set(self, driver: psycopg.Connection[Any]) -> None:
        """The settings, for the whole server session (every transaction of the ingest on
        it, and the statements outside its transaction blocks: resolving the target,
        checking privileges as the role given)."""
        if not self.settings:
            return
        calls = ", ".join("set_config(%s, %s, false)" for _ in self.settings)
        values = [part for item in self.settings.items() for part in item]
        try:
            driver.execute(f"SELECT {calls}", values)
            driver.commit()
        except psycopg.Error as error:
            if connection_lost(error):
                raise
            given = ", ".join(self.settings)  # names only: a key's value may be a secret
            raise ConfigurationError(
                f"settings= (--setting) {given}: the server refused them: "
                f"{error.diag.message_primary or error}. Check the names and values (a role "
                "must exist and be granted to the user the ingest connects as)"
            ) from error

    def _reset(self, proxy: Any) -> None:
        """The connection's transaction ended and the settings undone before it goes
        back to the pool: the next user of it (a session) must not run as the ingest's
        role or with its keys. A connection where that fails, or that is lost already, is
        discarded instead: the pool's own rollback of it logged SQLAlchemy's "Exception
        during reset or similar" at ERROR with a traceback (a backend terminated between
        a step's read and the connection's return), which Python prints on stderr
        through the progress bar where logging is not set up."""
        driver = proxy.driver_connection
        if driver is None:
            return
        if isinstance(driver, PgBouncerConnection):
            driver.implicit_settings = False
        if driver.closed or driver.broken:
            proxy.invalidate()
            return
        try:
            driver.rollback()  # nothing is sent outside a transaction
            for name in self.settings:  # names checked: letters, digits, _ and dots
                driver.execute(f"RESET {name}")
            if self.settings:
                driver.commit()
        except psycopg.Error:
            proxy.invalidate()

    def _unopened(self, failed: GeoSessionError) -> Exception:
        """What a connection that could not be opened raises: a driver error, retried,
        once the load has connected (a server restarting), where the server ended it
        while it opened (a backend terminated, a failover) or once it said it is starting
        up or shutting down; else ``failed`` itself, as a session would (a login refused,
        no server there)."""
        if self._waits_for(failed):
            retried = psycopg.OperationalError(str(failed))
            retried.__cause__ = failed  # what translated() gives when retries run out
            return retried
        return failed

    def _waits_for(self, failed: GeoSessionError) -> bool:
        """Whether the work ``failed`` ended may run again on a fresh connection (see
        :meth:`_unopened`)."""
        state = failed.sqlstate or ""
        self.restarting = self.restarting or state == _CANNOT_CONNECT_NOW
        return failed.transient and (self.connected or self.restarting or state in _ENDED_BY_SERVER)

    def translated(self, error: psycopg.Error) -> GeoSessionError:
        """The error to raise: the pool's own where connecting failed (it names the server
        and what to check, which the driver error made of it for the retries lost), else
        the driver's translated."""
        if isinstance(error.__cause__, GeoSessionError):
            return error.__cause__
        return translate_for(self.engine, error)

    def again(self, step: Callable[[], T]) -> T:
        """Runs ``step`` (short transactions on the engine's own connections: create=True's
        table), again when a connection it used was lost as :meth:`retrying` judges one."""
        return self._repeated(
            step,
            lambda error: isinstance(error, ConnectionFailed) and self._waits_for(error),
            connected=lambda: False,  # not known: the backoff every time
        )

    def retrying(self, step: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Runs ``step`` on a connection, again on a fresh one if the connection is lost."""
        connected = False

        def on_a_connection() -> T:
            nonlocal connected
            connected = False
            with self.connection() as conn:
                connected = True
                return step(conn)

        return self._retried(on_a_connection, connected=lambda: connected)

    def _retried(self, attempt: Callable[[], T], *, connected: Callable[[], bool]) -> T:
        """``attempt`` (work on a fresh connection), again while its connection is lost;
        the last failure translated."""
        try:
            return self._repeated(
                attempt,
                lambda error: isinstance(error, psycopg.Error) and connection_lost(error),
                connected=connected,
            )
        except psycopg.Error as error:
            raise self.translated(error) from error

    def _repeated(
        self,
        step: Callable[[], T],
        lost: Callable[[Exception], bool],
        *,
        connected: Callable[[], bool],
    ) -> T:
        """``step``, run again while what it raises is ``lost`` (a connection, not the
        work), up to max_retries times; the last error raised. The first time at once
        where the step had connected (a terminated backend: the server was up), else
        after the restart backoff (connecting failed: a server that is down; lost again:
        a proxy such as PgBouncer takes connections while the server behind it is down)."""
        for attempt in range(self.max_retries + 1):
            try:
                return step()
            except Exception as error:
                if attempt == self.max_retries or not lost(error):
                    raise
                self.on_retry()
                if attempt > 0 or not connected():
                    time.sleep(restart_backoff(attempt))
        raise AssertionError("unreachable")


def _psycopg(proxy: Any) -> psycopg.Connection[Any]:
    """The pooled connection's driver connection, which binary COPY needs to be psycopg's."""
    driver = proxy.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise ConfigurationError(
            f"ingest needs psycopg (3) connections, not {type(driver).__module__}'s"
        )
    return driver


@contextlib.contextmanager
def copying(cursor: psycopg.Cursor[Any], statement: Any) -> Iterator[psycopg.Copy]:
    """``cursor.copy(statement)``, where a connection lost as the COPY ends raises the
    driver's OperationalError, which the load retries: psycopg (3.3) expects one result
    there, and PgBouncer's answer when the server connection died during the COPY (its
    error, then the connection's end) raised ValueError('too many values to unpack')."""
    try:
        with cursor.copy(statement) as copy:
            _RETRIED_COPIES.add(copy)
            yield copy
    except ValueError as error:
        if not cursor.connection.broken:
            raise
        raise psycopg.OperationalError(f"the connection was lost ending a COPY: {error}") from error


def connection_lost(error: psycopg.Error) -> bool:
    """The connection (not the statement) failed: the work may be retried elsewhere."""
    state = error.sqlstate or ""
    return state.startswith(_CONNECTION_LOST) or (
        state == "" and isinstance(error, psycopg.OperationalError)
    )
