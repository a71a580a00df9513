"""Server activity, lock waits and EXPLAIN analysis, on the real server."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import shapely
from geoalchemy2 import Geometry, WKTElement
from geoalchemy2.shape import from_shape
from rich.console import Console
from rich.text import Text
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from geosession import (
    ConfigurationError,
    DatabaseError,
    QueryTimeout,
    SpatialDatabase,
    SRIDMismatch,
)
from geosession.cli import app
from geosession.diagnose.console import watch
from tests.faults.helpers import failed_concurrent_index

SUFFIX = os.getpid()


def _libpq(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


def _wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return result


@pytest.fixture
def points(admin: psycopg.Connection[Any]) -> Iterator[Table]:
    """A table of 20,000 analyzed points in [0, 1]², without a spatial index."""
    name = f"diag_points_{SUFFIX}"
    admin.execute(f"DROP TABLE IF EXISTS {name}")
    admin.execute(
        f"CREATE TABLE {name} (id int PRIMARY KEY, name text, geom geometry(Point, 4326))"
    )
    admin.execute(
        f"INSERT INTO {name} SELECT i, 'p' || i, ST_SetSRID(ST_MakePoint("
        "(i % 200) / 200.0, (i / 200) / 100.0), 4326) FROM generate_series(1, 20000) i"
    )
    admin.execute(f"ANALYZE {name}")
    yield Table(
        name,
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String),
        Column("geom", Geometry("POINT", 4326, spatial_index=False)),
    )
    admin.execute(f"DROP TABLE IF EXISTS {name}")


def _index_advice(report: Any) -> list[str]:
    """The advice but JIT's: a sequential scan of the 20,000 points costs enough for JIT."""
    return [line for line in report.advice if "JIT" not in line]


def _bbox() -> Any:
    return func.ST_MakeEnvelope(0.1, 0.1, 0.12, 0.12, 4326)


# -- activity and locks -------------------------------------------------------------------


def test_an_idle_in_transaction_session_of_another_client_is_reported(
    db: SpatialDatabase, database_url: str
) -> None:
    with psycopg.connect(_libpq(database_url), application_name="other-client") as other:
        other.execute("SELECT 1")  # opens a transaction and leaves it open
        pid = other.info.backend_pid
        try:
            sessions = {s.pid: s for s in db.activity()}
            assert pid in sessions
            found = sessions[pid]
            assert found.application == "other-client"
            assert found.idle_in_transaction and found.state == "idle in transaction"
            assert found.transaction_age is not None and found.transaction_age >= 0
            assert found.query == "SELECT 1" and not found.long_running
            assert found.blocked_by == ()
            assert all(s.database == found.database for s in sessions.values())
        finally:
            other.rollback()


@pytest.fixture
def watcher(admin: psycopg.Connection[Any], database_url: str) -> Iterator[str]:
    """The URL of a role that may log in and nothing more (no pg_read_all_stats)."""
    admin.execute("DROP ROLE IF EXISTS geosession_watcher")
    admin.execute("CREATE ROLE geosession_watcher LOGIN")
    yield make_url(database_url).set(username="geosession_watcher").render_as_string(False)
    admin.execute("DROP ROLE geosession_watcher")


def test_sessions_another_role_may_not_see_are_listed_as_hidden_and_doctor_says_so(
    make_db: Callable[..., SpatialDatabase], database_url: str, watcher: str
) -> None:
    looking = make_db(watcher, pool_size=1)
    runner = CliRunner()
    with psycopg.connect(_libpq(database_url), application_name="out-of-sight") as other:
        other.execute("SELECT 1")  # idle in transaction, as postgres
        try:
            found = next(s for s in looking.activity() if s.pid == other.info.backend_pid)
            assert found.hidden and found.state is None and found.query == ""
            assert found.application == "out-of-sight" and not found.idle_in_transaction
            time.sleep(1.2)
            checks = {c.name: c for c in looking.doctor().checks}
            idle = checks["idle in transaction"]
            assert idle.status == "warn" and "session(s) of other roles hide" in idle.detail
            assert "GRANT pg_read_all_stats TO geosession_watcher" in idle.fix
            assert checks["long-running queries"].status == "warn"
            env = {"GEOSESSION_DATABASE_URL": watcher, "COLUMNS": "250"}
            shown = runner.invoke(app, ["activity"], env=env)
            assert shown.exit_code == 0, shown.output
            assert "hidden" in shown.output
            assert "hide their state and query from geosession_watcher" in shown.output
        finally:
            other.rollback()


@contextlib.contextmanager
def lock_wait(
    database_url: str, table: str
) -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any]]]:
    """A session ("holder") holding a row lock of ``table`` and another ("waiter")
    waiting for it, until the block ends."""
    update_row = f"UPDATE {table} SET name = 'x' WHERE id = 1"
    with (
        psycopg.connect(_libpq(database_url), application_name="holder") as holder,
        psycopg.connect(_libpq(database_url), application_name="waiter") as waiter,
    ):
        holder.execute(update_row)
        waiter.execute("SET lock_timeout = '20s'")
        thread = threading.Thread(target=lambda: waiter.execute(update_row))
        thread.start()
        try:
            yield holder, waiter
        finally:
            holder.rollback()
            thread.join()
            waiter.rollback()


def test_lock_waits_name_the_blocking_pid(
    db: SpatialDatabase, points: Table, database_url: str
) -> None:
    with lock_wait(database_url, points.name) as (holder, waiter):
        waits = _wait_for(db.locks)
        assert waits[0].pid == waiter.info.backend_pid
        assert waits[0].blocked_by == (holder.info.backend_pid,)
        assert waits[0].blockers[0].application == "holder"
        assert waits[0].blockers[0].state == "idle in transaction"
        assert waits[0].application == "waiter" and "UPDATE" in waits[0].query
        waiting = next(s for s in db.activity() if s.pid == waiter.info.backend_pid)
        assert waiting.blocked_by == (holder.info.backend_pid,)
        assert waiting.wait_event is not None and waiting.wait_event.startswith("Lock:")
        for columns in (80, 100, 250):  # the query readable, not folded to a few letters
            env = {"GEOSESSION_DATABASE_URL": database_url, "COLUMNS": str(columns)}
            shown = CliRunner().invoke(app, ["activity"], env=env)
            assert shown.exit_code == 0, shown.output
            lines = shown.output.splitlines()
            assert max(map(len, lines)) <= columns and "Lock waits (1)" in shown.output
            query_headers = [re.search(r"┃ query +┃$", line.rstrip()) for line in lines]
            widths = [len(found.group()) for found in query_headers if found]
            assert len(widths) == 2 and min(widths) > 20, shown.output
            assert any(f"{holder.info.backend_pid}" in line for line in lines)


