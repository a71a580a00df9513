"""Driver errors become geosession errors with the same class on every driver."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import shapely
from geoalchemy2 import Geometry
from sqlalchemy import Column, Integer, MetaData, Table, insert, text
from sqlalchemy.engine import make_url

from geosession import (
    AccessDenied,
    ConnectionFailed,
    DatabaseError,
    IntegrityViolation,
    InvalidGeometry,
    LockTimeout,
    PoolExhausted,
    PostGISNotInstalled,
    QueryTimeout,
    SerializationConflict,
    SpatialDatabase,
    SRIDMismatch,
)
from geosession.errors import ConfigurationError, GeoSessionError
from geosession.geometry import to_element

DRIVERS = ["psycopg", "psycopg2", "asyncpg"]


def run(db: SpatialDatabase, driver: str, sql: str, params: dict[str, Any] | None = None) -> Any:
    """Runs one statement in a committed transaction on the given driver."""
    if driver != "asyncpg":
        with db.transaction() as s:
            result = s.execute(text(sql), params or {})
            return result.all() if result.returns_rows else None

    async def go() -> Any:
        try:
            async with db.async_transaction() as s:
                result = await s.execute(text(sql), params or {})
                return result.all() if result.returns_rows else None
        finally:
            await db.adispose()

    return asyncio.run(go())


def database_for(
    make_db: Callable[..., SpatialDatabase], driver: str, **kw: Any
) -> SpatialDatabase:
    if driver == "asyncpg":
        return make_db(async_driver="asyncpg", **kw)
    return make_db(driver=driver, **kw)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that accepts TCP connections and never answers, like a hung server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize("driver", DRIVERS)
def test_unreachable_server_fails_within_connect_timeout(
    make_db: Callable[..., SpatialDatabase], silent_port: int, driver: str
) -> None:
    url = f"postgresql://someone:s3cret-pw@127.0.0.1:{silent_port}/gis"
    db = database_for(make_db, driver, url=url, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as info:
        run(db, driver, "SELECT 1")
    assert time.monotonic() - started < 4
    assert f"127.0.0.1:{silent_port}" in str(info.value)
    assert "s3cret-pw" not in str(info.value)
    assert info.value.transient and info.value.__cause__ is not None


@pytest.mark.parametrize("driver", DRIVERS)
def test_refused_connection_names_host_and_port(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    db = database_for(make_db, driver, url=f"postgresql://u@127.0.0.1:{port}/gis")
    with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{port}"):
        run(db, driver, "SELECT 1")


@pytest.mark.parametrize("driver", DRIVERS)
def test_missing_database_is_access_denied(
    make_db: Callable[..., SpatialDatabase], database_url: str, driver: str
) -> None:
    url = make_url(database_url).set(database="no_such_db").render_as_string(hide_password=False)
    db = database_for(make_db, driver, url=url)
    with pytest.raises(AccessDenied, match="(?i)create the database") as info:
        run(db, driver, "SELECT 1")
    assert not info.value.transient


def test_pool_exhaustion_fails_within_pool_timeout(make_db: Callable[..., SpatialDatabase]) -> None:
    db = make_db(pool_size=2, max_overflow=1, pool_timeout=0.5)
    holders = [db.session() for _ in range(3)]
    sessions = [h.__enter__() for h in holders]
    try:
        for s in sessions:
            s.execute(text("SELECT 1"))
        started = time.monotonic()
        with pytest.raises(PoolExhausted) as info, db.session() as s:
            s.execute(text("SELECT 1"))
        assert 0.4 < time.monotonic() - started < 3
        assert "pool_size=2" in str(info.value) and "max_overflow=1" in str(info.value)
        assert info.value.transient
    finally:
        for h in holders:
            h.__exit__(None, None, None)


@pytest.fixture
def srid_table(db: SpatialDatabase) -> Iterator[Table]:
    table = Table(
        "srid_points",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("geom", Geometry("POINT", srid=3857, spatial_index=False)),
    )
    table.create(db.engine)
    yield table
    table.drop(db.engine)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_wrong_srid_names_column_and_both_srids(
    make_db: Callable[..., SpatialDatabase], srid_table: Table, driver: str
) -> None:
    db = make_db(driver=driver)
    with pytest.raises(SRIDMismatch) as info, db.transaction() as s:
        s.execute(insert(srid_table), [{"id": 1, "geom": "SRID=4326;POINT(1 2)"}])
    error = info.value
    assert (error.column, error.geometry_srid, error.column_srid) == ("geom", 4326, 3857)
    assert "srid_points.geom" in str(error) and "4326" in str(error) and "3857" in str(error)


def test_wrong_srid_in_text_sql_on_asyncpg(db: SpatialDatabase, srid_table: Table) -> None:
    with pytest.raises(SRIDMismatch, match="4326.*3857.*srid_points"):
        run(db, "asyncpg", "INSERT INTO srid_points (id, geom) VALUES (1, 'SRID=4326;POINT(1 2)')")


@pytest.mark.parametrize("driver", DRIVERS)
def test_invalid_geometry_text(make_db: Callable[..., SpatialDatabase], driver: str) -> None:
    """Each kind of geometry PostGIS cannot take says what to look at, not only
    "shapely.make_valid repairs many" (which repairs none of these)."""
    db = database_for(make_db, driver)
    feature = '{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}}'
    here = "'SRID=4326;POINT(1 1)'::geography"
    mistakes: list[tuple[type[Exception], str, str]] = [
        (
            InvalidGeometry,
            "parse error.*could not read the geometry's tex",
            "SELECT 'POLYGON((0 0, 1 1'::geometry",
        ),
        (
            InvalidGeometry,
            "takes a geometry object, not a Feature",
            f"SELECT ST_GeomFromGeoJSON('{feature}')",
        ),
        (
            InvalidGeometry,
            "a polygon ring four, its last the same as its",
            "SELECT ST_GeomFromText('POLYGON((0 0, 1 0, 1 1))')",
        ),
        (
            InvalidGeometry,
            r"take points only.*ST_X\(ST_Centroid\(geom\)\)",
            "SELECT ST_X('LINESTRING(0 0, 1 1)'::geometry)",
        ),
        (
            InvalidGeometry,
            r"ST_Multi\(geom\) makes a Point a MultiPoint",
            "SELECT 'SRID=4326;POINT(1 1)'::geometry(MultiPoint, 4326)",
        ),
        (
            InvalidGeometry,
            r"ST_Force2D\(geom\) drops Z",
            "SELECT 'SRID=4326;POINT Z(1 1 1)'::geometry(Point, 4326)",
        ),
        (
            DatabaseError,
            r"no st_contains for geography.*ST_Covers\(a, b\)",
            f"SELECT ST_Contains({here}, {here})",
        ),
        (  # it was said to have no st_area for geography
            DatabaseError,
            r"PostGIS has st_area for geography, but no form of it takes these arguments",
            f"SELECT ST_Area({here}, true, 5)",
        ),
        (
            InvalidGeometry,
            r"non-closed rings.*Close each polygon ring",
            "SELECT 'POLYGON((0 0, 1 0, 1 1, 0 1))'::geometry",
        ),
        (
            InvalidGeometry,
            r"WKB structure.*could not read the geometry's",
            "SELECT ST_GeomFromWKB(decode('0101', 'hex'))",
        ),
        (
            DatabaseError,
            r"takes the SRID of a spatial_ref_sys row",
            "SELECT ST_Transform('SRID=4326;POINT(1 1)'::geometry, 'EPSG:99999')",
        ),
    ]
    for cls, advice, sql in mistakes:
        with pytest.raises(cls, match=advice):
            run(db, driver, sql)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_function_that_takes_no_curves_says_to_straighten_them(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    """ST_AsGeoJSON, ST_AsMVTGeom and ST_Simplify refuse a curve, each in its own words
    ("Invalid type (10)" among them): not "shapely.make_valid repairs many"."""
    db = database_for(make_db, driver)
    arc = "'CURVEPOLYGON(CIRCULARSTRING(0 0, 4 0, 4 4, 0 4, 0 0))'::geometry"
    for call in (
        f"ST_AsGeoJSON({arc})",
        f"ST_AsMVTGeom({arc}, ST_MakeEnvelope(0, 0, 10, 10))",
        f"ST_Simplify({arc}, 1)",
    ):
        with pytest.raises(InvalidGeometry, match=r"takes no curves.*ST_CurveToLine\(geom\)"):
            run(db, driver, f"SELECT {call}")
    assert run(db, driver, f"SELECT ST_AsText(ST_Simplify(ST_CurveToLine({arc}), 1)) IS NOT NULL")


@pytest.mark.parametrize("driver", DRIVERS)
def test_srid_mistakes_in_queries_say_which_srids_and_what_to_do(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    db = database_for(make_db, driver)
    point = "'SRID={}; POINT(1 1)'::geometry"
    mixed = f"SELECT ST_Intersects({point.format(4326)}, {point.format(3857)})"
    with pytest.raises(SRIDMismatch) as info:
        run(db, driver, mixed)
    assert "Geometries of SRID 4326 and SRID 3857 met in ST_Intersects" in str(info.value)
    with pytest.raises(GeoSessionError) as unknown:
        run(db, driver, f"SELECT ST_Transform({point.format(4326)}, 99999)")
    assert "SRID 99999 is not in this database's spatial_ref_sys" in str(unknown.value)
    with pytest.raises(GeoSessionError) as reserved:  # said only "see the server's message"
        run(db, driver, f"SELECT ST_Transform({point.format(4326)}, 999999)")
    assert "SRID 999999 is not in this database's spatial_ref_sys" in str(reserved.value)
    with pytest.raises(SRIDMismatch, match=r"SRID 0 .* ST_Transform\(ST_SetSRID\(geom"):
        run(db, driver, "SELECT ST_Transform('POINT(1 1)'::geometry, 4326)")
    with pytest.raises(SRIDMismatch, match=r"transform it first, ST_Transform\(geom, 4326\)"):
        run(db, driver, "SELECT 'SRID=3857;POINT(1e5 1e5)'::geometry::geography")
    with pytest.raises(DatabaseError, match=r"PROJ could not transform a coordinate: one beyond"):
        run(db, driver, "SELECT ST_Transform('SRID=4326;POINT(5e5 5e6)'::geometry, 3857)")


@pytest.fixture
def plain_database(server_url: str) -> Iterator[str]:
    """A database without the postgis extension."""
    admin_url = make_url(server_url).set(drivername="postgresql")
    with psycopg.connect(admin_url.render_as_string(hide_password=False), autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS geosession_no_postgis WITH (FORCE)")
        c.execute("CREATE DATABASE geosession_no_postgis")
        yield (
            make_url(server_url)
            .set(database="geosession_no_postgis")
            .render_as_string(hide_password=False)
        )
        c.execute("DROP DATABASE geosession_no_postgis WITH (FORCE)")


@pytest.mark.parametrize("driver", DRIVERS)
def test_missing_postgis_says_how_to_install_it(
    make_db: Callable[..., SpatialDatabase], plain_database: str, driver: str
) -> None:
    db = database_for(make_db, driver, url=plain_database)
    for sql in ("SELECT 'POINT(1 1)'::geometry", "SELECT ST_MakePoint(1, 2)"):
        with pytest.raises(PostGISNotInstalled, match="CREATE EXTENSION postgis"):
            run(db, driver, sql)


@pytest.mark.parametrize("driver", DRIVERS)
def test_postgis_out_of_the_search_path_is_not_called_missing(
    make_db: Callable[..., SpatialDatabase], postgis_elsewhere: str, driver: str
) -> None:
    """The engine reads where PostGIS is when it first connects: a type or function the
    server cannot find is then named for what it is, not "PostGIS is not installed"."""
    db = database_for(make_db, driver, url=postgis_elsewhere)
    assert run(db, driver, "SELECT gis.ST_AsText(gis.ST_MakePoint(1, 2))") == [("POINT(1 2)",)]
    with pytest.raises(ConfigurationError) as info:
        run(db, driver, "SELECT 'POINT(1 1)'::geometry")
    assert type(info.value) is ConfigurationError
    assert "PostGIS is installed in schema gis, which must be on the search_path" in str(info.value)
    with pytest.raises(DatabaseError) as info:
        run(db, driver, "SELECT ST_MakePoint(1, 2)")
    assert type(info.value) is DatabaseError
    assert "the number and types of its arguments" in str(info.value)
    assert "installed in schema gis" in str(info.value)
    if driver != "psycopg":
        return
    run(db, driver, "CREATE TABLE places (id int, geom gis.geometry(Point, 4326))")
    run(db, driver, "INSERT INTO places VALUES (1, gis.ST_MakePoint(1, 2))")
    off_path = "PostGIS is installed in schema gis, which must be on the search_path"
    with pytest.raises(ConfigurationError, match=off_path):  # reading the table's columns
        db.ingest("places", [{"id": 2, "geom": "POINT(1 2)"}])
    with pytest.raises(ConfigurationError, match=off_path), db.stream("TABLE places") as rows:
        list(rows)


def assert_advised(db: SpatialDatabase, driver: str, mistakes: dict[str, str]) -> None:
    """Each SQL fails with a DatabaseError (no narrower class) whose message holds its
    advice (in any case)."""
    for sql, advice in mistakes.items():
        with pytest.raises(DatabaseError) as info:
            run(db, driver, sql)
        assert type(info.value) is DatabaseError, sql
        assert not info.value.transient, sql
        assert advice.lower() in info.value.message.lower(), (sql, info.value.message)


@pytest.mark.parametrize("driver", DRIVERS)
def test_common_sql_mistakes_say_what_to_check(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    """With PostGIS installed, a PostGIS function called with the wrong arguments is not
    'PostGIS is not installed'; missing tables and columns say how names are cased."""
    db = database_for(make_db, driver)
    mistakes = {
        "SELECT ST_Buffer('POINT(1 1)'::geometry)": "the number and types of its arguments",
        "SELECT ST_X(1.5)": "the number and types of its arguments",  # no geometry: PostGIS
        "SELECT ST_MakeEnvelope(0, 0, 1)": "the number and types of its arguments",  # is there
        'SELECT * FROM "NoSuchTable"': "unquoted names are lower-cased",
        "SELECT no_such_column FROM spatial_ref_sys": "check the column's name",
        "SELECT FROM WHERE": "fix the sql where the server points",
    }
    assert_advised(db, driver, mistakes)


@pytest.mark.parametrize("driver", DRIVERS)
def test_values_that_do_not_fit_say_what_to_do(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    db = database_for(make_db, driver)
    short = "CREATE TEMP TABLE short (v varchar(2)); INSERT INTO short VALUES ('abc');"
    mistakes = {
        "SELECT 'abc'::int": "the text is no value of that type",
        "SELECT 40000::smallint": "give the column a wider type",
        "SELECT 1 / 0": "NULLIF(y, 0)",
        "SELECT '2024-13-45'::date": "ISO 8601",
        f"DO $$ BEGIN {short} END $$": "widen the column",
        "SELECT ln(0)": "a value does not fit its type",
    }
    assert_advised(db, driver, mistakes)


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_servers_resource_limits_say_what_to_do(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    """A value too large for a B-tree entry (a real one); a full disk and an exhausted
    memory as the server signals them (their SQLSTATEs, raised by the server)."""
    db = database_for(make_db, driver)
    block = "DO $$ BEGIN {} END $$"  # one statement: asyncpg prepares what it runs
    wide = (
        "CREATE TEMP TABLE wide (v text PRIMARY KEY); INSERT INTO wide "
        "SELECT string_agg(md5(n::text), '') FROM generate_series(1, 200) AS n;"
    )
    signalled = "RAISE EXCEPTION 'could not extend file' USING ERRCODE = '{}';"
    limits = {
        block.format(wide): "index a hash of it instead",
        block.format(signalled.format("disk_full")): "free space there, or move the table",
        block.format(signalled.format("out_of_memory")): "lower work_mem",
    }
    assert_advised(db, driver, limits)


@pytest.fixture
def clerk(admin: psycopg.Connection[Any], database_url: str) -> Iterator[str]:
    """The URL of a role that may not read one table nor draw from two sequences, and may
    write another table's rows of its own under a row-level security policy."""
    admin.execute(
        "DROP TABLE IF EXISTS ledger_secret, ledger_rows; "
        'DROP SEQUENCE IF EXISTS "Ledger Numbers"; DROP ROLE IF EXISTS geosession_clerk; '
        "CREATE ROLE geosession_clerk LOGIN; CREATE TABLE ledger_secret (id serial); "
        'CREATE SEQUENCE "Ledger Numbers"; '
        "CREATE TABLE ledger_rows (id int, tenant text); "
        "ALTER TABLE ledger_rows ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY own ON ledger_rows USING (tenant = current_user) "
        "WITH CHECK (tenant = current_user); "
        "GRANT SELECT, INSERT ON ledger_rows TO geosession_clerk"
    )
    yield make_url(database_url).set(username="geosession_clerk").render_as_string(False)
    admin.execute(
        'DROP TABLE ledger_secret, ledger_rows; DROP SEQUENCE "Ledger Numbers"; '
        "DROP ROLE geosession_clerk"
    )


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_refused_privilege_names_the_role_and_a_policy_or_owner_say_theirs(
    make_db: Callable[..., SpatialDatabase], driver: str, clerk: str
) -> None:
    """ "Permission denied" said to grant the privilege "to this role" without naming it
    (nor, for a sequence, that it is USAGE); a row-level security policy's refusal and a
    statement only the owner may run (both 42501 too) were told to grant a privilege,
    which neither needs."""
    db = database_for(make_db, driver, url=clerk)
    refusals = {
        "SELECT * FROM ledger_secret": "grant the privilege to role geosession_clerk",
        "SELECT nextval('ledger_secret_id_seq')": (
            "grant usage on sequence ledger_secret_id_seq to geosession_clerk;"
        ),
        """SELECT nextval('"Ledger Numbers"')""": (
            'grant usage on sequence "ledger numbers" to geosession_clerk;'
        ),
        "INSERT INTO ledger_rows VALUES (1, 'b')": "row-level security policies",
        "ALTER TABLE ledger_rows ADD COLUMN note text": "only the object's owner",
    }
    for sql, advice in refusals.items():
        with pytest.raises(DatabaseError) as info:
            run(db, driver, sql)
        assert info.value.sqlstate == "42501", sql
        assert advice in info.value.message.lower(), (sql, info.value.message)


