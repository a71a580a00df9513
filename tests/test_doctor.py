"""`geosession doctor` and db.doctor() on the real server."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from geosession import SpatialDatabase
from geosession.cli import app
from tests.faults.helpers import failed_concurrent_index, wait_until

MakeDb = Callable[..., SpatialDatabase]


@pytest.fixture
def schema(admin: psycopg.Connection[Any]) -> Iterator[str]:
    """A schema of its own, so the checks see only this test's tables."""
    name = f"doctor_{os.getpid()}"
    admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    admin.execute(f"CREATE SCHEMA {name}")
    yield name
    admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _places(admin: psycopg.Connection[Any], schema: str) -> None:
    admin.execute(f"CREATE TABLE {schema}.places (id int PRIMARY KEY, geom geometry(Point, 4326))")
    admin.execute(
        f"INSERT INTO {schema}.places SELECT i, ST_SetSRID(ST_MakePoint(i, i), 4326) "
        "FROM generate_series(1, 100) i"
    )
    admin.execute(f"ANALYZE {schema}.places")


def _statuses(report: Any) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


@pytest.fixture
def postgis_apart(server_url: str) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    """A database with PostGIS in a schema of its own, and a connection to it."""
    name = "geosession_doctor_postgis"
    admin_url = make_url(server_url).set(drivername="postgresql")
    url = make_url(server_url).set(drivername="postgresql", database=name)
    with psycopg.connect(admin_url.render_as_string(hide_password=False), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as own:
            own.execute("CREATE SCHEMA gis")
            own.execute("CREATE EXTENSION postgis SCHEMA gis")
            yield url.render_as_string(hide_password=False), own
        c.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_doctor_warns_of_postgis_outside_the_search_path_and_behind_its_package(
    make_db: MakeDb, postgis_apart: tuple[str, psycopg.Connection[Any]]
) -> None:
    """After the server's PostGIS package is upgraded, a database keeps the old functions
    until ALTER EXTENSION ... UPDATE; PostGIS's own upgrade trick ('<version>next') makes
    that state for real. Each warning's fix, run, clears it."""
    url, own = postgis_apart

    def postgis_check() -> Any:
        return next(c for c in make_db(url=url).doctor().checks if c.name == "postgis version")

    apart = postgis_check()
    assert apart.status == "warn"
    assert "in schema gis, which is not on this session's search_path" in apart.detail
    own.execute(apart.fix.split(" (or ", 1)[0])
    assert postgis_check().status == "ok"

    (packaged,) = own.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'postgis'"
    ).fetchone()
    own.execute(f"ALTER EXTENSION postgis UPDATE TO '{packaged}next'")
    behind = postgis_check()
    assert behind.status == "warn"
    assert behind.detail == (
        f"{packaged}next in this database, while the server's PostGIS package is {packaged}: "
        f"the database keeps the functions of {packaged}next until it is updated"
    )
    assert behind.fix.startswith("as the database owner or a superuser: ALTER EXTENSION")
    own.execute("ALTER EXTENSION postgis UPDATE")
    assert postgis_check().status == "ok"


def test_doctor_fails_naming_an_unindexed_geometry_table_and_passes_once_indexed(
    db: SpatialDatabase, admin: psycopg.Connection[Any], schema: str
) -> None:
    _places(admin, schema)
    report = db.doctor(schemas=[schema])
    assert not report.ok
    assert [check.name for check in report.failed] == ["spatial indexes"]
    failed = report.failed[0]
    assert failed.detail == f"no spatial index on {schema}.places.geom"
    assert failed.fix == f"CREATE INDEX ON {schema}.places USING gist (geom);"

    admin.execute(failed.fix)
    fixed = db.doctor(schemas=[schema])
    assert fixed.ok, str(fixed)
    assert _statuses(fixed)["spatial indexes"] == "ok"
    assert {"connection", "postgresql version", "postgis version", "pool size"} <= {
        name for name, status in _statuses(fixed).items() if status == "ok"
    }