def test_lock_waits_of_another_role_hide_their_state_and_query_in_words(
    make_db: Callable[..., SpatialDatabase], points: Table, database_url: str, watcher: str
) -> None:
    """A role without pg_read_all_stats saw the holder's state as "(None)" and both
    queries as "<insufficient privilege>", where its sessions table says hidden."""
    looking = make_db(watcher, pool_size=1)
    with lock_wait(database_url, points.name) as (holder, _):
        (wait,) = _wait_for(looking.locks)
        assert wait.hidden and wait.query == "" and wait.application == "waiter"
        (blocker,) = wait.blockers
        assert blocker.hidden and blocker.query == "" and blocker.state is None
        env = {"GEOSESSION_DATABASE_URL": watcher, "COLUMNS": "250"}
        shown = CliRunner().invoke(app, ["activity"], env=env)
        assert shown.exit_code == 0, shown.output
        assert f"{holder.info.backend_pid} holder (hidden)" in shown.output
        assert "None" not in shown.output and "insufficient" not in shown.output
        as_json = CliRunner().invoke(app, ["activity", "--json"], env=env)
        (listed,) = json.loads(as_json.stdout)["lock_waits"]
        assert listed["hidden"] and listed["blockers"][0]["hidden"]
        assert "insufficient" not in as_json.stdout
    assert not looking.locks()  # its own lock waits are not hidden from it: none now


def test_activity_command_prints_a_table_and_watches(database_url: str) -> None:
    runner = CliRunner()
    env = {"GEOSESSION_DATABASE_URL": database_url, "COLUMNS": "250"}
    with psycopg.connect(_libpq(database_url), application_name="cli-visible") as other:
        other.execute("SELECT 1")
        try:
            result = runner.invoke(app, ["activity"], env=env)
            assert result.exit_code == 0, result.output
            assert "Server sessions" in result.output and "cli-visible" in result.output
            watched = runner.invoke(
                app, ["activity", "--watch", "--count", "2", "--interval", "0.1", "--all"], env=env
            )
            assert watched.exit_code == 0, watched.output
            assert "cli-visible" in watched.output and "database" in watched.output
            headers = ("┃ user ", "┃ xact age ")
            assert all(header in result.output for header in headers)
            narrow = runner.invoke(app, ["activity"], env={**env, "COLUMNS": "80"})
            assert narrow.exit_code == 0, narrow.output  # room for the query on 80 columns
            assert not any(header in narrow.output for header in headers)
            assert "┃ query" in narrow.output
            as_json = runner.invoke(app, ["activity", "--json"], env=env)  # for scripts
            assert as_json.exit_code == 0, as_json.output
            snapshot = json.loads(as_json.stdout)
            (visible,) = [s for s in snapshot["sessions"] if s["application"] == "cli-visible"]
            assert visible["state"] == "idle in transaction" and visible["idle_in_transaction"]
            assert visible["pid"] == other.info.backend_pid and snapshot["lock_waits"] == []
            both = runner.invoke(app, ["activity", "--json", "--watch"], env=env)
            assert both.exit_code != 0 and "leave out --watch" in both.output
        finally:
            other.rollback()
    assert "--watch" in runner.invoke(app, ["activity", "--help"]).output


