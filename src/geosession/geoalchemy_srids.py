"""GeoAlchemy2 WKB elements in a statement keep their own SRID, not a cached one.

GeoAlchemy2 compiles ``from_shape(shape, srid=4326)`` (a WKB element without the SRID
in its bytes) to ``ST_GeomFromWKB(:wkb, 4326)``, with the SRID written into the SQL, and
an SRID of 0 or less to ``ST_GeomFromWKB(:wkb)``. Yet its functions let SQLAlchemy cache
the compiled SQL under a key that holds the SRID as a bound value, that is, without it:
the next statement of the same shape reuses the first one's SQL and so the first one's
SRID. Run with ``srid=3857`` and then ``srid=4326``, the second query searches in 3857
without an error (measured with GeoAlchemy2 0.20 and SQLAlchemy 2.1).

The two functions whose SQL depends on the value are made uncacheable here, as
SQLAlchemy advises for constructs whose SQL depends on their values: a statement holding
one is compiled each time it runs (some tens of microseconds). geosession's own elements
(:func:`geosession.geometry.to_element`) carry the SRID inside their EWKB and were never
affected.
"""

from __future__ import annotations

from geoalchemy2 import functions

_SRID_IN_SQL = (functions.ST_GeomFromWKB, functions.ST_GeomFromEWKB)


def compile_srids_each_time() -> None:
    """Keeps statements with the functions above out of SQLAlchemy's cache."""
    for function in _SRID_IN_SQL:
        function.inherit_cache = False
        if "_generated_cache_key_traversal" in vars(function):  # a statement compiled before
            delattr(function, "_generated_cache_key_traversal")