def test_doctor_fails_for_a_schema_that_does_not_exist(
    db: SpatialDatabase, admin: psycopg.Connection[Any], schema: str
) -> None:
    """Every table check passed a misspelt schema (no table in it): "all checks pass"."""
    _places(admin, schema)
    admin.execute(f"CREATE INDEX ON {schema}.places USING gist (geom)")
    report = db.doctor(schemas=[schema, "no_such_schema"])
    assert [check.name for check in report.failed] == ["schemas"]
    assert report.failed[0].detail.startswith(
        "no schema no_such_schema in this database, so none of its tables was checked"
    )
    assert schema in report.failed[0].detail  # among the schemas it has
    assert _statuses(db.doctor(schemas=[schema]))["schemas"] == "ok"


def test_doctor_sees_geometry_columns_whose_type_is_a_domain(
    db: SpatialDatabase, admin: psycopg.Connection[Any], schema: str
) -> None:
    """A column of a domain over geometry (CREATE DOMAIN ... AS geometry(Point, 4326)
    CHECK (...)), or over such a domain, or over geography, is a geometry column to index."""
    admin.execute(f"CREATE DOMAIN {schema}.point AS geometry(Point, 4326) NOT NULL")
    admin.execute(f"CREATE DOMAIN {schema}.valid_point AS {schema}.point CHECK (ST_IsValid(VALUE))")
    admin.execute(f"CREATE DOMAIN {schema}.place AS geography(Point, 4326)")
    admin.execute(
        f"CREATE TABLE {schema}.sites (id int PRIMARY KEY, a {schema}.point, "
        f"b {schema}.valid_point, c {schema}.place)"
    )
    failed = db.doctor(schemas=[schema]).failed
    assert [check.name for check in failed] == ["spatial indexes"]
    assert failed[0].detail == (
        f"no spatial index on {schema}.sites.a, {schema}.sites.b, {schema}.sites.c"
    )
    admin.execute(failed[0].fix or "")
    assert db.doctor(schemas=[schema]).ok


def test_doctor_fails_on_a_spatial_index_a_failed_concurrent_build_left_invalid(
    db: SpatialDatabase, admin: psycopg.Connection[Any], schema: str, database_url: str
) -> None:
    """The planner never uses an INVALID index: the column counts as unindexed, and the
    fix is the REINDEX that makes the index valid."""
    _places(admin, schema)
    failed_concurrent_index(admin, database_url, f"{schema}.places", "places_gix")
    failed = db.doctor(schemas=[schema]).failed
    assert [check.name for check in failed] == ["spatial indexes"]
    assert failed[0].detail.startswith(f"an INVALID spatial index on {schema}.places.geom (a ")
    assert failed[0].fix == f"REINDEX INDEX CONCURRENTLY {schema}.places_gix;"
    admin.execute(failed[0].fix)
    assert db.doctor(schemas=[schema]).ok


def test_doctor_warns_of_a_spatial_index_still_being_built_concurrently(
    db: SpatialDatabase, admin: psycopg.Connection[Any], schema: str, database_url: str
) -> None:
    """An index a running CREATE INDEX CONCURRENTLY builds is not valid yet either: a
    warning that it is on its way, not a failure with a fix that would undo it."""
    _places(admin, schema)
    libpq = make_url(database_url).set(drivername="postgresql")
    url = libpq.render_as_string(hide_password=False)
    with psycopg.connect(url) as writer, psycopg.connect(url, autocommit=True) as builder:
        writer.execute(f"LOCK TABLE {schema}.places IN ROW EXCLUSIVE MODE")  # the build waits
        build = threading.Thread(
            target=builder.execute,
            args=(f"CREATE INDEX CONCURRENTLY places_gix ON {schema}.places USING gist (geom)",),
        )
        build.start()
        try:
            wait_until(lambda: _statuses(db.doctor(schemas=[schema]))["spatial indexes"] == "warn")
            check = next(
                c for c in db.doctor(schemas=[schema]).checks if c.name == "spatial indexes"
            )
            assert check.detail == (
                f"a spatial index being built (CREATE INDEX CONCURRENTLY) on "
                f"{schema}.places.geom: the planner uses it once it is done"
            )
            assert check.fix == ""
        finally:
            writer.rollback()
            build.join()
    assert db.doctor(schemas=[schema]).ok