def test_flags_that_apply_only_with_another_are_refused_before_connecting() -> None:
    """--count without --watch, --statement-timeout without --analyze: usage errors, not
    accepted and ignored. The URL leads nowhere: nothing connects before the refusal."""
    env = {"GEOSESSION_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "COLUMNS": "200"}
    cases = {
        ("activity", "--count", "3"): "Invalid value for --count: it applies only with --watch",
        ("activity", "--interval", "1", "--count", "2"): "--interval / --count: they apply only",
        ("activity", "--json", "--watch"): "--json writes one snapshot; leave out --watch",
        ("explain", "SELECT 1", "--statement-timeout", "5s"): "it applies only with --analyze",
        ("explain", "SELECT 1", "--no-buffers"): "--no-buffers: it applies only with --analyze",
        ("explain", "SELECT 1", "--analyze", "--statement-timeout", "5"): "'5' has no unit",
    }
    for args, said in cases.items():
        refused = CliRunner().invoke(app, list(args), env=env)
        shown = " ".join(refused.output.replace("│", " ").split())
        assert refused.exit_code == 2 and said in shown, (args, refused.output)


# -- explain ------------------------------------------------------------------------------


def test_explain_analyze_of_a_slow_statement_takes_its_own_statement_timeout(
    make_db: Callable[..., SpatialDatabase], database_url: str
) -> None:
    slow = "SELECT pg_sleep(1.5)"
    db = make_db(statement_timeout="1s")
    with pytest.raises(QueryTimeout, match=r"--statement-timeout of export and explain"):
        db.explain(slow, analyze=True)
    assert db.explain(slow, analyze=True, statement_timeout="10s").execution_ms is not None
    env = {"GEOSESSION_DATABASE_URL": database_url, "GEOSESSION_STATEMENT_TIMEOUT": "1s"}
    args = ["explain", slow, "--analyze", "--statement-timeout", "10s"]
    shown = CliRunner().invoke(app, args, env=env)
    assert shown.exit_code == 0 and "execution" in shown.output, shown.output


def test_explain_reports_the_spatial_index_only_once_it_exists(
    db: SpatialDatabase, points: Table, admin: psycopg.Connection[Any]
) -> None:
    query = select(points.c.id).where(func.ST_Intersects(points.c.geom, _bbox()))
    before = db.explain(query)
    assert not before.uses_spatial_index
    assert before.spatial_seq_scans == (points.name,)
    assert (
        f"table public.{points.name} has no spatial index on geom: "
        f"CREATE INDEX ON public.{points.name} USING gist (geom);"
    ) in before.advice
    assert "no spatial index used" in str(before)

    admin.execute(f"CREATE INDEX {points.name}_gix ON {points.name} USING gist (geom)")
    after = db.explain(query)
    assert after.uses_spatial_index
    assert after.spatial_indexes == (f"{points.name}_gix",)
    assert after.spatial_seq_scans == () and after.advice == ()
    assert after.spatial_predicate and after.verdict == f"uses a spatial index ({points.name}_gix)"
    by_name = db.explain(select(points.c.id).where(points.c.name == "p7"))
    assert not by_name.spatial_predicate and not by_name.advice
    assert by_name.verdict == ("no spatial index used: the statement has no predicate one serves")
    assert before.spatial_predicate and before.verdict == "no spatial index used"


def test_explain_sees_a_geometry_column_whose_type_is_a_domain(
    db: SpatialDatabase, points: Table, admin: psycopg.Connection[Any]
) -> None:
    """A column of a domain over geometry gets the same advice as a geometry column."""
    domain = f"diag_domain_{SUFFIX}"
    admin.execute(f"DROP DOMAIN IF EXISTS {domain} CASCADE")
    admin.execute(f"CREATE DOMAIN {domain} AS geometry(Point, 4326) CHECK (ST_IsValid(VALUE))")
    try:
        admin.execute(f"ALTER TABLE {points.name} ALTER COLUMN geom TYPE {domain}")
        admin.execute(f"ANALYZE {points.name}")
        query = select(points.c.id).where(func.ST_Intersects(points.c.geom, _bbox()))
        before = db.explain(query)
        assert _index_advice(before) == [
            f"table public.{points.name} has no spatial index on geom: "
            f"CREATE INDEX ON public.{points.name} USING gist (geom);"
        ]
        admin.execute(f"CREATE INDEX ON {points.name} USING gist (geom)")
        assert db.explain(query).uses_spatial_index
    finally:
        admin.execute(f"ALTER TABLE {points.name} ALTER COLUMN geom TYPE geometry(Point, 4326)")
        admin.execute(f"DROP DOMAIN {domain}")


def test_explain_says_a_spatial_index_left_invalid_needs_a_reindex(
    db: SpatialDatabase, points: Table, admin: psycopg.Connection[Any], database_url: str
) -> None:
    """A failed CREATE INDEX CONCURRENTLY leaves an index the planner never uses: the
    advice names it and the REINDEX, instead of "has a spatial index"."""
    query = select(points.c.id).where(func.ST_Intersects(points.c.geom, _bbox()))
    failed_concurrent_index(admin, database_url, points.name, f"{points.name}_gix")
    report = db.explain(query)
    assert not report.uses_spatial_index
    assert (
        f"the spatial index on public.{points.name}.geom is INVALID ({points.name}_gix): a "
        "CREATE INDEX CONCURRENTLY that failed or was cancelled left it, and the planner "
        f"never uses it. Rebuild it: REINDEX INDEX CONCURRENTLY public.{points.name}_gix;"
    ) in report.advice
    admin.execute(f"REINDEX INDEX CONCURRENTLY {points.name}_gix")
    assert db.explain(query).uses_spatial_index


def test_explain_compiles_geometry_binds_and_in_lists(db: SpatialDatabase, points: Table) -> None:
    area = from_shape(shapely.box(0.1, 0.1, 0.12, 0.12), srid=4326)
    query = select(points.c.id).where(
        points.c.geom.ST_Intersects(area),
        points.c.geom.ST_DWithin(WKTElement("POINT(0.11 0.11)", srid=4326), 0.05),
        points.c.id.in_([1, 2, 3]),
    )
    report = db.explain(query, analyze=True)
    assert report.analyzed and report.root is not None
    with db.session() as s:
        found = len(s.execute(query).all())
    assert report.root.actual_rows == found


def test_explain_analyze_reports_rows_and_buffers(db: SpatialDatabase, points: Table) -> None:
    report = db.explain(select(points.c.id).where(points.c.id <= 100), analyze=True)
    assert report.root is not None
    assert report.root.actual_rows == 100 and report.root.estimated_rows > 0
    assert report.buffers["shared_hit"] + report.buffers["shared_read"] > 0
    assert report.execution_ms is not None and report.planning_ms is not None
    assert "actual rows 100" in str(report)
    no_buffers = db.explain(select(points.c.id), analyze=True, buffers=False)
    assert no_buffers.buffers == {}


@pytest.mark.parametrize("kind", ["update", "delete", "insert", "text"])
def test_explain_analyze_of_a_data_changing_statement_changes_nothing(
    db: SpatialDatabase, points: Table, kind: str
) -> None:
    statement: Any = {
        "update": update(points).values(name="changed"),
        "delete": delete(points).where(points.c.id <= 10_000),
        "insert": insert(points).values(id=0, name="new", geom=WKTElement("POINT(0 0)", 4326)),
        "text": f"UPDATE {points.name} SET name = 'changed'",
    }[kind]
    report = db.explain(statement, analyze=True)
    assert report.analyzed and report.root is not None and report.root.node_type == "ModifyTable"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(points)) == 20_000
        assert s.scalar(select(func.count()).where(points.c.name == "changed")) == 0
        assert s.scalar(select(func.count()).where(points.c.id == 0)) == 0


