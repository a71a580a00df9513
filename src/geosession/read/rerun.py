"""When a read is run again after a lost connection, and after how long (no I/O).

A read is a query: running it again changes nothing on the server. So a keyset page
(``pages_by=``) whose transaction failed with a transient error (the connection lost, the
backend terminated, the server restarting or failing over, a replica's conflict with
recovery) is read again on a fresh connection, after the last key delivered: the caller
sees every row once, late. So is the start of any read that has connected, before its
first row. A read that could not connect at all fails at once, as a session would (a
server that is not there is more often a setting than a restart). A cursor that has
delivered rows cannot go on from where it was (the cursor was the failed transaction's):
that error says so, and how to read in pages instead, not to retry the transaction.
"""

from __future__ import annotations

import logging

from geosession.errors import GeoSessionError, without_retry_advice
from geosession.retry import RetryPolicy, restart_backoff

log = logging.getLogger("geosession.read")

ATTEMPTS = 8
"""Attempts at one page (or a read's start) in all: the waits add up to about 11 s."""

_POLICY = RetryPolicy(attempts=ATTEMPTS)


def read_again_after(
    error: GeoSessionError, attempt: int, *, connected: bool, delivered: bool, what: str
) -> float:
    """Seconds to wait before reading ``what`` ("a page", "the read") again after ``error``
    ended attempt ``attempt`` (1-based); re-raises ``error``, with what was tried, when
    there is no attempt to make. ``connected``: the read had a connection once;
    ``delivered``: rows of a cursor reached the caller."""
    if not connected:
        raise error
    if delivered:
        if _POLICY.retryable(error):
            error.reword(
                f"{without_retry_advice(error.message)}, so the read stopped: a cursor's "
                "read cannot go on once its transaction has failed (the cursor was that "
                "transaction's). Read in pages (pages_by=, CLI: --pages-by, the primary key) "
                "to have a lost page read again"
            )
        raise error
    if not _POLICY.should_retry(error, attempt):
        if _POLICY.retryable(error):
            error.reword(f"{without_retry_advice(error.message)} [{what} was read {attempt} times]")
        raise error
    delay = restart_backoff(attempt - 1)
    log.info(
        "Reading %s again in %.1f s (attempt %d of %d): %s (%s)",
        what,
        delay,
        attempt + 1,
        ATTEMPTS,
        type(error).__name__,
        error.sqlstate or "no SQLSTATE",
    )
    return delay