def test_doctor_fails_on_a_sequence_that_ids_loaded_by_another_tool_overtook(
    db: SpatialDatabase, admin: psycopg.Connection[Any], schema: str
) -> None:
    """Rows written with their own ids (ogr2ogr -preserve_fid, a data-only restore) leave
    the serial or identity sequence behind: the next INSERT taking the default would fail
    on a duplicate key. The fix is the setval that moves it past them."""
    admin.execute(f"CREATE TABLE {schema}.fields (id serial PRIMARY KEY, geom geometry(Point))")
    admin.execute(
        f"CREATE TABLE {schema}.plots (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY)"
    )
    admin.execute(f"CREATE INDEX ON {schema}.fields USING gist (geom)")
    admin.execute(f"INSERT INTO {schema}.fields (id) SELECT generate_series(1, 40)")
    admin.execute(f"INSERT INTO {schema}.plots VALUES (DEFAULT), (DEFAULT), (7)")
    admin.execute(f"ANALYZE {schema}.fields")
    failed = db.doctor(schemas=[schema]).failed
    assert [check.name for check in failed] == ["sequences"]
    assert failed[0].detail == (
        f"{schema}.fields.id would get 1 from {schema}.fields_id_seq, and holds up to 40; "
        f"{schema}.plots.id would get 3 from {schema}.plots_id_seq, and holds up to 7: the "
        "next INSERT taking the default fails with a duplicate key"
    )
    admin.execute(failed[0].fix)
    assert db.doctor(schemas=[schema]).ok
    admin.execute(f"INSERT INTO {schema}.fields DEFAULT VALUES")  # 41: no collision


def test_doctor_command_exits_non_zero_until_the_index_exists(
    database_url: str, admin: psycopg.Connection[Any], schema: str
) -> None:
    _places(admin, schema)
    runner = CliRunner()
    env = {"GEOSESSION_DATABASE_URL": database_url, "COLUMNS": "250"}
    failing = runner.invoke(app, ["doctor", "--json", "--schema", schema], env=env)
    assert failing.exit_code == 1, failing.output
    parsed = json.loads(failing.output)
    assert parsed["ok"] is False
    check = next(c for c in parsed["checks"] if c["name"] == "spatial indexes")
    assert check["status"] == "fail" and f"{schema}.places.geom" in check["detail"]

    admin.execute(f"CREATE INDEX ON {schema}.places USING gist (geom)")
    passing = runner.invoke(app, ["doctor", "--schema", schema], env=env)
    assert passing.exit_code == 0, passing.output
    assert "all checks pass" in passing.output and "spatial indexes" in passing.output
    help_text = runner.invoke(app, ["doctor", "--help"], env=env).output
    assert "exit 1 if any fails" in help_text and "--json" in help_text


def test_doctor_of_many_tables_names_ten_and_prints_each_fix_on_a_line(
    database_url: str, admin: psycopg.Connection[Any], schema: str
) -> None:
    """A database of many unindexed tables: the result names ten and counts the rest, and
    the CLI prints the statements below the table, one per line, each runnable as it is."""
    for i in range(12):
        admin.execute(f"CREATE TABLE {schema}.t{i:02} (geom geometry(Point, 4326))")
    runner = CliRunner()
    env = {"GEOSESSION_DATABASE_URL": database_url, "COLUMNS": "400"}
    failing = runner.invoke(app, ["doctor", "--schema", schema], env=env)
    assert failing.exit_code == 1, failing.output
    output = failing.output
    assert "and 2 more" in output and "The 12 statements below" in output
    listed = output.split("The fixes, a statement per line:\n", 1)[1].splitlines()
    assert listed[0] == "-- spatial indexes"
    statements = listed[1:13]
    assert statements == [f"CREATE INDEX ON {schema}.t{i:02} USING gist (geom);" for i in range(12)]
    parsed = json.loads(
        runner.invoke(app, ["doctor", "--json", "--schema", schema], env=env).output
    )
    check = next(c for c in parsed["checks"] if c["name"] == "spatial indexes")
    assert check["statements"] == statements and check["fix"] == " ".join(statements)
    assert check["detail"].endswith(f"{schema}.t09.geom and 2 more")
    narrow = runner.invoke(app, ["doctor", "--schema", schema], env={**env, "COLUMNS": "80"})
    lines = narrow.output.splitlines()
    assert max(map(len, lines)) <= 80 and "┃ fix" not in narrow.output  # under the result
    assert any("│ idle_in_transaction_session_timeout │" in line for line in lines)  # whole
    assert any("fix: The 12 statements below" in line for line in lines), narrow.output
    for statement in statements:
        admin.execute(statement)
    passing = runner.invoke(app, ["doctor", "--schema", schema], env=env)
    assert passing.exit_code == 0 and "The fixes" not in passing.output