@pytest.mark.parametrize("driver", DRIVERS)
def test_statement_timeout_is_query_timeout(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    db = database_for(make_db, driver, statement_timeout="200ms")
    with pytest.raises(QueryTimeout, match="statement_timeout") as info:
        run(db, driver, "SELECT pg_sleep(5)")
    assert not info.value.transient


@pytest.mark.parametrize("driver", DRIVERS)
def test_terminated_backend_is_connection_failed(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], driver: str
) -> None:
    db = database_for(make_db, driver, application_name=f"victim-{driver}")

    def terminate_soon() -> None:
        time.sleep(0.5)
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"victim-{driver}",),
        )

    killer = threading.Thread(target=terminate_soon)
    killer.start()
    try:
        with pytest.raises(ConnectionFailed) as info:
            run(db, driver, "SELECT pg_sleep(10)")
    finally:
        killer.join()
    assert info.value.transient
    assert run(db, driver, "SELECT 1") == [(1,)]  # the pool recovers by itself


def test_lock_timeout_and_integrity(db: SpatialDatabase) -> None:
    run(db, "psycopg", "CREATE TABLE locked (id int PRIMARY KEY)")
    try:
        run(db, "psycopg", "INSERT INTO locked VALUES (1)")
        with pytest.raises(IntegrityViolation, match="locked_pkey") as taken:
            run(db, "psycopg", "INSERT INTO locked VALUES (1)")
        assert "The key is taken" in str(taken.value) and "ON CONFLICT" in str(taken.value)
        with pytest.raises(IntegrityViolation, match="Give the column a value") as missing:
            run(db, "psycopg", "INSERT INTO locked VALUES (NULL)")
        assert "on_conflict" not in str(missing.value)
        with db.transaction() as holder:
            holder.execute(text("SELECT * FROM locked FOR UPDATE"))
            with pytest.raises(LockTimeout) as info, db.transaction(lock_timeout="100ms") as s:
                s.execute(text("SELECT * FROM locked FOR UPDATE"))
            assert info.value.transient
    finally:
        run(db, "psycopg", "DROP TABLE locked")


