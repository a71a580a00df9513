"""The ``geosession`` command line.

Each concern is a module of command functions (or a Typer group), registered on the root
``app`` (:mod:`.app`) below in the order ``--help`` lists them. Errors from geosession
(:class:`~geosession.errors.GeoSessionError`) are printed in red on stderr by
:func:`main`, with exit status 1 and no traceback.
"""

import signal
from typing import Any

from geosession.cli import cluster, demo, diagnose, export, ingest
from geosession.cli.app import app, fail
from geosession.errors import GeoSessionError

__all__ = ["app", "main"]

app.add_typer(cluster.local_app, name="local")
app.command("demo")(demo.demo)
app.command("ingest")(ingest.ingest)
app.command("export")(export.export)
app.command("activity")(diagnose.activity)
app.command("explain")(diagnose.explain)
app.command("doctor")(diagnose.doctor)


def main() -> None:
    """Run the command line; geosession errors become a red message and exit status 1.

    SIGTERM (a service manager, ``kill``, a container stopping) stops a command as Ctrl-C
    does: a load commits or rolls back the chunks in flight and rebuilds the indexes it
    deferred, an export removes its unfinished file. Either ends the command with status
    128 + the signal's number (130, 143), whatever the interruption became on its way
    out: GDAL, reading Arrow batches, reports one as a RuntimeError of its own."""
    received: list[int] = []

    def interrupt(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        app()
    except GeoSessionError as exc:
        if received:
            raise SystemExit(128 + received[0]) from None
        fail(exc.message)
        raise SystemExit(1) from None
    except SystemExit as done:
        if received and done.code not in (0, None):
            raise SystemExit(128 + received[0]) from None
        raise
    except BaseException:
        if received:
            raise SystemExit(128 + received[0]) from None
        raise