def test_doctor_flags_missing_timeouts_statistics_and_srid_zero(
    make_db: MakeDb, admin: psycopg.Connection[Any], schema: str
) -> None:
    db = make_db(statement_timeout="0", idle_in_transaction_session_timeout="0")
    for table in ("Raw Shapes", "few"):  # autovacuum_enabled: it would analyze "Raw Shapes"
        admin.execute(
            f'CREATE TABLE {schema}."{table}" (id int, shape geometry) '
            "WITH (autovacuum_enabled = false)"
        )
        admin.execute(f'CREATE INDEX ON {schema}."{table}" USING gist (shape)')
    points = "SELECT i, ST_MakePoint(i, i) FROM generate_series(1, {}) i"
    admin.execute(f'INSERT INTO {schema}."Raw Shapes" ' + points.format(51))
    admin.execute(f"INSERT INTO {schema}.few " + points.format(50))
    _wait_for_live_rows(admin, schema, "Raw Shapes")
    _wait_for_live_rows(admin, schema, "few")
    report = db.doctor(schemas=[schema])
    checks = {check.name: check for check in report.checks}
    assert checks["statement_timeout"].status == "fail"
    assert "statement_timeout = '30s'" in checks["statement_timeout"].fix
    assert checks["idle_in_transaction_session_timeout"].status == "fail"
    assert checks["statistics"].status == "fail"
    # 50 rows (autovacuum_analyze_threshold) or fewer: autovacuum never analyzes them
    assert checks["statistics"].fix == f'ANALYZE {schema}."Raw Shapes";'
    assert checks["srid"].status == "warn"
    assert f"{schema}.Raw Shapes.shape" in checks["srid"].detail
    assert checks["spatial indexes"].status == "ok"


def test_statistics_kept_when_the_server_forgot_when_it_analyzed(
    db: SpatialDatabase, admin: psycopg.Connection[Any], schema: str
) -> None:
    """Crash recovery, pg_stat_reset and a standby forget the last ANALYZE's time, not the
    statistics it wrote: a table with statistics is not "never analyzed"."""
    admin.execute(
        f"CREATE TABLE {schema}.forgotten (id int, shape geometry(Point, 4326)) "
        "WITH (autovacuum_enabled = false)"
    )
    admin.execute(
        f"INSERT INTO {schema}.forgotten SELECT i, ST_MakePoint(i, i) "
        "FROM generate_series(1, 500) i"
    )
    admin.execute(f"ANALYZE {schema}.forgotten")
    admin.execute(f"SELECT pg_stat_reset_single_table_counters('{schema}.forgotten'::regclass)")
    _wait_for_live_rows(admin, schema, "forgotten", live=False)
    checks = {check.name: check for check in db.doctor(schemas=[schema]).checks}
    assert checks["statistics"].status == "ok", checks["statistics"].detail
    report = db.explain(f"SELECT id FROM {schema}.forgotten WHERE id = 3")
    assert not [line for line in report.advice if "never analyzed" in line]