def test_an_exclusion_constraint_names_both_geometries_as_wkt(db: SpatialDatabase) -> None:
    run(db, "psycopg", "CREATE TABLE apart (geom geometry, EXCLUDE USING gist (geom WITH &&))")
    try:
        run(db, "psycopg", "INSERT INTO apart VALUES ('POLYGON((0 0,2 0,2 2,0 0))')")
        with pytest.raises(IntegrityViolation) as info:
            run(db, "psycopg", "INSERT INTO apart VALUES ('POINT(1 0.5)')")
        assert "Key (geom)=(POINT (1 0.5)) conflicts with existing key (geom)=(POLYGON" in str(
            info.value
        )
        assert "overlapping geometries" in str(info.value)
    finally:
        run(db, "psycopg", "DROP TABLE apart")


def test_serialization_conflict_is_transient(db: SpatialDatabase) -> None:
    run(db, "psycopg", "CREATE TABLE counters (id int PRIMARY KEY, n int)")
    try:
        run(db, "psycopg", "INSERT INTO counters VALUES (1, 0)")
        conflicting = db.transaction(isolation="SERIALIZABLE")
        with pytest.raises(SerializationConflict) as info, conflicting as first:
            first.execute(text("SELECT n FROM counters WHERE id = 1")).scalar()
            with db.transaction(isolation="SERIALIZABLE") as second:
                second.execute(text("UPDATE counters SET n = n + 1 WHERE id = 1"))
            first.execute(text("UPDATE counters SET n = n + 1 WHERE id = 1"))
        assert info.value.transient and info.value.sqlstate == "40001"
    finally:
        run(db, "psycopg", "DROP TABLE counters")


