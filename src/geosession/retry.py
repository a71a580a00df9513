"""Transactions that survive conflicts and faults: the retry policy, and a long-transaction guard.

The policy is a pure object (:class:`RetryPolicy`): which errors are worth a rerun, how long
to wait before the next attempt (exponential backoff with full jitter), when to give up.
``run_transaction`` and ``arun_transaction`` are the two I/O shells around it, one blocking
and one awaiting, each a few lines: an attempt is one whole transaction on a connection
from the pool, and a failed attempt has been rolled back (or its connection discarded)
before the next one starts.

What is retried, and why:

- ``SerializationConflict`` (40001) and ``DeadlockDetected`` (40P01): the server rolled the
  transaction back; a rerun sees the other transaction's result.
- ``SchemaChanged`` (0A000, "cached plan must not change result type"): a table changed
  after the connection prepared a statement that reads it; the driver dropped its
  prepared statements, so the rerun prepares anew.
- ``ConnectionFailed``: the connection was lost, the backend terminated, the server was
  restarting or out of connection slots (53300), before COMMIT was sent, so nothing was
  committed. Pre-ping and pool invalidation give the next attempt a fresh connection.
- ``LockTimeout`` (55P03) only with ``retry_lock_timeout=True``: waiting longer for the
  same lock is often what a caller wants, and often not.
- ``CommitOutcomeUnknown`` only with ``idempotent=True``: the connection was lost while
  COMMIT was in flight, so the work may already be committed and a rerun could apply it
  twice. Only the caller knows whether that is harmless.

Never retried: ``PoolExhausted`` (the pool already waited ``pool_timeout``; retrying would
multiply that wait), ``IdleInTransactionTimeout`` (the function itself kept the transaction
idle; a rerun would do the same), ``QueryTimeout``, and every error that is not transient
(constraint violations, invalid geometries, syntax errors, PostGIS errors) or not a
geosession error at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypedDict, TypeVar, overload

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from geosession.errors import (
    CommitOutcomeUnknown,
    ConfigurationError,
    GeoSessionError,
    IdleInTransactionTimeout,
    LockTimeout,
    PoolExhausted,
    refuse_unknown_options,
)
from geosession.settings import duration_ms

if TYPE_CHECKING:
    from geosession.database import SpatialDatabase

__all__ = ["RetryOptions", "RetryPolicy", "Transactional"]

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

_RNG = random.Random()


class RetryOptions(TypedDict, total=False):
    """Keyword arguments of ``run_transaction``, ``async_run_transaction``, ``transactional``."""

    isolation: str | None
    """"READ COMMITTED", "REPEATABLE READ" or "SERIALIZABLE" (default: the server's)."""
    read_only: bool
    """Run each attempt as a READ ONLY transaction."""
    statement_timeout: str | int | None
    """SET LOCAL statement_timeout for each attempt."""
    lock_timeout: str | int | None
    """SET LOCAL lock_timeout for each attempt."""
    settings: Mapping[str, object] | None
    """Other settings by name, SET LOCAL for each attempt (``{"search_path": "tenant_7"}``)."""
    replica: bool
    """Run each attempt on a streaming replica (``replica_urls``), read only; a replica
    lost mid-attempt is passed over by the rerun, and so is its conflict with recovery
    (canceled by the standby's replay: a serialization failure)."""
    attempts: int
    """Attempts in all, the first included (default 5)."""
    backoff: tuple[float, float]
    """(first, largest) bound of the random wait between attempts, in seconds."""
    retry_lock_timeout: bool
    """Also rerun after LockTimeout."""
    idempotent: bool
    """Rerunning the function is harmless: also rerun after CommitOutcomeUnknown."""


_TRANSACTION_OPTIONS = (
    "isolation",
    "read_only",
    "statement_timeout",
    "lock_timeout",
    "settings",
    "replica",
)


@dataclass(frozen=True)
class RetryPolicy:
    """When to rerun a failed transaction, and after how long. Pure: no I/O, no clock."""

    attempts: int = 5
    """Attempts in all, the first included."""
    base: float = 0.02
    """Upper bound of the first wait, in seconds; it doubles with every attempt."""
    cap: float = 1.0
    """Largest upper bound of a wait, in seconds."""
    retry_lock_timeout: bool = False
    """Rerun after LockTimeout too."""
    idempotent: bool = False
    """Rerun after CommitOutcomeUnknown too."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigurationError(f"attempts={self.attempts}: at least 1 attempt is needed")
        if not 0 <= self.base <= self.cap:
            raise ConfigurationError(
                f"backoff=({self.base}, {self.cap}): use (first, largest) seconds with "
                "0 <= first <= largest"
            )

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): full jitter.

        Uniform in [0, min(cap, base * 2 ** (attempt - 1))]: contenders that failed
        together spread out instead of colliding again in lockstep.
        """
        return rng.uniform(0, min(self.cap, self.base * 2.0 ** min(attempt - 1, 64)))

    def retryable(self, error: BaseException) -> bool:
        """Whether rerunning the whole transaction after ``error`` is safe and may succeed."""
        if isinstance(error, CommitOutcomeUnknown):
            return self.idempotent
        if isinstance(error, LockTimeout):
            return self.retry_lock_timeout
        if isinstance(error, PoolExhausted | IdleInTransactionTimeout):
            return False
        return isinstance(error, GeoSessionError) and error.transient

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether to run attempt ``attempt + 1`` after ``error`` ended attempt ``attempt``."""
        return attempt < self.attempts and self.retryable(error)


def restart_backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (0-based) of work that waits for a lost server to
    come back: 0.1 doubling to 5, enough to outlast a restart (about 11 s over 7 retries).
    Not jittered: what it waits for is the server, not other contenders."""
    return float(min(5.0, 0.1 * 2**attempt))


def split_options(
    options: RetryOptions, call: str = "run_transaction"
) -> tuple[dict[str, Any], RetryPolicy]:
    """The keyword arguments for ``db.transaction`` and the policy, from ``options``;
    ``call`` names the method an unknown option was given to."""
    refuse_unknown_options(options, RetryOptions.__annotations__, call)
    transaction = {k: v for k, v in options.items() if k in _TRANSACTION_OPTIONS}
    base, cap = options.get("backoff", (RetryPolicy.base, RetryPolicy.cap))
    policy = RetryPolicy(
        attempts=options.get("attempts", RetryPolicy.attempts),
        base=base,
        cap=cap,
        retry_lock_timeout=options.get("retry_lock_timeout", False),
        idempotent=options.get("idempotent", False),
    )
    return transaction, policy


def run_transaction(db: SpatialDatabase, fn: Callable[[Session], T], options: RetryOptions) -> T:
    """``fn(session)`` in ``db.transaction(...)``, rerun as ``options`` say (blocking)."""
    transaction, policy = split_options(options)
    attempt = 0
    while True:
        attempt += 1
        try:
            with db.transaction(**transaction) as session:
                return _finished(fn(session), fn)
        except GeoSessionError as error:
            delay = _after_failure(policy, error, attempt, fn, "run_transaction")
        time.sleep(delay)


async def arun_transaction(
    db: SpatialDatabase, fn: Callable[[AsyncSession], Awaitable[T]], options: RetryOptions
) -> T:
    """``await fn(session)`` in ``db.async_transaction(...)``, rerun as ``options`` say."""
    transaction, policy = split_options(options, "async_run_transaction")
    attempt = 0
    while True:
        attempt += 1
        try:
            async with db.async_transaction(**transaction) as session:
                return await _awaitable(_called_async(fn, session), fn)
        except GeoSessionError as error:
            delay = _after_failure(policy, error, attempt, fn, "async_run_transaction")
        await asyncio.sleep(delay)


def _finished(result: T, fn: Callable[..., Any]) -> T:
    """``fn``'s result, unless it is work not done yet: a coroutine or a generator would
    run after the transaction (committed empty) had ended. Raised inside it: rolled back."""
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # no "never awaited" warning: the error says it
        raise ConfigurationError(
            f"run_transaction called {_name_of(fn)}, which is async: its work would run "
            "after the transaction ended. Use await db.async_run_transaction(fn)"
        )
    if inspect.isgenerator(result) or inspect.isasyncgen(result):
        raise ConfigurationError(
            f"{_name_of(fn)} returned a generator, whose body runs only when iterated, "
            "after the transaction ended: return a list instead (return list(...))"
        )
    return result


def _called_async(fn: Callable[..., Any], session: Any) -> Any:
    """``fn(session)``, where a sync ``fn`` that used a result of the async session (a
    coroutine: ``s.execute(...).rowcount``) fails in words, not with its AttributeError."""
    try:
        return fn(session)
    except (AttributeError, TypeError) as error:
        if inspect.iscoroutinefunction(fn) or "'coroutine' object" not in str(error):
            raise
        raise ConfigurationError(
            f"async_run_transaction needs an async function (async def fn(session), awaiting "
            f"each call of the session), and {_name_of(fn)} is sync: it used what the async "
            f"session returns, a coroutine, as a result ({error}). Write it async, or use "
            "db.run_transaction(fn) for a sync one"
        ) from error


def _awaitable(result: Awaitable[T], fn: Callable[..., Any]) -> Awaitable[T]:
    """``fn``'s coroutine; a sync ``fn`` has done its work already, outside any await."""
    if not inspect.isawaitable(result):
        raise ConfigurationError(
            f"async_run_transaction needs an async function (async def fn(session)), and "
            f"{_name_of(fn)} returned a value of type {type(result).__name__}: for a sync one, use "
            "db.run_transaction(fn)"
        )
    return result


def _after_failure(
    policy: RetryPolicy,
    error: GeoSessionError,
    attempt: int,
    fn: Callable[..., Any],
    runner: str,
) -> float:
    """The wait before the next attempt; re-raises ``error`` when there is none to make,
    saying which of ``runner``'s attempts raised it."""
    if not policy.should_retry(error, attempt):
        if policy.retryable(error):  # its advice to rerun with run_transaction: done
            error.reword(error.message.replace(_RERUN_ADVICE, ""))
            _note(error, f"{runner} gave up after {attempt} attempts: raise attempts=")
        elif attempt > 1:
            _note(error, f"raised by attempt {attempt} of {policy.attempts} of {runner}")
        raise error
    delay = policy.delay(attempt, _RNG)
    log.info(
        "%s: attempt %d of %d failed with %s (%s); rerunning in %.0f ms",
        _name_of(fn),
        attempt,
        policy.attempts,
        type(error).__name__,
        error.sqlstate or "no SQLSTATE",
        delay * 1000,
    )
    return delay


_RERUN_ADVICE = "; db.run_transaction does it for you"
"""The end of a transient error's advice, which a rerun that gave up has followed."""


def _note(error: GeoSessionError, note: str) -> None:
    error.reword(f"{error.message} [{note}]")


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class Transactional:
    """``@db.transactional(...)``: the function runs in ``run_transaction``, session first.

    ``def f(session, *args)`` becomes ``f(*args)``; an ``async def`` one becomes a
    coroutine function that runs in ``async_run_transaction``.
    """

    def __init__(self, db: SpatialDatabase, options: RetryOptions) -> None:
        split_options(options, "transactional")  # invalid options fail at decoration time
        self._db = db
        self._options = options

    @overload
    def __call__(
        self, fn: Callable[Concatenate[AsyncSession, P], Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[Concatenate[Session, P], T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        db, options = self._db, self._options
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                return await arun_transaction(db, _session_first(fn, args, kwargs), options)

            return run_async

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            return run_transaction(db, _session_first(fn, args, kwargs), options)

        return run


def _session_first(
    fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Callable[[Any], T]:
    """``session -> fn(session, *args, **kwargs)``, named like ``fn`` for the logs."""

    @functools.wraps(fn)
    def call(session: Any) -> T:
        return fn(session, *args, **kwargs)

    return call


# The long-transaction guard. A transaction held open holds its locks and its snapshot
# (which stops vacuum); the server's idle_in_transaction_session_timeout ends only idle
# ones, and only after minutes. Every transaction that ends after more than
# ``long_transaction_warning`` is logged with the line of the caller that opened it.

_OPENED = "geosession.transaction_opened"
_INTERNAL = (
    os.path.dirname(sqlalchemy.__file__) + os.sep,
    os.path.dirname(__file__) + os.sep,
    contextlib.__file__,
    "<",  # generated code, such as SQLAlchemy's method wrappers
)


def watch_long_transactions(factory: sessionmaker[Session], threshold: str | None) -> None:
    """Warns about transactions of ``factory``'s sessions held open longer than ``threshold``.

    Costs one frame walk when a transaction begins and one clock read when it ends.
    Async sessions share it when they are made with ``sync_session_class=factory.class_``.
    """
    if not threshold or duration_ms(threshold) <= 0:
        return
    seconds = duration_ms(threshold) / 1000
    event.listen(factory, "after_begin", _note_opened)
    warn = functools.partial(_warn_if_long, threshold=threshold, seconds=seconds)
    event.listen(factory, "after_transaction_end", warn)


def _note_opened(session: Session, transaction: SessionTransaction, connection: Any) -> None:
    if _OPENED not in session.info:
        session.info[_OPENED] = (time.monotonic(), _opened_where())


def _warn_if_long(
    session: Session, transaction: SessionTransaction, *, threshold: str, seconds: float
) -> None:
    if transaction.parent is not None or _OPENED not in session.info:
        return  # a savepoint ended, or the transaction never reached the database
    opened, where = session.info.pop(_OPENED)
    held = time.monotonic() - opened
    if held >= seconds:
        log.warning(
            "A transaction was held open for %.1fs (long_transaction_warning=%s); it was "
            "opened at %s. Its locks and snapshot were held all that time: commit sooner "
            "and keep slow work (HTTP calls, file I/O) outside transactions",
            held,
            threshold,
            where,
        )


def _opened_where() -> str:
    """``file:line in function`` of the first caller outside SQLAlchemy and geosession."""
    frame = _first_outside(sys._getframe(1)) or _first_outside(_awaiting_frame())
    if frame is None:
        return "an unknown place"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def _first_outside(frame: FrameType | None) -> FrameType | None:
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame = frame.f_back
    return frame


def _awaiting_frame() -> FrameType | None:
    """Async sessions run their sync core in a greenlet: the caller waits in its parent."""
    greenlet = sys.modules.get("greenlet")
    parent = getattr(greenlet.getcurrent(), "parent", None) if greenlet else None
    frame: FrameType | None = getattr(parent, "gr_frame", None)
    return frame