def _wait_for_live_rows(
    admin: psycopg.Connection[Any], schema: str, table: str, *, live: bool = True
) -> None:
    """Table statistics reach the shared stats a moment after the insert commits (or the
    reset, with ``live=False``)."""
    deadline = time.monotonic() + 10
    while (
        admin.execute(
            "SELECT n_live_tup > 0 FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s",
            (schema, table),
        ).fetchone()[0]
        is not live
    ):  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_doctor_warns_of_metres_stored_as_degrees_by_the_statistics(
    db: SpatialDatabase, admin: psycopg.Connection[Any], schema: str
) -> None:
    """UTM coordinates in a geometry(Point, 4326) column: PostGIS stored them without a
    word. The last ANALYZE's extent shows latitudes of millions; the fix relabels them."""
    admin.execute(f"CREATE TABLE {schema}.wells (id int, geom geometry(Point, 4326))")
    admin.execute(
        f"INSERT INTO {schema}.wells SELECT i, ST_SetSRID(ST_MakePoint(500000 + i, "
        "5000000 + i), 4326) FROM generate_series(1, 500) i"
    )

    def check() -> Any:
        report = db.doctor(schemas=[schema])
        return next(c for c in report.checks if c.name == "coordinates in degrees")

    assert check().status == "ok"  # no statistics yet: nothing to read without a scan
    admin.execute(f"ANALYZE {schema}.wells")
    found = check()
    assert found.status == "warn"
    assert f"{schema}.wells.geom (SRID 4326: latitudes 4,999,99" in found.detail  # float4
    assert found.statements == (f"SELECT UpdateGeometrySRID('{schema}', 'wells', 'geom', <srid>);",)
    admin.execute(found.statements[0].replace("<srid>", "32631"))  # UTM zone 31N
    admin.execute(f"ANALYZE {schema}.wells")
    assert check().status == "ok"


def test_doctor_names_sessions_idle_in_transaction(db: SpatialDatabase, database_url: str) -> None:
    conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(conninfo, application_name="forgetful-worker") as other:
        other.execute("SELECT 1")
        try:
            time.sleep(1.2)
            check = next(c for c in db.doctor().checks if c.name == "idle in transaction")
            assert check.status == "fail"
            assert f"pid {other.info.backend_pid} (forgetful-worker)" in check.detail
            assert f"pg_terminate_backend({other.info.backend_pid})" in check.fix
        finally:
            other.rollback()


def test_doctor_reports_an_unreachable_server_and_skips_the_rest(make_db: MakeDb) -> None:
    db = make_db("postgresql+psycopg://nobody@127.0.0.1:1/nowhere", connect_timeout=2)
    report = db.doctor()
    assert not report.ok
    assert report.checks[0].name == "connection" and report.checks[0].status == "fail"
    assert "127.0.0.1:1" in report.checks[0].detail
    assert {check.status for check in report.checks[1:]} == {"skip"}


def test_doctor_warns_of_indexes_a_killed_ingest_left_deferred(
    db: SpatialDatabase, admin: psycopg.Connection[Any], schema: str
) -> None:
    """What a load into an empty table leaves when it is killed before the rebuild."""
    from geosession.ingest import ledger
    from geosession.ingest.target import resolve_target

    _places(admin, schema)
    admin.execute(f"CREATE INDEX places_geom_idx ON {schema}.places USING gist (geom)")
    assert _statuses(db.doctor(schemas=[schema]))["deferred indexes"] == "ok"
    with admin.transaction(), admin.cursor() as cursor:
        ledger.ensure_ledger(cursor)
        target = resolve_target(cursor, f"{schema}.places")
        assert ledger.defer_indexes(cursor, target, "killed") == ["places_geom_idx"]
    try:
        check = next(c for c in db.doctor(schemas=[schema]).checks if c.name == "deferred indexes")
        assert check.status == "warn"
        assert f"places_geom_idx on {schema}.places" in check.detail
        admin.execute(check.fix.split("or: ", 1)[1])  # the recorded definition, then forget it
        fixed = db.doctor(schemas=[schema])
        assert _statuses(fixed)["deferred indexes"] == "ok" and fixed.ok, str(fixed)
    finally:
        admin.execute(f"DELETE FROM {ledger.DEFERRED} WHERE ingest_id = 'killed'")


def test_doctor_warns_that_jit_compiles_spatial_queries_until_it_is_off(make_db: MakeDb) -> None:
    jit_on = make_db(server_settings={"jit": "on"})  # the embedded cluster runs with it off
    with jit_on.session() as s:  # Debian ships LLVM: available once jit is on
        assert s.execute(text("SELECT pg_jit_available()")).scalar() is True
    check = next(c for c in jit_on.doctor().checks if c.name == "jit")
    assert check.status == "warn" and "jit_above_cost 100000" in check.detail
    assert 'GEOSESSION_SERVER_SETTINGS=\'{"jit": "off"}\'' in check.fix
    assert "SET jit = off;" in check.fix
    off = next(
        c for c in make_db(server_settings={"jit": "off"}).doctor().checks if c.name == "jit"
    )
    assert (off.status, off.detail) == ("ok", "JIT compilation is off")