def test_every_error_is_a_geosession_error() -> None:
    for cls in (AccessDenied, PoolExhausted, SRIDMismatch, QueryTimeout, PostGISNotInstalled):
        assert issubclass(cls, GeoSessionError)


PASSWORD = "p@ss:w/rd%#?&x"  # every character a URL gives a meaning
PASSWORD_ROLE = "geosession_password_role"


@pytest.fixture
def password_role(server_url: str, database_url: str) -> Iterator[dict[str, Any]]:
    """A role that must give its password (scram-sha-256; the embedded cluster trusts
    local connections), and the parts of a URL to reach the test database as it."""
    superuser = make_url(server_url).set(drivername="postgresql")
    with psycopg.connect(superuser.render_as_string(False), autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {PASSWORD_ROLE}")
        admin.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")
        (hba_file,) = admin.execute("SHOW hba_file").fetchone()  # type: ignore[misc]
        with open(hba_file) as handle:
            original = handle.read()
        rule = f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
        with open(hba_file, "w") as handle:
            handle.write(rule + original)  # first: the trust lines below would match too
        admin.execute("SELECT pg_reload_conf()")
        url = make_url(database_url)
        parts = {"host": "127.0.0.1", "port": url.port, "database": url.database}
        try:
            trusting = f"host=127.0.0.1 port={url.port} dbname={url.database} user={PASSWORD_ROLE}"
            deadline = time.monotonic() + 10
            while True:  # the postmaster reloads pg_hba.conf a moment after the signal
                try:
                    psycopg.connect(trusting, password="wrong").close()
                except psycopg.OperationalError:
                    break
                assert time.monotonic() < deadline, "pg_hba.conf was not reloaded"
                time.sleep(0.05)
            yield parts
        finally:
            with open(hba_file, "w") as handle:
                handle.write(original)
            admin.execute("SELECT pg_reload_conf()")
            admin.execute(f"DROP ROLE IF EXISTS {PASSWORD_ROLE}")


def test_a_password_of_url_characters_connects_and_a_wrong_one_is_never_shown(
    make_db: Callable[..., SpatialDatabase], password_role: dict[str, Any]
) -> None:
    """Given as password=, or percent-encoded in the URL, on every driver; a password whose
    '@' is not encoded is refused before its tail can pass for the host name and be shown."""
    where = f"127.0.0.1:{password_role['port']}/{password_role['database']}"
    quoted = f"postgresql://{PASSWORD_ROLE}:{quote(PASSWORD, safe='')}@{where}"
    for driver in DRIVERS:
        by_parts = database_for(
            make_db, driver, user=PASSWORD_ROLE, password=PASSWORD, **password_role
        )
        by_url = database_for(make_db, driver, url=quoted)
        for db in (by_parts, by_url):
            assert run(db, driver, "SELECT current_user") == [(PASSWORD_ROLE,)]
        wrong = database_for(
            make_db, driver, user=PASSWORD_ROLE, password="Wr0ng-s3cret", **password_role
        )
        with pytest.raises(AccessDenied, match="password authentication failed") as info:
            run(wrong, driver, "SELECT 1")
        assert "Check the user name and the password" in str(info.value)
        for shown in (str(info.value), repr(info.value), repr(wrong), repr(wrong.settings)):
            assert "Wr0ng" not in shown
    with pytest.raises(ConfigurationError, match="more than one '@'.*%40") as refused:
        make_db(f"postgresql://{PASSWORD_ROLE}:Secr@tPart@{where}")  # host 'tPart@127...'
    assert "tPart" not in str(refused.value)
    for cut in ("Secr@tPa/rt", "Secr@tPa?rt", "@tPa/"):  # the rest went to the database
        with pytest.raises(ConfigurationError, match="more than one '@'") as refused:  # or query
            make_db(f"postgresql://{PASSWORD_ROLE}:{cut}@{where}", replica_urls=[])
        assert "tPa" not in str(refused.value)
        with pytest.raises(ConfigurationError, match=r"replica_urls\[0\] has more than one"):
            make_db(replica_urls=[f"postgresql://{PASSWORD_ROLE}:{cut}@{where}"])
    with pytest.raises(ConfigurationError, match="not a valid URL") as invalid:
        make_db(f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@{where}")
    assert "w/rd" not in str(invalid.value) and "ss:w" not in str(invalid.value)


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_error_shows_where_the_server_points_in_the_statement(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    """The server's position, shown as the statement from there, on every driver; not for
    a statement with parameters, whose text the server sees otherwise."""
    db = database_for(make_db, driver)
    with pytest.raises(DatabaseError) as info:
        run(db, driver, "SELECT 1 AS one, 2 AS two FORM pg_class")
    assert "at character 27: 'FORM pg_class'" in str(info.value)
    assert "Fix the SQL where the server points" in str(info.value)
    with pytest.raises(DatabaseError) as info:
        run(db, driver, "SELECT :n AS n FORM pg_class", {"n": 1})
    assert "at character" not in str(info.value)
    with pytest.raises(DatabaseError) as info:  # was an IndexError: no text after the end
        run(db, driver, "SELECT relname FROM pg_class WHERE")
    assert "syntax error at end of input" in str(info.value)
    assert "at the end of 'SELECT relname FROM pg_class WHERE'" in str(info.value)


def test_a_streams_error_points_into_the_sql_typed_not_the_query_around_it(
    db: SpatialDatabase,
) -> None:
    """db.stream and the export wrap the caller's SQL in queries of their own: the
    server's position counts from the caller's first character, and an error just past its
    end (at the wrapper's ")") is said to be at its end."""
    with pytest.raises(DatabaseError) as misspelt:
        list(db.stream("SELECT 1 AS id, ST_Point(0, 0) AS geom FORM pg_class"))
    assert "at character 40: 'FORM pg_class'" in str(misspelt.value)
    cut_short = "SELECT relname, ST_Point(0, 0) AS geom FROM pg_class WHERE relname LIKE 'pg%' AND"
    with pytest.raises(DatabaseError) as ended:
        list(db.stream(cut_short))
    assert "at the end of \"...OM pg_class WHERE relname LIKE 'pg%' AND\"" in str(ended.value)
    assert str(ended.value).startswith("syntax error at end of input (")  # not near ")"


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_parameter_the_driver_cannot_send_is_named_with_the_fix(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    db = database_for(make_db, driver)
    sql = "SELECT ST_Area(CAST(:value AS geometry))"
    with pytest.raises(DatabaseError) as info:
        run(db, driver, sql, {"value": shapely.box(0, 0, 1, 1)})
    assert "A shapely Polygon cannot be sent as a query parameter" in str(info.value)
    assert "to_element(shape, srid=...)" in str(info.value)
    assert info.value.__cause__ is not None and not info.value.transient
    unsent = "A Python dict cannot be sent.*type_=JSONB|dict parameter was sent as hstore.*JSONB"
    with pytest.raises(DatabaseError, match=unsent):  # the latter where hstore is installed
        run(db, driver, "SELECT CAST(:value AS text)", {"value": {"a": 1}})
    element = to_element(shapely.box(0, 0, 2, 1), 4326)
    with pytest.raises(DatabaseError, match="WKBElement cannot be sent.*element.desc"):
        run(db, driver, sql, {"value": element})
    assert run(db, driver, sql, {"value": element.desc}) == [(2.0,)]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_statement_after_a_failed_one_says_the_transaction_is_aborted_and_why(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    """It said "see the server's message above" (there is none) and named the table of
    the statement refused, which did nothing wrong."""
    db = database_for(make_db, driver)
    failing, next_one = text("SELECT 1 / 0"), text("SELECT count(*) FROM pg_class")

    def sync() -> None:
        with db.transaction() as s:
            with contextlib.suppress(DatabaseError):
                s.execute(failing)
            s.execute(next_one)

    async def in_async() -> None:
        try:
            async with db.async_transaction() as s:
                with contextlib.suppress(DatabaseError):
                    await s.execute(failing)
                await s.execute(next_one)
        finally:
            await db.adispose()

    with pytest.raises(DatabaseError) as aborted:
        asyncio.run(in_async()) if driver == "asyncpg" else sync()
    message = str(aborted.value)
    assert "An earlier statement of this transaction failed" in message
    assert "s.begin_nested()" in message and "table pg_class" not in message
    assert db.pool_stats(async_pool=driver == "asyncpg").checked_out == 0


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_missing_sequence_a_default_draws_from_is_named_as_a_sequence(
    make_db: Callable[..., SpatialDatabase], driver: str, admin: psycopg.Connection[Any]
) -> None:
    """A Sequence default whose CREATE SEQUENCE never ran was blamed on the table ("check
    the table's name"), which is there."""
    from sqlalchemy import Sequence

    admin.execute("DROP TABLE IF EXISTS drawn_ids; CREATE TABLE drawn_ids (id int PRIMARY KEY)")
    drawn = Table(
        "drawn_ids", MetaData(), Column("id", Integer, Sequence("ids_never_made"), primary_key=True)
    )
    db = database_for(make_db, driver)

    def sync() -> None:
        with db.transaction() as s:
            s.execute(insert(drawn).values())

    async def in_async() -> None:
        try:
            async with db.async_transaction() as s:
                await s.execute(insert(drawn).values())
        finally:
            await db.adispose()

    for attempt in (sync, lambda: run(db, driver, "SELECT nextval('ids_never_made')")):
        with pytest.raises(DatabaseError) as missing:
            asyncio.run(in_async()) if driver == "asyncpg" and attempt is sync else attempt()
        message = str(missing.value)
        assert "The sequence ids_never_made, which nextval() draws from" in message
        assert "CREATE SEQUENCE ids_never_made" in message and "table's name" not in message
    with pytest.raises(DatabaseError, match="Check the table's name and schema"):
        run(db, driver, "SELECT * FROM no_such_table_here")
    assert db.pool_stats(async_pool=driver == "asyncpg").checked_out == 0
    admin.execute("DROP TABLE drawn_ids")
