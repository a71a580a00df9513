"""Warnings caught one thread at a time.

``warnings.catch_warnings`` swaps the process's filter list (and, recording, its
``showwarning``) on entry and puts back what it saw on exit (Python before 3.14): two
threads inside it at once can leave one's filter in force for good, silencing the
application's warnings, or a recorder in place of ``showwarning``. geosession catches
warnings on its reading and exporting threads, so it does so only here.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

_ONE_AT_A_TIME = threading.RLock()


@contextmanager
def recorded() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning of the block, recorded while no other thread of geosession's
    changes the filters; the caller shows again those it does not handle (:func:`shown`)."""
    with _ONE_AT_A_TIME, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def shown(warning: warnings.WarningMessage) -> None:
    """A recorded warning shown as it would have been, under the filters now in force."""
    warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


@contextmanager
def quieted(*messages: str) -> Iterator[None]:
    """The block's warnings whose text starts as one of the ``messages`` (regular
    expressions) pass unseen; the others are shown when it ends."""
    with recorded() as caught:
        yield
    for warning in caught:
        if not any(re.match(message, str(warning.message)) for message in messages):
            shown(warning)