def test_doctor_warns_of_a_role_that_may_not_create_temporary_tables(
    make_db: MakeDb, admin: psycopg.Connection[Any], database_url: str
) -> None:
    """The ingest's staging tables are temporary: without the TEMPORARY privilege its
    on_conflict loads fail, which the doctor says with the GRANT that fixes it."""
    database = admin.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    admin.execute("DROP ROLE IF EXISTS geosession_no_temp")
    admin.execute("CREATE ROLE geosession_no_temp LOGIN")
    admin.execute(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
    try:
        url = make_url(database_url).set(username="geosession_no_temp")
        check = next(c for c in make_db(url).doctor().checks if c.name == "temporary tables")
        assert check.status == "warn" and "on_conflict='ignore' or 'update'" in check.detail
        assert check.fix == f"GRANT TEMPORARY ON DATABASE {database} TO geosession_no_temp;"
        admin.execute(check.fix)
        again = next(c for c in make_db(url).doctor().checks if c.name == "temporary tables")
        assert (again.status, again.detail) == (
            "ok",
            "role geosession_no_temp may create temporary tables",
        )
    finally:
        admin.execute(f'GRANT TEMPORARY ON DATABASE "{database}" TO PUBLIC')
        admin.execute(f'REVOKE ALL ON DATABASE "{database}" FROM geosession_no_temp')
        admin.execute("DROP ROLE geosession_no_temp")


def test_tables_the_role_may_not_read_are_named_not_passed_as_checked(
    make_db: MakeDb, admin: psycopg.Connection[Any], database_url: str, schema: str
) -> None:
    """geometry_columns, pg_stats and the sequences' max() hide such tables from the role:
    the checks said ✔ for a sequence behind its ids and latitudes beyond ±90."""
    admin.execute(f"CREATE TABLE {schema}.seqs (id serial PRIMARY KEY, geom geometry(Point, 4326))")
    admin.execute(f"INSERT INTO {schema}.seqs (id) SELECT generate_series(1, 100)")
    admin.execute(f"CREATE TABLE {schema}.swapped (id int PRIMARY KEY, geom geometry(Point, 4326))")
    admin.execute(
        f"INSERT INTO {schema}.swapped SELECT i, ST_SetSRID(ST_MakePoint(10, -74 - i), 4326) "
        "FROM generate_series(1, 100) i"
    )
    for table in ("seqs", "swapped"):
        admin.execute(f"CREATE INDEX ON {schema}.{table} USING gist (geom)")
        admin.execute(f"ANALYZE {schema}.{table}")
    admin.execute("DROP ROLE IF EXISTS geosession_doctor_reader")
    admin.execute("CREATE ROLE geosession_doctor_reader LOGIN")
    admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO geosession_doctor_reader")
    try:
        url = make_url(database_url).set(username="geosession_doctor_reader")
        checks = {c.name: c for c in make_db(url).doctor(schemas=[schema]).checks}
        for name in ("sequences", "srid", "coordinates in degrees"):
            assert checks[name].status == "warn", checks[name]
            assert f"may not read them: {schema}.seqs" in checks[name].detail
        grant = f"GRANT SELECT ON {schema}.seqs, {schema}.swapped TO geosession_doctor_reader;"
        assert checks["srid"].fix.endswith(grant)
        assert checks["deferred indexes"].status in ("ok", "warn")  # never a failure
        admin.execute(grant)
        admin.execute(
            f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO geosession_doctor_reader"
        )
        checks = {c.name: c for c in make_db(url).doctor(schemas=[schema]).checks}
        assert (
            checks["sequences"].status == "fail"
            and f"{schema}.seqs.id" in checks["sequences"].detail
        )
        assert f"{schema}.swapped.geom" in checks["coordinates in degrees"].detail
        assert checks["srid"].status == "ok"
    finally:
        admin.execute("DROP OWNED BY geosession_doctor_reader")
        admin.execute("DROP ROLE geosession_doctor_reader")