@pytest.mark.parametrize("analyze", [False, True])
def test_explain_refuses_a_script_whose_later_statements_would_run_unexplained(
    db: SpatialDatabase, points: Table, analyze: bool, database_url: str
) -> None:
    """EXPLAIN applied to the first statement, and a COMMIT after it ended the read-only
    (or rolled-back) transaction: the DELETE after that ran for real."""
    script = f"SELECT 1; COMMIT; DELETE FROM {points.name}"
    with pytest.raises(ConfigurationError, match="holds 3 \\(the second: 'COMMIT'\\)"):
        db.explain(script, analyze=analyze)
    flags = ["--analyze"] if analyze else []
    env = {"GEOSESSION_DATABASE_URL": database_url}
    refused = CliRunner().invoke(app, ["explain", *flags, script], env=env)
    assert refused.exit_code == 1 and "one SQL statement" in str(refused.exception)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(points)) == 20_000
    pasted = f"SELECT * FROM {points.name} WHERE id = 1; -- from psql"
    assert db.explain(pasted).root is not None


def test_explain_says_when_the_predicate_wraps_the_indexed_column(
    db: SpatialDatabase, points: Table, admin: psycopg.Connection[Any]
) -> None:
    admin.execute(f"CREATE INDEX ON {points.name} USING gist (geom)")
    projected = func.ST_Transform(_bbox(), 3857)
    report = db.explain(
        select(points.c.id).where(
            func.ST_Intersects(func.ST_Transform(points.c.geom, 3857), projected)
        )
    )
    assert not report.uses_spatial_index
    (advice,) = _index_advice(report)
    assert (
        f"wraps the indexed column public.{points.name}.geom in a function (st_transform())"
        in advice
    )
    assert advice.endswith(
        f"CREATE INDEX ON public.{points.name} USING gist ((st_transform(geom, 3857)));"
    )
    admin.execute(advice.split("index that expression: ")[1])  # the advice's SQL works
    admin.execute(f"ANALYZE {points.name}")
    assert db.explain(
        select(points.c.id).where(
            func.ST_Intersects(func.ST_Transform(points.c.geom, 3857), projected)
        )
    ).uses_spatial_index
    cast = db.explain(
        f"SELECT id FROM {points.name} WHERE ST_DWithin(geom::geography, "
        "'SRID=4326;POINT(0 0)'::geography, 1000)"
    )
    (advice,) = _index_advice(cast)
    assert "(a cast to geography)" in advice
    assert advice.endswith("USING gist (((geom)::geography));")
    here = "'SRID=4326;POINT(0.1 0.1)'::geometry"
    buffered = db.explain(
        f"SELECT id FROM {points.name} WHERE ST_Within({here}, ST_Buffer(geom, 1))"
    )
    (advice,) = _index_advice(buffered)
    assert "(st_buffer()): an index on geom cannot serve it. ST_DWithin(geom, " in advice
    boxed = db.explain(f"SELECT id FROM {points.name} WHERE ST_Contains(ST_Envelope(geom), {here})")
    (advice,) = _index_advice(boxed)
    assert "geom && <the other geometry> (boxes meet), geom ~ <it>" in advice


def test_explain_of_a_spatial_join_asks_nothing_of_the_table_that_drives_it(
    db: SpatialDatabase, points: Table, admin: psycopg.Connection[Any]
) -> None:
    """A join of zones and points through the points' spatial index reads every zone
    once: that sequential scan was flagged ("has a spatial index but was read
    sequentially", or its column "wrapped in a function"), the value each index search
    takes. The join's own side still gets advice where its index is missing."""
    zones = f"diag_zones_{SUFFIX}"
    admin.execute(
        f"DROP TABLE IF EXISTS {zones}; CREATE TABLE {zones} (id int, geom geometry(Polygon, "
        f"4326)); INSERT INTO {zones} SELECT i, ST_MakeEnvelope(i / 100.0, 0, i / 100.0 + "
        f"0.005, 0.005, 4326) FROM generate_series(1, 50) i; ANALYZE {zones}"
    )
    try:
        join = (
            f"SELECT z.id, p.id FROM {zones} z JOIN {points.name} p ON "
            "ST_Intersects(p.geom, {zone})"
        )
        unindexed = db.explain(join.format(zone="z.geom"))
        assert not unindexed.uses_spatial_index
        assert set(unindexed.spatial_seq_scans) == {zones, points.name}
        assert f"table public.{points.name} has no spatial index" in str(unindexed.advice)
        admin.execute(f"CREATE INDEX ON {zones} USING gist (geom)")
        admin.execute(f"CREATE INDEX ON {points.name} USING gist (geom)")
        admin.execute(f"ANALYZE {points.name}")
        for zone in ("z.geom", "ST_Transform(ST_Transform(z.geom, 3857), 4326)"):
            report = db.explain(join.format(zone=zone))
            assert report.uses_spatial_index, zone
            assert report.sequential_scans == (zones,), zone
            assert _index_advice(report) == [], (zone, report.advice)
            assert report.spatial_seq_scans == (), zone
    finally:
        admin.execute(f"DROP TABLE {zones}")


def test_explain_says_a_cte_or_subquery_filtered_outside_keeps_the_index_out(
    db: SpatialDatabase, points: Table, admin: psycopg.Connection[Any]
) -> None:
    """A spatial predicate on a MATERIALIZED CTE's rows, or on a subquery's that
    PostgreSQL cannot move it into (DISTINCT ON), filters them once all are made: the
    plan used no spatial index and the report said nothing of why."""
    admin.execute(f"CREATE INDEX ON {points.name} USING gist (geom)")
    admin.execute(f"ANALYZE {points.name}")
    box = "ST_MakeEnvelope(0.1, 0.1, 0.12, 0.12, 4326)"
    cte = (
        f"WITH w AS {{}} (SELECT * FROM {points.name}) "
        f"SELECT w.id FROM w WHERE ST_Intersects(w.geom, {box})"
    )
    materialized = db.explain(cte.format("MATERIALIZED"))
    assert not materialized.uses_spatial_index
    (advice,) = _index_advice(materialized)
    assert advice.startswith("the spatial predicate on w.geom filters the rows of the CTE w")
    assert "WITH w AS NOT MATERIALIZED (...)" in advice
    inlined = db.explain(cte.format("NOT MATERIALIZED"))
    assert inlined.uses_spatial_index and not _index_advice(inlined)
    distinct = db.explain(
        f"SELECT s.id FROM (SELECT DISTINCT ON (name) id, name, geom FROM {points.name} "
        f"ORDER BY name) s WHERE ST_Intersects(s.geom, {box})"
    )
    (advice,) = _index_advice(distinct)
    assert "filters the rows of subquery s once they are all made" in advice
    assert advice.endswith("Filter inside the subquery")


def test_explain_says_a_negated_predicate_reads_every_row_as_expected(
    db: SpatialDatabase, points: Table, admin: psycopg.Connection[Any]
) -> None:
    """NOT ST_Intersects(...) keeps the rows an index would not find: the advice said to
    refresh the statistics and compare again, which cannot help."""
    admin.execute(f"CREATE INDEX ON {points.name} USING gist (geom)")
    admin.execute(f"ANALYZE {points.name}")
    box = "ST_MakeEnvelope(0.1, 0.1, 0.12, 0.12, 4326)"
    for negated in (f"NOT ST_Intersects(geom, {box})", f"ST_Intersects(geom, {box}) IS NOT TRUE"):
        report = db.explain(f"SELECT id FROM {points.name} WHERE {negated} AND id > 5")
        (advice,) = _index_advice(report)
        assert f"the spatial predicate on public.{points.name}.geom is negated" in advice
        assert "ANALYZE" not in advice and "NOT EXISTS (SELECT 1 FROM <shapes> s" in advice
    both = (
        f"SELECT id FROM {points.name} WHERE NOT ST_Intersects(geom, {box}) "
        f"OR ST_DWithin(geom, {box}, 0.5)"
    )
    assert "read sequentially" in str(db.explain(both).advice)  # one side is not negated


def test_explain_says_st_distance_has_index_assisted_forms(
    db: SpatialDatabase, points: Table, admin: psycopg.Connection[Any]
) -> None:
    """ST_Distance(...) < d and ORDER BY ST_Distance(...) compute every row's distance;
    the advised ST_DWithin and <-> are served by the index."""
    admin.execute(f"CREATE INDEX ON {points.name} USING gist (geom)")
    admin.execute(f"ANALYZE {points.name}")
    here = "'SRID=4326;POINT(0.5 0.5)'::geometry"
    within = db.explain(f"SELECT id FROM {points.name} WHERE ST_Distance(geom, {here}) < 0.01")
    assert not within.uses_spatial_index
    (advice,) = _index_advice(within)
    assert advice.startswith(f"ST_Distance(geom, ...) < <distance> on public.{points.name}")
    assert "ST_DWithin(geom, <the other geometry>, <distance>)" in advice
    rewritten = f"SELECT id FROM {points.name} WHERE ST_DWithin(geom, {here}, 0.01)"
    assert db.explain(rewritten).uses_spatial_index
    nearest = db.explain(f"SELECT id FROM {points.name} ORDER BY ST_Distance(geom, {here}) LIMIT 5")
    (advice,) = _index_advice(nearest)
    assert advice.startswith(f"rows of public.{points.name} are sorted by ST_Distance(geom")
    assert "ORDER BY geom <-> <the other geometry> LIMIT <k>" in advice
    knn = f"SELECT id FROM {points.name} ORDER BY geom <-> {here} LIMIT 5"
    assert db.explain(knn).uses_spatial_index and not db.explain(knn).advice
    boxed = db.explain(
        f"SELECT id FROM {points.name} WHERE geom && ST_Expand({here}, 0.01) "
        f"AND ST_Distance(geom, {here}) < 0.01"
    )
    assert boxed.uses_spatial_index  # the box finds the rows; the advice says so
    (advice,) = _index_advice(boxed)
    assert "is computed for each row the spatial index found by the box" in advice
    assert "ST_DWithin(geom, <the other geometry>, <distance>)" in advice
    sphere = db.explain(
        f"SELECT id FROM {points.name} WHERE ST_DistanceSphere(geom, {here}) < 1000"
    )  # metres: ST_DWithin(geom, ...) would read 1000 as degrees
    (advice,) = _index_advice(sphere)
    assert "ST_DWithin(geom::geography, <the other geometry>::geography, <distance>)" in advice
    made = f"CREATE INDEX ON public.{points.name} USING gist ((geom::geography));"
    assert advice.endswith(made)
    admin.execute(made)
    admin.execute(f"ANALYZE {points.name}")
    metres = f"ST_DWithin(geom::geography, {here}::geography, 1000)"
    assert db.explain(f"SELECT id FROM {points.name} WHERE {metres}").uses_spatial_index
    outside = f"SELECT id FROM {points.name} WHERE ST_Distance(geom, {here}) > 0.3"
    assert not _index_advice(db.explain(outside))  # no index form finds the far rows


def test_explain_reads_the_srid_of_a_column_constrained_by_checks(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """A PostGIS 1 column (AddGeometryColumn(..., use_typmod => false)) declares its SRID
    in a CHECK constraint, not its type: explain judged it as any SRID, so a search box
    in another SRID went unremarked."""
    admin.execute("DROP TABLE IF EXISTS explain_checked")
    admin.execute("CREATE TABLE explain_checked (id int)")
    admin.execute("SELECT AddGeometryColumn('explain_checked', 'geom', 4326, 'POINT', 2, false)")
    try:
        box = "ST_MakeEnvelope(0, 0, 10, 10, 3857)"
        plan = db.explain(f"SELECT id FROM explain_checked WHERE ST_Intersects(geom, {box})")
        assert any("(SRID 4326) with a constant geometry of SRID 3857" in a for a in plan.advice)
    finally:
        admin.execute("DROP TABLE explain_checked")


def test_explain_says_when_a_comparison_meets_two_srids(
    db: SpatialDatabase, points: Table, admin: psycopg.Connection[Any]
) -> None:
    """A search geometry without the column's SRID: PostGIS refuses the predicate only
    when it runs, and its box operators return wrong rows without an error. The plan's
    constants carry their SRID; the advice says which comparison and what to write."""
    admin.execute(f"CREATE INDEX ON {points.name} USING gist (geom)")
    area = shapely.box(0.1, 0.1, 0.12, 0.12)
    no_srid = select(points.c.id).where(func.ST_Intersects(points.c.geom, from_shape(area)))
    (advice,) = db.explain(no_srid).advice
    assert advice == (
        f"st_intersects() compares public.{points.name}.geom (SRID 4326) with a constant "
        'geometry of SRID 0: running it fails with "Operation on mixed SRID geometries". Give '
        "the search geometry the column's SRID: ST_SetSRID(<geometry>, 4326) when its "
        "coordinates are in SRID 4326 already (EWKT 'SRID=4326;POINT(...)'; GeoAlchemy2: "
        "from_shape(shape, srid=4326))"
    )
    with pytest.raises(SRIDMismatch):
        db.run_transaction(lambda s: s.execute(no_srid).all())
    fixed = select(points.c.id).where(func.ST_Intersects(points.c.geom, from_shape(area, 4326)))
    assert not db.explain(fixed).advice
    assert db.run_transaction(lambda s: len(s.execute(fixed).all())) == 15

    boxes = select(points.c.id).where(points.c.geom.op("&&")(from_shape(area)))
    (advice,) = db.explain(boxes).advice
    assert advice.startswith(f"&& compares public.{points.name}.geom (SRID 4326) with a con")
    assert "no error, but the rows selected are wrong" in advice
    assert db.run_transaction(lambda s: len(s.execute(boxes).all())) == 15  # silently

    elsewhere = "'SRID=3857;POINT(0.5 0.5)'::geometry"
    for statement in (
        f"SELECT id FROM {points.name} WHERE ST_DWithin(geom, {elsewhere}, 0.01)",
        f"SELECT id FROM {points.name} ORDER BY geom <-> {elsewhere} LIMIT 5",
    ):
        (advice,) = db.explain(statement).advice
        assert "with a constant geometry of SRID 3857: running it fails" in advice
        assert advice.endswith(
            "Transform the search geometry into the column's SRID: ST_Transform(<geometry>, "
            "4326) (transforming the column instead keeps its index from serving)"
        )
    transformed = f"ST_Transform({elsewhere}, 4326)"
    assert not db.explain(
        f"SELECT id FROM {points.name} WHERE ST_DWithin(geom, {transformed}, 0.01)"
    ).advice


def test_explain_says_when_two_columns_or_geographies_have_different_srids(
    db: SpatialDatabase, points: Table, admin: psycopg.Connection[Any]
) -> None:
    """A join of tables in two SRIDs; a geography column against a geography of another
    SRID; a domain's SRID; a column of any SRID is never called mixed."""
    other = f"diag_mercator_{SUFFIX}"
    domain = f"diag_wgs84_{SUFFIX}"
    admin.execute(f"DROP TABLE IF EXISTS {other}")
    admin.execute(f"DROP DOMAIN IF EXISTS {domain} CASCADE")
    admin.execute(f"CREATE DOMAIN {domain} AS geometry(Point, 4326)")
    admin.execute(
        f"CREATE TABLE {other} (id int, geom geometry(Point, 3857), place geography(Point), "
        f"anything geometry, wgs84 {domain})"
    )
    try:
        join = (
            f"SELECT p.id FROM {points.name} p JOIN {other} o ON ST_Intersects(p.geom, o.geom) "
            "WHERE o.id = 1"
        )
        advice = [line for line in db.explain(join).advice if "SRID" in line]
        assert advice == [
            f"st_intersects() compares public.{points.name}.geom (SRID 4326) with "
            f'public.{other}.geom (SRID 3857): running it fails with "Operation on mixed SRID '
            f"geometries\". Transform one side into the other's SRID (ST_Transform("
            f"public.{other}.geom, 4326)): the side left as it is keeps its spatial index"
        ]
        place = f"SELECT id FROM {other} WHERE ST_DWithin(place, 'SRID=4269;POINT(1 1)', 5)"
        (advice,) = [line for line in db.explain(place).advice if "SRID" in line]
        assert f"{other}.place (SRID 4326) with a constant geography of SRID 4269" in advice
        assert "ST_Transform(<geometry>, 4326)::geography" in advice
        wgs84 = f"SELECT id FROM {other} WHERE ST_Intersects(wgs84, 'POINT(1 1)')"
        assert any(
            "wgs84 (SRID 4326) with a constant geometry of SRID 0" in line
            for line in (db.explain(wgs84).advice)
        )
        anything = f"SELECT id FROM {other} WHERE ST_Intersects(anything, 'POINT(1 1)')"
        assert not [line for line in db.explain(anything).advice if "SRID" in line]
    finally:
        admin.execute(f"DROP TABLE {other}")
        admin.execute(f"DROP DOMAIN {domain}")


def test_explain_says_a_distance_on_longitudes_and_latitudes_is_in_degrees(
    db: SpatialDatabase, points: Table, admin: psycopg.Connection[Any]
) -> None:
    """ST_DWithin(geom, point, 1000) on an EPSG:4326 column means 1000 degrees; the
    advice says so and gives the geography form, whose index the advised CREATE INDEX
    makes."""
    admin.execute(f"CREATE INDEX ON {points.name} USING gist (geom)")
    here = "'SRID=4326;POINT(0.5 0.5)'::geometry"
    metres = db.explain(f"SELECT id FROM {points.name} WHERE ST_DWithin(geom, {here}, 1000)")
    degrees = [line for line in metres.advice if line.startswith("st_dwithin()")]
    assert degrees == [
        f"st_dwithin() on public.{points.name}.geom (SRID 4326: longitudes and latitudes) "
        "takes a distance of 1000 in degrees, the column's units, and selects rows up to 1000 "
        "degrees away, not 1000 metres. For metres compare geographies: ST_DWithin("
        "geom::geography, <the other geometry>::geography, 1000), with an index for it: "
        f"CREATE INDEX ON public.{points.name} USING gist ((geom::geography)); or transform "
        "both sides into a projected SRID in metres"
    ]
    near = f"SELECT id FROM {points.name} WHERE ST_DWithin(geom, {here}, 0.01)"
    assert not [line for line in db.explain(near).advice if "degrees" in line]
    admin.execute(f"CREATE INDEX ON {points.name} USING gist ((geom::geography))")
    admin.execute(f"ANALYZE {points.name}")
    advised = db.explain(
        f"SELECT id FROM {points.name} WHERE ST_DWithin(geom::geography, {here}::geography, 1000)"
    )
    assert advised.uses_spatial_index and not advised.advice
    with_param = select(points.c.id).where(
        func.ST_DWithin(points.c.geom, WKTElement("POINT(0.5 0.5)", 4326), 500)
    )
    assert any("a distance of 500 in degrees" in line for line in db.explain(with_param).advice)


def test_explain_says_a_geography_distance_under_a_metre_was_likely_degrees(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """A column made geography keeps the query's 0.01 (degrees on geometry, some 1.1 km):
    on geography that is 1 cm."""
    name = f"diag_places_{SUFFIX}"
    admin.execute(f"DROP TABLE IF EXISTS {name}")
    admin.execute(f"CREATE TABLE {name} (id int, place geography(Point, 4326))")
    try:
        here = "'SRID=4326;POINT(1 1)'::geography"
        tiny = db.explain(f"SELECT id FROM {name} WHERE ST_DWithin(place, {here}, 0.01)")
        assert (
            f"st_dwithin() on public.{name}.place (geography: metres) takes a distance of "
            "0.01 in metres, under a metre; if it was meant in degrees, as on a geometry "
            "column of longitudes and latitudes, give metres (a degree of latitude is some "
            "111,000 m)"
        ) in tiny.advice
        metres = db.explain(f"SELECT id FROM {name} WHERE ST_DWithin(place, {here}, 1000)")
        assert not [line for line in metres.advice if "st_dwithin()" in line]
    finally:
        admin.execute(f"DROP TABLE {name}")


def test_explain_says_areas_and_lengths_of_longitudes_and_latitudes_are_in_degrees(
    db: SpatialDatabase, points: Table
) -> None:
    """ST_Area of an EPSG:4326 column is in square degrees, wherever the plan computes it:
    in its output (unqualified, as VERBOSE writes one table's), an aggregate, a filter."""
    total = db.explain(f"SELECT sum(ST_Area(geom)) FROM {points.name}")
    assert [line for line in total.advice if "JIT" not in line] == [
        f"st_area() of public.{points.name}.geom (SRID 4326: longitudes and latitudes) is in "
        "square degrees, whose size on the ground shrinks away from the equator: for square "
        "metres, ST_Area(geom::geography)"
    ]
    perimeter = db.explain(f"SELECT id FROM {points.name} WHERE ST_Perimeter(geom) > 1")
    assert any(
        line.endswith("for metres, ST_Perimeter(geom::geography)") for line in (perimeter.advice)
    )
    for fine in (
        f"SELECT sum(ST_Area(geom::geography)) FROM {points.name}",
        f"SELECT sum(ST_Area(ST_Transform(geom, 3857))) FROM {points.name}",
    ):
        assert not [line for line in db.explain(fine).advice if "degrees" in line], fine


def test_explain_says_when_statistics_are_missing(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    name = f"diag_unanalyzed_{SUFFIX}"
    admin.execute(f"CREATE TABLE {name} (id int, geom geometry(Point, 4326))")
    try:
        admin.execute(
            f"INSERT INTO {name} SELECT i, ST_MakePoint(i, i) FROM generate_series(1, 500) i"
        )
        admin.execute(f"CREATE INDEX ON {name} USING gist (geom)")
        report = db.explain(
            f"SELECT id FROM {name} WHERE geom && ST_MakeEnvelope(0, 0, 5, 5, 4326)"
        )
        assert (
            f"stats are missing for public.{name} (never analyzed), so row estimates are "
            f"guesses: ANALYZE public.{name};"
        ) in report.advice
    finally:
        admin.execute(f"DROP TABLE {name}")


def test_explain_analyze_says_when_estimates_are_ten_times_off(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    name = f"diag_stale_{SUFFIX}"
    admin.execute(
        f"CREATE TABLE {name} (id int, geom geometry(Point, 4326)) "
        "WITH (autovacuum_enabled = false)"  # the statistics stay as old as the test makes them
    )
    try:
        admin.execute(
            f"INSERT INTO {name} SELECT i, ST_MakePoint(5, 5) FROM generate_series(1, 10) i"
        )
        admin.execute(f"ANALYZE {name}")
        admin.execute(
            f"INSERT INTO {name} SELECT i, ST_MakePoint(0.5, 0.5) FROM generate_series(1, 5000) i"
        )
        report = db.explain(
            f"SELECT id FROM {name} WHERE geom && ST_MakeEnvelope(0, 0, 1, 1, 4326)",
            analyze=True,
        )
        stale = [line for line in report.advice if "the statistics may be stale" in line]
        assert len(stale) == 1, report.advice
        assert "found 5000" in stale[0] and f"ANALYZE public.{name};" in stale[0]
        admin.execute(f"ANALYZE {name}")
        fresh = db.explain(
            f"SELECT id FROM {name} WHERE geom && ST_MakeEnvelope(0, 0, 1, 1, 4326)",
            analyze=True,
        )
        assert not [line for line in fresh.advice if "may be stale" in line], fresh.advice
    finally:
        admin.execute(f"DROP TABLE {name}")


def test_explain_analyze_says_an_estimate_on_a_wrapped_column_needs_an_expression_index(
    db: SpatialDatabase, points: Table, admin: psycopg.Connection[Any]
) -> None:
    """PostgreSQL has statistics for geom, not for ST_Transform(geom, ...): ANALYZE cannot
    fix that estimate, an index on the expression can (ANALYZE then samples it)."""
    query = (
        f"SELECT id FROM {points.name} WHERE ST_Intersects(ST_Transform(geom, 3857), "
        "ST_Transform(ST_MakeEnvelope(0, 0, 0.5, 0.5, 4326), 3857))"
    )
    report = db.explain(query, analyze=True)
    (guess,) = [line for line in report.advice if "x off" in line]
    assert "no statistics for st_transform(geom, 3857), only for geom" in guess
    assert "may be stale" not in guess
    index = guess.split("measures it too: ")[1]
    assert index == f"CREATE INDEX ON public.{points.name} USING gist ((st_transform(geom, 3857)));"
    admin.execute(index)
    admin.execute(f"ANALYZE {points.name}")
    measured = db.explain(query, analyze=True)
    assert measured.uses_spatial_index
    assert not [line for line in measured.advice if "x off" in line], measured.advice


def test_explain_analyze_reports_jit_compilation_that_outweighs_the_query(
    make_db: Callable[..., SpatialDatabase], points: Table
) -> None:
    """A threshold of 0 compiles even a one-row lookup: the compile time is the query's."""
    eager = {"jit": "on", "jit_above_cost": "0", "jit_inline_above_cost": "0"}
    query = f"SELECT id FROM {points.name} WHERE ST_Intersects(geom, 'SRID=4326;POINT(0 0)')"
    planned = make_db(server_settings=eager).explain(query)
    assert planned.jit_ms is None
    assert any(line.startswith("the plan will be JIT-compiled") for line in planned.advice)
    report = make_db(server_settings=eager).explain(query, analyze=True)
    assert report.jit_ms is not None and report.execution_ms is not None
    assert 0 < report.jit_ms <= report.execution_ms
    (advice,) = [line for line in report.advice if line.startswith("JIT compilation took")]
    assert f"took {report.jit_ms:.1f} ms of the {report.execution_ms:.1f} ms" in advice
    assert "declared costs of PostGIS functions" in advice and "SET jit = off;" in advice
    assert report.as_dict()["jit_ms"] == report.jit_ms
    off = make_db(server_settings={**eager, "jit": "off"}).explain(query, analyze=True)
    assert off.jit_ms is None and not [line for line in off.advice if "JIT" in line]


def test_explain_command_prints_the_plan_and_advice(database_url: str, points: Table) -> None:
    runner = CliRunner()
    env = {"GEOSESSION_DATABASE_URL": database_url, "COLUMNS": "250"}
    sql = (
        f"SELECT id FROM {points.name} "
        "WHERE ST_Intersects(geom, ST_MakeEnvelope(0.1, 0.1, 0.12, 0.12, 4326))"
    )
    result = runner.invoke(app, ["explain", sql], env=env)
    assert result.exit_code == 0, result.output
    assert "Seq Scan" in result.output and "No spatial index is used" in result.output
    assert "USING gist (geom)" in result.output
    as_json = runner.invoke(app, ["explain", "--analyze", "--json", sql], env=env)
    assert as_json.exit_code == 0, as_json.output
    parsed = json.loads(as_json.output)
    assert parsed["uses_spatial_index"] is False and parsed["analyzed"] is True
    assert parsed["plan"]["Node Type"] == "Seq Scan" and parsed["buffers"]["shared_hit"] >= 0
    from_stdin = runner.invoke(app, ["explain", "-"], input=sql, env=env)
    assert from_stdin.exit_code == 0 and "Seq Scan" in from_stdin.output


def test_explain_of_a_wrong_statement_points_into_the_statement_as_written(
    db: SpatialDatabase, points: Table
) -> None:
    """The server counts from EXPLAIN's first character; the error counts from the user's."""
    with pytest.raises(DatabaseError) as misspelt:
        db.explain(f"SELECT 1 AS one FORM {points.name}")
    assert "at character 17: 'FORM " in str(misspelt.value)
    with pytest.raises(DatabaseError) as missing:
        db.explain("SELECT id FROM no_such_table")
    assert "at character 16: 'no_such_table'" in str(missing.value)


def test_explain_takes_values_for_placeholders_and_names_those_without(
    db: SpatialDatabase, database_url: str, points: Table
) -> None:
    sql = (
        f"SELECT id FROM {points.name} WHERE id > :low "
        "AND ST_DWithin(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326), :d)"
    )
    values = {"low": 10, "x": 0.5, "y": 0.5, "d": 0.01}
    report = db.explain(sql, params=values, analyze=True)
    assert report.root.actual_rows is not None and report.root.actual_rows > 0
    with pytest.raises(ConfigurationError) as missing:
        db.explain(sql, params={"low": 10})
    assert "the statement's :x, :y, :d have no value" in str(missing.value)
    assert "--param x=VALUE --param y=VALUE --param d=VALUE" in str(missing.value)
    with pytest.raises(ConfigurationError, match=r"params names :lwo, which the statement"):
        db.explain(sql, params={**values, "lwo": 1})
    with pytest.raises(DatabaseError, match=r"no parameter \$1.*Write placeholders as :name"):
        db.explain(f"SELECT id FROM {points.name} WHERE id = $1")
    runner = CliRunner()
    env = {"GEOSESSION_DATABASE_URL": database_url, "COLUMNS": "250"}
    flags = [f"--param={name}={value}" for name, value in values.items()]
    result = runner.invoke(app, ["explain", sql, *flags, "--analyze"], env=env)
    assert result.exit_code == 0, result.output
    assert "actual rows" in result.output
    bad = runner.invoke(app, ["explain", sql, "--param", "x"], env=env)
    assert bad.exit_code != 0 and "'x' is not NAME=VALUE" in bad.output


def test_watch_refreshes_count_times_and_stops_cleanly_on_ctrl_c() -> None:
    console = Console(file=io.StringIO(), width=100)
    views: list[int] = []

    def view() -> Text:
        views.append(len(views))
        return Text(f"snapshot {len(views)}")

    assert watch(view, interval=0, count=3, console=console, sleep=lambda _: None) == 3
    assert views == [0, 1, 2]

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    assert watch(view, interval=1, count=None, console=console, sleep=interrupted) == 1
