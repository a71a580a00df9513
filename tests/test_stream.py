"""db.stream / async_stream / stream_frames against PostGIS: counts, checksums,
projections, bad input, and the connection released however iteration ends."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import shapely
from geoalchemy2 import WKBElement
from sqlalchemy import Column, Integer, MetaData, Table, desc, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from typer.testing import CliRunner

from geosession import (
    ConfigurationError,
    DatabaseError,
    InvalidGeometry,
    QueryTimeout,
    SpatialDatabase,
)
from geosession.cli import app
from geosession.demo import synthetic_polygons
from geosession.geometry import encode_ewkb, to_ewkb, to_shape
from geosession.models import geometry_column

ROWS = 3_000
TABLES_SQL = """
DROP TABLE IF EXISTS rd_parcels, rd_metric, rd_geog, rd_two, rd_plain;
CREATE TABLE rd_parcels (
    id int PRIMARY KEY, name text, value numeric(12, 2), seen date, uid uuid, meta jsonb,
    geom geometry(Polygon, 4326)
);
CREATE INDEX ON rd_parcels USING gist (geom);
CREATE TABLE rd_metric (id int PRIMARY KEY, geom geometry(Polygon, 3857));
CREATE TABLE rd_geog (id int PRIMARY KEY, geog geography(Polygon, 4326));
CREATE TABLE rd_two (id int PRIMARY KEY, a geometry(Point, 4326), b geometry(Polygon, 4326));
CREATE TABLE rd_plain (id int PRIMARY KEY, name text);
"""


class Base(DeclarativeBase):
    pass


class ReadParcel(Base):
    __tablename__ = "rd_parcels"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    geom: Mapped[WKBElement] = geometry_column("POLYGON", 4326, spatial_index=False)


def create_read_tables(admin: psycopg.Connection[Any]) -> None:
    """rd_parcels (3,000 polygons, one NULL geometry, typed properties) and friends."""
    admin.execute(TABLES_SQL)
    hexes = [g.hex() for g in encode_ewkb(list(synthetic_polygons(ROWS, seed=7)), 4326)]
    with admin.cursor().copy("COPY rd_parcels FROM STDIN") as copy:
        for i, geom in enumerate(hexes, start=1):
            meta = f'{{"n": {i}}}'
            seen = date(2024, 1, 1 + i % 28)
            copy.write_row((i, f"parcel {i}", Decimal(i) / 4, seen, uuid.UUID(int=i), meta, geom))
    admin.execute("UPDATE rd_parcels SET geom = NULL WHERE id = 17")
    admin.execute("INSERT INTO rd_metric SELECT id, ST_Transform(geom, 3857) FROM rd_parcels")
    admin.execute("INSERT INTO rd_geog SELECT id, geom::geography FROM rd_parcels")
    admin.execute(
        "INSERT INTO rd_two SELECT id, ST_Centroid(geom), geom FROM rd_parcels WHERE id <= 10"
    )
    admin.execute("INSERT INTO rd_plain VALUES (1, 'one')")
    admin.execute("ANALYZE rd_parcels")


@pytest.fixture(scope="module")
def tables(admin: psycopg.Connection[Any]) -> Iterator[None]:
    create_read_tables(admin)
    yield
    admin.execute("DROP TABLE IF EXISTS rd_parcels, rd_metric, rd_geog, rd_two, rd_plain")


def server_checksum(admin: psycopg.Connection[Any], expression: str, table: str) -> str:
    row = admin.execute(
        f"SELECT md5(string_agg(coalesce(encode(ST_AsEWKB({expression}), 'hex'), 'null'), ',' "
        f"ORDER BY id)) FROM {table}"
    ).fetchone()
    assert row is not None
    return str(row[0])


def client_checksum(hexes: list[str | None]) -> str:
    return hashlib.md5(",".join(h or "null" for h in hexes).encode()).hexdigest()


def released(db: SpatialDatabase, admin: psycopg.Connection[Any]) -> bool:
    idle = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
    ).fetchone()
    return db.pool_stats().checked_out == 0 and idle is not None and idle[0] == 0


# --- what comes out -------------------------------------------------------------------


@pytest.mark.usefixtures("tables")
def test_stream_shapely_counts_and_checksum(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    stream = db.stream(select(ReadParcel).order_by(ReadParcel.id), batch_size=700)
    rows = list(stream)
    assert len(rows) == ROWS == stream.rows_read
    assert rows[0]._fields == ("id", "name", "geom")
    assert rows[16].geom is None  # id 17
    assert all(shapely.get_srid(r.geom) == 4326 for r in rows if r.geom is not None)
    hexes = [
        None if r.geom is None else shapely.to_wkb(r.geom, hex=True, include_srid=True)
        for r in rows
    ]
    assert client_checksum([h.lower() if h else None for h in hexes]) == server_checksum(
        admin, "geom", "rd_parcels"
    )


@pytest.mark.usefixtures("tables")
def test_stream_wkb_and_row_outputs_are_exact_ewkb(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    expected = server_checksum(admin, "geom", "rd_parcels")
    wkb = [r.geom for r in db.stream("SELECT id, geom FROM rd_parcels ORDER BY id", output="wkb")]
    assert client_checksum([g.hex() if g else None for g in wkb]) == expected
    raw = list(db.stream("SELECT id, geom FROM rd_parcels ORDER BY id", output="row"))
    assert type(raw[0]) is tuple
    assert client_checksum([g.hex() if g else None for _, g in raw]) == expected


@pytest.mark.usefixtures("tables")
def test_properties_keep_their_types(db: SpatialDatabase) -> None:
    row = next(iter(db.stream("SELECT * FROM rd_parcels WHERE id = 8")))
    assert row.value == Decimal("2.00") and row.seen == date(2024, 1, 9)
    assert row.uid == uuid.UUID(int=8) and row.meta == {"n": 8}


@pytest.mark.parametrize(
    ("projection", "sql"),
    [
        ("full", "geom"),
        ("envelope", "ST_Envelope(geom)"),
        ("centroid", "ST_Centroid(geom)"),
        ("simplify:0.0001", "ST_SimplifyPreserveTopology(geom, 0.0001)"),
        ("transform:3857", "ST_Transform(geom, 3857)"),
    ],
)
@pytest.mark.usefixtures("tables")
def test_each_projection_matches_postgis(
    db: SpatialDatabase, admin: psycopg.Connection[Any], projection: str, sql: str
) -> None:
    rows = db.stream("SELECT * FROM rd_parcels ORDER BY id", geometry=projection, output="wkb")
    hexes = [r.geom.hex() if r.geom is not None else None for r in rows]
    assert client_checksum(hexes) == server_checksum(admin, sql, "rd_parcels")


@pytest.mark.usefixtures("tables")
def test_geography_column_and_geojson_output_in_wgs84(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    geog = list(db.stream("SELECT id, geog FROM rd_geog WHERE id <= 20 ORDER BY id"))
    assert shapely.get_srid(geog[0].geog) == 4326 and geog[16].geog is None
    features = list(
        db.stream("SELECT id, geom FROM rd_metric WHERE id <= 5 ORDER BY id", output="geojson")
    )
    assert [f["properties"] for f in features] == [{"id": i} for i in range(1, 6)]
    expected = admin.execute(
        "SELECT ST_AsGeoJSON(ST_Transform(geom, 4326), 15) FROM rd_metric WHERE id = 1"
    ).fetchone()
    assert expected is not None
    ours = shapely.geometry.shape(features[0]["geometry"])
    assert ours.equals_exact(shapely.from_geojson(expected[0]), 1e-12)


@pytest.mark.usefixtures("tables")
def test_every_kind_of_statement(db: SpatialDatabase) -> None:
    table = Table("rd_parcels", MetaData(), Column("id", Integer, primary_key=True))
    counts = [
        sum(1 for _ in db.stream(ReadParcel)),
        sum(1 for _ in db.stream(select(ReadParcel.id, ReadParcel.geom))),
        sum(
            1 for _ in db.stream(text("SELECT * FROM rd_parcels WHERE id <= :n"), params={"n": 10})
        ),
        sum(1 for _ in db.stream("SELECT * FROM rd_parcels WHERE id <= :n", params={"n": 5})),
        sum(1 for _ in db.stream(text("SELECT * FROM rd_parcels WHERE id <= :n").params(n=3))),
    ]
    assert counts == [ROWS, ROWS, 10, 5, 3]
    with pytest.raises(ConfigurationError, match="no geometry column"):
        list(db.stream(table))


@pytest.mark.usefixtures("tables")
def test_sql_pasted_from_psql_reads_and_a_script_is_refused(
    db: SpatialDatabase, database_url: str, tmp_path: Any
) -> None:
    """A trailing semicolon was a syntax error inside the subquery, and a comment on the
    last line hid the rest of the select ("syntax error at end of input")."""
    pasted = "SELECT * FROM rd_parcels WHERE id <= 5; -- five\n"
    assert sum(1 for _ in db.stream(pasted, output="wkb")) == 5
    commented = "SELECT * FROM rd_parcels -- every parcel"
    assert sum(len(f) for f in db.stream_frames(commented)) == ROWS
    with pytest.raises(
        ConfigurationError, match="holds 2 \\(the second: 'DELETE FROM rd_parcels'\\)"
    ):
        list(db.stream("SELECT * FROM rd_parcels; DELETE FROM rd_parcels"))
    env = {"GEOSESSION_DATABASE_URL": database_url}
    out = tmp_path / "few.geojson"
    where = ["--where", "id < 4 -- the first three"]
    done = CliRunner().invoke(
        app, ["export", "SELECT * FROM rd_parcels;", str(out), *where], env=env
    )
    assert done.exit_code == 0, done.output
    assert len(json.loads(out.read_text())["features"]) == 3
    done = CliRunner().invoke(app, ["export", pasted, str(out)], env=env)
    assert done.exit_code == 0 and len(json.loads(out.read_text())["features"]) == 5
    assert sum(1 for _ in db.stream("rd_parcels", output="wkb")) == ROWS


@pytest.mark.usefixtures("tables")
def test_names_no_attribute_can_hold_are_in_the_mapping(db: SpatialDatabase) -> None:
    sql = 'SELECT id AS "Parcel No", name AS class, geom FROM rd_parcels WHERE id = 1'
    (record,) = list(db.stream(sql))
    assert record._fields == ("_0", "_1", "geom")
    assert record._mapping["Parcel No"] == 1 and record._mapping["class"] == record[1]
    assert list(record._mapping) == ["Parcel No", "class", "geom"]
    assert record._mapping["geom"].equals(record.geom)
    again = pickle.loads(pickle.dumps(record))  # to another process, as multiprocessing does
    assert again == record and again._mapping["Parcel No"] == 1 and type(again) is type(record)


@pytest.mark.usefixtures("tables")
def test_bbox_filter_uses_the_column_srid(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    bbox = (-74.0, 40.7, -73.9, 40.8)
    expected = admin.execute(
        "SELECT count(*) FROM rd_metric WHERE geom && "
        "ST_Transform(ST_MakeEnvelope(-74.0, 40.7, -73.9, 40.8, 4326), 3857)"
    ).fetchone()
    assert expected is not None and 0 < expected[0] < ROWS
    assert sum(1 for _ in db.stream("SELECT * FROM rd_metric", bbox=bbox)) == expected[0]
    computed = "SELECT id, ST_Transform(geom, 3857) AS geom FROM rd_parcels"  # no typmod SRID
    assert sum(1 for _ in db.stream(computed, bbox=bbox)) == expected[0]


class ScanParcel(Base):
    __tablename__ = "rd_scans"
    id: Mapped[int] = mapped_column(primary_key=True)
    geom: Mapped[WKBElement] = geometry_column("POINT", 4326, spatial_index=False)


def _table_stats(admin: psycopg.Connection[Any], table: str, setup: str = "") -> Any:
    """``table``'s index and sequential scans and inserted rows, as the server has counted
    them (a backend reports its counts when it ends, and when idle: up to ten seconds
    later), after ``setup`` runs; read on a connection of their own, ended at once."""
    info = admin.info
    with psycopg.connect(info.dsn, password=info.password, autocommit=True) as connection:
        if setup:
            connection.execute(setup)
        row = connection.execute(
            "SELECT idx_scan, seq_scan, n_tup_ins FROM pg_stat_user_tables WHERE relname = %s",
            [table],
        ).fetchone()
    return None if row is None else tuple(int(value or 0) for value in row)


def _stats_when(admin: psycopg.Connection[Any], table: str, ready: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + 10
    while not ready(_table_stats(admin, table)) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # the other backends that ended with it
    return _table_stats(admin, table)


@pytest.mark.parametrize("driver", ["psycopg2", "asyncpg", "psycopg async"])
def test_a_bbox_read_uses_the_gist_index_with_every_driver(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any], driver: str
) -> None:
    """psycopg2 and the async drivers report no type modifiers, so a read there knew no
    column's SRID before its rows, and a bbox transformed its box row by row: a sequential
    scan of the whole table (an async endpoint's bbox query above all). The SRID of a
    column the statement reads from a table as it is comes from the catalogue now."""
    table = ScanParcel.__tablename__
    _table_stats(
        admin,
        table,
        f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int PRIMARY KEY, "
        f"geom geometry(Point, 4326)); CREATE INDEX ON {table} USING gist (geom); "
        f"INSERT INTO {table} SELECT x * 100 + y, ST_SetSRID(ST_MakePoint(x, y), 4326) "
        f"FROM generate_series(0, 99) x, generate_series(0, 99) y; ANALYZE {table}",
    )
    before = _stats_when(admin, table, lambda stats: stats is not None and stats[2] == 10_000)
    db = make_db(driver="psycopg2", async_driver="psycopg" if "async" in driver else "asyncpg")
    bbox = (10.5, 20.5, 12.5, 22.5)  # four points
    sources: list[Any] = [select(ScanParcel), table, select(ScanParcel.geom.label("g"))]
    if driver != "asyncpg":  # psycopg2 and psycopg name a text query's table columns
        sources.append(f"SELECT id, geom AS g FROM {table} WHERE id >= 0")
    empty = select(ScanParcel).where(ScanParcel.id < 0)

    async def read_async() -> tuple[list[int], list[Any]]:
        try:
            counts = []
            for source in sources:
                counts.append(len([row async for row in db.async_stream(source, bbox=bbox)]))
        finally:
            await db.adispose()  # its backends end, and report their scans
        try:
            async with db.async_stream(empty) as stream:
                assert [row async for row in stream] == []
            return counts, list(stream.plan.columns)
        finally:
            await db.adispose()

    try:
        if driver == "psycopg2":
            counts = [sum(1 for _ in db.stream(source, bbox=bbox)) for source in sources]
            db.dispose()
            with db.stream(empty) as stream:
                assert list(stream) == []
            columns = list(stream.plan.columns)
        else:
            counts, columns = asyncio.run(read_async())
        assert counts == [4] * len(sources)
        after = _stats_when(admin, table, lambda stats: stats[:2] != before[:2])
        assert after[1] == before[1] and after[0] - before[0] >= len(sources)  # no seq scan
        geom = next(column for column in columns if column.name == "geom")
        assert (geom.srid, geom.geometry_type) == (4326, "Point")  # a read of no rows too
    finally:
        admin.execute(f"DROP TABLE {table}")


def test_a_bbox_crossing_the_antimeridian_keeps_both_sides(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """RFC 7946 writes a box over the antimeridian from its west edge (minx > maxx): Fiji's
    (177, -20, -178, -10) holds longitudes 178 and -179, not the 355 degrees between."""
    admin.execute(
        "DROP TABLE IF EXISTS rd_pacific; CREATE TABLE rd_pacific (id int PRIMARY KEY, "
        "geom geometry(Point, 4326), metric geometry(Point, 3857), geog geography(Point), "
        "loose geometry); CREATE INDEX ON rd_pacific USING gist (geom); "
        "INSERT INTO rd_pacific SELECT i, p, ST_Transform(p, 3857), p::geography, p FROM "
        "(SELECT i, ST_SetSRID(ST_MakePoint(x, -17), 4326) AS p FROM (VALUES (1, 178.0), "
        "(2, -179.0), (3, 0.0), (4, 170.0), (5, -175.0)) AS v (i, x)) AS points"
    )
    try:
        fiji = (177, -20, -178, -10)
        for column in ("geom", "metric", "geog", "loose"):
            rows = db.stream("rd_pacific", bbox=fiji, geometry_column=column, output="row")
            assert sorted(row[0] for row in rows) == [1, 2], column
        sql = "SELECT id, metric FROM rd_pacific"
        assert sorted(row[0] for row in db.stream(sql, bbox=fiji, output="row")) == [1, 2]
        with pytest.raises(
            ConfigurationError, match=r"minx > maxx, .* bbox_srid=3857 is not a geo"
        ):
            list(db.stream("rd_pacific", bbox=fiji, bbox_srid=3857, geometry_column="metric"))
        with pytest.raises(ConfigurationError, match="bbox_srid=999998 is not in spatial_ref_sys"):
            list(db.stream("rd_pacific", bbox=fiji, bbox_srid=999998, geometry_column="geom"))
        with pytest.raises(ConfigurationError, match="minx > maxx only for a box crossing"):
            db.stream("rd_pacific", bbox=(190, -20, 10, -10))
        assert released(db, admin)
    finally:
        admin.execute("DROP TABLE rd_pacific")


@pytest.fixture
def parcels_view(tables: None, admin: psycopg.Connection[Any]) -> Iterator[str]:
    """A view of rd_parcels: no primary key to page by."""
    admin.execute("CREATE VIEW rd_parcels_view AS SELECT * FROM rd_parcels")
    yield "rd_parcels_view"
    admin.execute("DROP VIEW rd_parcels_view")


@pytest.mark.usefixtures("tables")
def test_iter_geojson_pages_by_the_primary_key_unless_told_otherwise(
    db: SpatialDatabase, parcels_view: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An HTTP response read by a cursor held its pooled connection and READ ONLY
    transaction until the client had read it all (minutes for a slow one) unless the
    caller knew to pass pages_by=: a select of one table's rows pages by its key now."""
    caplog.set_level(logging.WARNING, logger="geosession.read")

    def held(chunks: Iterator[bytes]) -> tuple[set[int], list[Any]]:
        body, seen = [], set()
        for chunk in chunks:
            seen.add(db.pool_stats().checked_out)
            body.append(chunk)
        return seen, orjson.loads(b"".join(body))["features"]

    seen, features = held(db.iter_geojson(select(ReadParcel).where(ReadParcel.id <= 1200)))
    assert seen == {0} and len(features) == 1200  # pages: nothing held between chunks
    pid = ReadParcel.id.label("pid")
    newest = select(pid, ReadParcel.geom).order_by(pid.desc())
    seen, features = held(db.iter_geojson(newest.limit(700), batch_size=300))
    assert seen == {0}
    assert [f["properties"]["pid"] for f in features] == list(range(ROWS, ROWS - 700, -1))
    by_column = select(pid, ReadParcel.geom).order_by(ReadParcel.id.desc()).limit(700)
    seen, same = held(db.iter_geojson(by_column, batch_size=300))  # the labelled key's column
    assert seen == {0} and same == features
    assert not caplog.records
    by_name = select(ReadParcel).order_by(ReadParcel.name)  # not in the key's order
    for _ in range(2):
        seen, features = held(db.iter_geojson(by_name, batch_size=500))
        assert 1 in seen and len(features) == ROWS  # a cursor keeps the order asked
    (told,) = [r.getMessage() for r in caplog.records]  # once a place
    assert f"db.iter_geojson at {__file__}:" in told and "pass pages_by= a unique" in told
    assert 1 in held(db.iter_geojson(by_name, pages_by=None))[0]  # as asked: not told
    assert len(caplog.records) == 1
    assert db.stream(select(ReadParcel), pages_by="auto").options.pages_by == "id"
    seen, features = held(db.iter_geojson("rd_parcels", batch_size=1000))  # a table's name
    assert seen == {0} and len(features) == ROWS and len(caplog.records) == 1
    by_name = db.stream("rd_parcels", pages_by="auto")
    assert sum(1 for _ in by_name) == ROWS and by_name.options.pages_by == "id"  # looked up
    keyless = db.stream(parcels_view, pages_by="auto")  # a view has no primary key
    assert sum(1 for _ in keyless) == ROWS and keyless.options.pages_by is None  # a cursor

    async def read_async() -> tuple[set[int], int]:
        pool = db.async_engine.sync_engine.pool
        seen, count = set(), 0
        try:
            async for chunk in db.async_iter_geojson(ReadParcel, newline_delimited=True):
                seen.add(pool.checkedout())  # type: ignore[attr-defined]
                count += len(chunk.splitlines())
            return seen, count
        finally:
            await db.adispose()

    assert asyncio.run(read_async()) == ({0}, ROWS)


TENANTS_SQL = """
DROP SCHEMA IF EXISTS rd_tenant_a, rd_tenant_b CASCADE;
CREATE SCHEMA rd_tenant_a;
CREATE SCHEMA rd_tenant_b;
CREATE TABLE rd_tenant_a.sites (id int PRIMARY KEY, tenant text, geom geometry(Point, 4326));
CREATE TABLE rd_tenant_b.sites (id int PRIMARY KEY, tenant text, geom geometry(Point, 3857));
CREATE INDEX ON rd_tenant_b.sites USING gist (geom);
INSERT INTO rd_tenant_a.sites
SELECT i, 'a', ST_SetSRID(ST_MakePoint(i * 0.001, 0), 4326) FROM generate_series(1, 50) i;
INSERT INTO rd_tenant_b.sites
SELECT i, 'b', ST_Transform(ST_SetSRID(ST_MakePoint(i * 0.001, 0), 4326), 3857)
FROM generate_series(1, 80) i;
ANALYZE rd_tenant_b.sites;
"""


@pytest.fixture
def tenants(admin: psycopg.Connection[Any]) -> Iterator[None]:
    """Two tenants' schemas, each with its own ``sites`` (of another SRID)."""
    admin.execute(TENANTS_SQL)
    yield
    admin.execute("DROP SCHEMA rd_tenant_a, rd_tenant_b CASCADE")


@pytest.mark.usefixtures("tenants")
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_a_read_runs_with_the_settings_given_for_its_transactions(
    make_db: Callable[..., SpatialDatabase], driver: str
) -> None:
    """A tenant's search_path (or a row-level security key) set for the session was
    replaced on return to the pool, and a read had no other way to take one: settings=
    sets them in each of its transactions (a cursor's, every page's) alone."""
    db = make_db(driver=driver, pool_size=1, max_overflow=0)
    b = {"search_path": "rd_tenant_b, public"}
    rows = list(db.stream("sites", settings=b))
    assert [(r.id, r.tenant) for r in rows] == [(i, "b") for i in range(1, 81)]
    assert 111 < rows[0].geom.x < 112  # tenant b's sites are in metres (EPSG:3857)
    boxed = db.stream("sites", settings=b, bbox=(0, -1, 0.0105, 1), pages_by="id", batch_size=4)
    assert [r.id for r in boxed] == list(range(1, 11))  # the box in the column's SRID
    a = {"search_path": "rd_tenant_a, public", "app.tenant": "a"}
    query = "SELECT id, geom, current_setting('app.tenant') AS key FROM sites"
    assert {(r.key, r.geom.x < 0.051) for r in db.stream(query, settings=a)} == {("a", True)}
    with db.session() as s:  # SET LOCAL: the pooled connection keeps its own
        assert s.execute(text("SELECT current_setting('app.tenant', true)")).scalar() in ("", None)
        assert "rd_tenant" not in s.execute(text("SHOW search_path")).scalar_one()
    with pytest.raises(DatabaseError, match="sites"):
        list(db.stream("SELECT id FROM sites"))  # on the database's search_path: none

    async def read_async() -> list[Any]:
        try:
            return [r async for r in db.async_stream("sites", settings=a, pages_by="id")]
        finally:
            await db.adispose()

    assert [r.tenant for r in asyncio.run(read_async())] == ["a"] * 50
    with pytest.raises(ConfigurationError, match="'search path' is not a PostgreSQL setting"):
        db.stream("sites", settings={"search path": "x"})
    with pytest.raises(ConfigurationError, match="statement_timeout is given twice"):
        db.stream("sites", settings={"statement_timeout": "1s"}, statement_timeout="2s")


@pytest.mark.usefixtures("tenants")
def test_export_and_explain_take_a_tenants_settings(
    db: SpatialDatabase, admin: psycopg.Connection[Any], runner: CliRunner, tmp_path: Path
) -> None:
    """geosession export --setting and db.explain(settings=...) read as the application
    does: a tenant's search_path, a role and a row-level security key."""
    out = tmp_path / "a.geojsonl"
    done = runner.invoke(
        app, ["export", "sites", str(out), "--setting", "search_path=rd_tenant_a,public"]
    )
    assert done.exit_code == 0, done.output
    features = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [f["properties"]["tenant"] for f in features] == ["a"] * 50
    missing = runner.invoke(app, ["export", "sites", str(tmp_path / "none.geojsonl")])
    assert missing.exit_code != 0 and "no table" in str(missing.exception)
    bad = runner.invoke(app, ["export", "sites", "-", "--setting", "search_path"])
    assert bad.exit_code == 2 and "'search_path' is not NAME=VALUE" in bad.output
    admin.execute(
        "DO $$ BEGIN CREATE ROLE rd_tenant_reader NOLOGIN; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    admin.execute(
        "GRANT USAGE ON SCHEMA rd_tenant_b TO rd_tenant_reader; "
        "GRANT SELECT ON rd_tenant_b.sites TO rd_tenant_reader; "
        "ALTER TABLE rd_tenant_b.sites ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY by_key ON rd_tenant_b.sites "
        "USING (id <= current_setting('app.max_id')::int)"
    )
    reader = {"role": "rd_tenant_reader", "app.max_id": "7"}
    shown = db.stream("SELECT id, geom FROM rd_tenant_b.sites", settings=reader, pages_by="id")
    assert [r.id for r in shown] == list(range(1, 8))
    near = "SELECT id FROM sites WHERE geom && ST_MakeEnvelope(0, -1, 500, 1, 3857)"
    report = db.explain(near, settings={"search_path": "rd_tenant_b, public"})
    assert "sites" in " ".join(report.lines)
    with pytest.raises(DatabaseError, match="sites"):
        db.explain(near)
    explained = runner.invoke(
        app, ["explain", near, "--setting", "search_path=rd_tenant_b,public", "--json"]
    )
    assert explained.exit_code == 0, explained.output
    assert "sites" in explained.output


@pytest.mark.usefixtures("tables")
def test_a_read_sets_its_own_statement_timeout_for_its_transactions(
    make_db: Callable[..., SpatialDatabase], database_url: str, tmp_path: Path
) -> None:
    """A slow query's first FETCH runs it whole: with the database's 1 s it timed out,
    and the advice named db.transaction, which a stream does not take."""
    db = make_db(statement_timeout="1s", pool_size=1, max_overflow=0)
    slow = "SELECT id, geom, pg_sleep(0.002) FROM rd_parcels WHERE id <= 700"
    with pytest.raises(QueryTimeout, match=r"statement_timeout= of db.transaction, db.stream"):
        list(db.stream(slow))
    assert sum(1 for _ in db.stream(slow, statement_timeout="20s")) == 700
    assert sum(1 for _ in db.stream(slow, statement_timeout="20s", pages_by="id")) == 700
    with pytest.raises(QueryTimeout):  # lower than the database's, too
        list(db.stream("SELECT id, geom, pg_sleep(0.5) FROM rd_parcels", statement_timeout="100ms"))
    with db.session() as s:  # SET LOCAL: the pooled connection keeps the database's
        assert s.execute(text("SHOW statement_timeout")).scalar() == "1s"

    async def read_async() -> int:
        try:
            return len([row async for row in db.async_stream(slow, statement_timeout="20s")])
        finally:
            await db.adispose()

    assert asyncio.run(read_async()) == 700
    with pytest.raises(ConfigurationError, match="statement_timeout: 5 has no unit"):
        db.stream(slow, statement_timeout=5)
    out = tmp_path / "slow.geojsonl"
    env = {"GEOSESSION_DATABASE_URL": database_url, "GEOSESSION_STATEMENT_TIMEOUT": "1s"}
    args = ["export", slow, str(out), "--statement-timeout", "20s"]
    exported = CliRunner().invoke(app, args, env=env)
    assert exported.exit_code == 0, exported.output
    assert len(out.read_text().splitlines()) == 700


@pytest.mark.usefixtures("tables")
def test_two_geometry_columns_need_a_choice(db: SpatialDatabase) -> None:
    with pytest.raises(ConfigurationError, match=r"2 geometry columns \('a', 'b'\)"):
        list(db.stream("SELECT * FROM rd_two"))
    rows = list(db.stream("SELECT * FROM rd_two ORDER BY id", geometry_column="b"))
    assert rows[0].b.geom_type == "Polygon" and isinstance(rows[0].a, bytes)


@pytest.mark.usefixtures("tables")
def test_bad_input_is_refused_before_any_row(db: SpatialDatabase) -> None:
    with pytest.raises(ConfigurationError, match="'simplify:<tolerance>'"):
        db.stream("SELECT * FROM rd_parcels", geometry="buffer:3")
    with pytest.raises(ConfigurationError, match="output="):
        db.stream("SELECT * FROM rd_parcels", output="arrow")
    for read in (db.stream, db.stream_frames, db.iter_geojson):
        with pytest.raises(ConfigurationError, match=r"no option geometri \(did you mean geometry"):
            read("SELECT * FROM rd_parcels", geometri="envelope")
    bad = [
        (
            {"geometry_column": "nope"},
            "geometry_column='nope' .CLI: --geometry-column. is not a column",
        ),
        ({"geometry_column": "name"}, "not a geometry or geography column"),
        ({"pages_by": "nope"}, "pages_by='nope' .CLI: --pages-by. is not a column"),
        ({"geometry": "transform:999998"}, "SRID 999998 is not in spatial_ref_sys"),
    ]
    for options, message in bad:
        with pytest.raises(ConfigurationError, match=message):
            list(db.stream("SELECT * FROM rd_parcels", **options))
    with pytest.raises(ConfigurationError, match="no geometry column"):
        list(db.stream("SELECT * FROM rd_plain"))
    with pytest.raises(ConfigurationError, match="two columns named 'id'"):
        list(db.stream("SELECT p.id, t.id, p.geom FROM rd_parcels p JOIN rd_two t USING (id)"))
    # SQLAlchemy's text(): a colon in a literal is a placeholder, and :v::int is none (both
    # failed inside the read with SQLAlchemy's own errors)
    json_literal = """SELECT '{"a":1}'::jsonb AS j, geom FROM rd_parcels"""
    with pytest.raises(
        ConfigurationError, match=r"Cannot read: the statement's :1 has no value.*write \\:1"
    ):
        db.stream(json_literal)
    assert len(list(db.stream(json_literal.replace('":1', '"\\:1')))) == ROWS
    with pytest.raises(ConfigurationError, match=r"params names :v.*CAST\(:v AS int\)"):
        db.stream("SELECT :v::int AS v, geom FROM rd_parcels", params={"v": 1})
    assert db.pool_stats().checked_out == 0


# --- release, however iteration ends --------------------------------------------------


@pytest.mark.usefixtures("tables")
def test_early_break_releases_at_once(db: SpatialDatabase, admin: psycopg.Connection[Any]) -> None:
    for _ in db.stream("SELECT * FROM rd_parcels", batch_size=100):
        assert db.pool_stats().checked_out == 1  # the cursor's connection, while iterating
        break
    assert released(db, admin)
    stream = db.stream("SELECT * FROM rd_parcels", batch_size=100)
    for _ in stream:  # the stream object outlives the loop: release must not wait for it
        break
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_exception_in_the_loop_releases(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    with pytest.raises(RuntimeError):
        for _ in db.stream("SELECT * FROM rd_parcels", batch_size=100):
            raise RuntimeError("consumer failed")
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_dropped_iterator_is_released_by_gc(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    iterator = iter(db.stream("SELECT * FROM rd_parcels", batch_size=100))
    next(iterator)
    assert db.pool_stats().checked_out == 1
    del iterator
    gc.collect()
    assert released(db, admin)


def script_run(script: str, database_url: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by a Python of its own on the test database, to its exit."""
    env = {**os.environ, "GEOSESSION_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.usefixtures("tables")
def test_an_iteration_a_script_leaves_open_ends_quietly_with_it(database_url: str) -> None:
    """The garbage collector closed it during the interpreter's teardown, where its
    cleanup met modules already gone: "Exception ignored in: <generator object
    GeometryStream._batches>" and a TypeError from psycopg's rollback on stderr."""
    script = (
        "from geosession import SpatialDatabase\n"
        "db = SpatialDatabase.from_env()\n"
        "rows = iter(db.stream('SELECT * FROM rd_parcels', batch_size=100))\n"
        "batches = db.stream('SELECT * FROM rd_parcels', batch_size=100).batches()\n"
        "print(next(rows).id, len(next(batches)))\n"
    )
    done = script_run(script, database_url)
    assert done.returncode == 0 and done.stdout.split() == ["1", "100"], done.stderr
    assert done.stderr == ""


@pytest.mark.usefixtures("tables")
def test_with_block_and_close_release(db: SpatialDatabase, admin: psycopg.Connection[Any]) -> None:
    with db.stream("SELECT * FROM rd_parcels", batch_size=100) as stream:
        iterator = iter(stream)
        next(iterator)
        batches = stream.batches()
        next(batches)
        assert db.pool_stats().checked_out == 2
    assert released(db, admin)
    stream = db.stream("SELECT * FROM rd_parcels", batch_size=100)
    iterator = iter(stream)
    next(iterator)
    stream.close()
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_server_error_mid_stream_releases(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    from geosession import DatabaseError

    seen = 0
    with pytest.raises(DatabaseError, match="division by zero"):
        for _ in db.stream("SELECT id, geom, 1 / (id - 2500) AS boom FROM rd_parcels ORDER BY id"):
            seen += 1
    assert 0 < seen < 2500 and released(db, admin)


@pytest.mark.usefixtures("tables")
def test_keyset_pages_hold_no_connection_between_pages(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    ids = []
    for batch in db.stream("SELECT * FROM rd_parcels", pages_by="id", batch_size=256).batches():
        assert db.pool_stats().checked_out == 0  # between pages, nothing is held
        ids.extend(row.id for row in batch)
    assert ids == list(range(1, ROWS + 1))
    pages = db.stream(
        "SELECT id, geom FROM rd_parcels", pages_by="id", output="geojson", batch_size=1000
    )
    assert [f["properties"]["id"] for f in pages] == list(range(1, ROWS + 1))
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_keyset_pages_refuse_a_key_that_would_skip_rows(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """WHERE key > last skips the rest of a repeated key's rows and every NULL key's: the
    read fails saying so instead of returning fewer rows (10 rows came back as 6 and 5)."""
    repeated = "SELECT id / 2 AS pair, geom FROM rd_parcels WHERE id <= 10"
    holes = "SELECT CASE WHEN id > 5 THEN id END AS maybe, geom FROM rd_parcels WHERE id <= 10"
    for sql, key, why in (
        (repeated, "pair", "is not unique: several rows have 1"),
        (holes, "maybe", "is NULL in some rows"),
    ):
        for size in (2, 3, 1000):  # the repeat across a page's end, within one, one page
            with pytest.raises(ConfigurationError, match=rf"pages_by='{key}' {why}.*primary key"):
                list(db.stream(sql, pages_by=key, batch_size=size))
    unique = db.stream(
        "SELECT id, geom FROM rd_parcels WHERE id <= 10", pages_by="id", batch_size=2
    )
    assert [row.id for row in unique] == list(range(1, 11))  # 5 full pages, then the last check

    async def repeated_async() -> None:
        try:
            async for _row in db.async_stream(repeated, pages_by="pair", batch_size=2):
                pass
        finally:
            await db.adispose()

    with pytest.raises(ConfigurationError, match="is not unique"):
        asyncio.run(repeated_async())
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_pages_go_down_a_key_the_select_orders_descending_and_refuse_another_order(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """Pages came in the key's ascending order whatever the select's ORDER BY: newest
    first (ORDER BY id DESC) came oldest first, ORDER BY name came by id, silently."""
    newest = select(ReadParcel.id, ReadParcel.geom).where(ReadParcel.id <= 10)
    for ordered in (newest.order_by(ReadParcel.id.desc()), newest.order_by(desc("id"))):
        rows = db.stream(ordered, pages_by="id", batch_size=3, output="row")
        assert [row[0] for row in rows] == list(range(10, 0, -1))
        features = db.stream(ordered, pages_by="id", batch_size=4, output="geojson")
        assert [feature["properties"]["id"] for feature in features] == list(range(10, 0, -1))
    latest = newest.order_by(ReadParcel.id.desc()).limit(5)  # the five latest, newest first
    assert [row[0] for row in db.stream(latest, pages_by="id", batch_size=2)] == [10, 9, 8, 7, 6]
    rising = newest.order_by(ReadParcel.id)
    assert [row[0] for row in db.stream(rising, pages_by="id", batch_size=3)] == [*range(1, 11)]
    for other in (newest.order_by(ReadParcel.name), newest.order_by(ReadParcel.id, "geom")):
        with pytest.raises(ConfigurationError, match=r"ORDER BY rd_parcels\.\w+.* would be lost"):
            db.stream(other, pages_by="id")
    repeated = select((ReadParcel.id // 2).label("pair"), ReadParcel.geom).where(
        ReadParcel.id <= 10
    )

    async def descending_async() -> list[int]:
        try:
            ordered = newest.order_by(ReadParcel.id.desc())
            return [row[0] async for row in db.async_stream(ordered, pages_by="id", batch_size=3)]
        finally:
            await db.adispose()

    assert asyncio.run(descending_async()) == list(range(10, 0, -1))
    with pytest.raises(ConfigurationError, match="is not unique.*WHERE pair < the last key"):
        list(db.stream(repeated.order_by(desc("pair")), pages_by="pair", batch_size=2))
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_psycopg2_driver_streams_the_same(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any]
) -> None:
    db = make_db(driver="psycopg2")
    rows = db.stream("SELECT id, geom FROM rd_parcels ORDER BY id", output="wkb")
    assert client_checksum([r.geom.hex() if r.geom else None for r in rows]) == server_checksum(
        admin, "geom", "rd_parcels"
    )
    assert sum(1 for _ in db.stream("SELECT * FROM rd_parcels", pages_by="id")) == ROWS
    # a geography beside the chosen column: PostGIS has no ST_AsEWKB of a geography
    beside = "SELECT p.id, p.geom, g.geog FROM rd_parcels p JOIN rd_geog g USING (id) WHERE id = 1"
    (row,) = db.stream(beside, geometry_column="geom")
    assert type(row.geog) is bytes and to_shape(row.geog).equals(row.geom)
    # bytea as bytes, as psycopg 3 and asyncpg give it (psycopg2's own is a memoryview)
    typed = "SELECT id, geom, '\\x01'::bytea AS b, ARRAY['\\x02'::bytea] AS bs FROM rd_parcels"
    (row,) = db.stream(typed + " WHERE id = 1", output="row")
    assert [type(value) for value in row[1:3]] == [bytes, bytes] and row[3] == [b"\x02"]
    with db.session() as s:
        assert s.execute(text("SELECT '\\x01'::bytea")).scalar() == b"\x01"
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_async_stream(db: SpatialDatabase, admin: psycopg.Connection[Any]) -> None:
    async def work() -> tuple[list[Any], int]:
        try:
            stream = db.async_stream("SELECT id, geom FROM rd_parcels ORDER BY id", output="wkb")
            rows = [row async for row in stream]
            async with db.async_stream("SELECT * FROM rd_parcels", batch_size=50) as early:
                async for _ in early:
                    break
            pool = db.async_engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
            features = [
                f
                async for f in db.async_stream(
                    "SELECT id, geom FROM rd_metric", output="geojson", pages_by="id"
                )
            ]
            assert len(features) == ROWS and features[0]["properties"] == {"id": 1}
            return rows, pool
        finally:
            await db.adispose()

    rows, checked_out = asyncio.run(work())
    assert checked_out == 0
    expected = server_checksum(admin, "geom", "rd_parcels")
    assert client_checksum([r.geom.hex() if r.geom else None for r in rows]) == expected
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_async_streams_of_other_shapes_share_a_connection(
    make_db: Callable[..., SpatialDatabase], admin: psycopg.Connection[Any]
) -> None:
    """asyncpg caches each statement with its row description: one FETCH text for every
    stream made the second stream of another shape on the same connection fail."""
    db = make_db(pool_size=1, max_overflow=0)
    queries = (
        "SELECT id, geom FROM rd_parcels",
        "SELECT * FROM rd_parcels",
        "SELECT 1 AS n, geom FROM rd_metric",
    )

    async def work() -> list[int]:
        try:
            counts = []
            for query in queries * 2:
                counts.append(len([r async for r in db.async_stream(query, batch_size=500)]))
            return counts
        finally:
            await db.adispose()

    assert asyncio.run(work()) == [ROWS] * 6
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_stream_frames(db: SpatialDatabase, admin: psycopg.Connection[Any]) -> None:
    frames = list(db.stream_frames("SELECT id, geom FROM rd_metric", batch_size=1000))
    assert [len(f) for f in frames] == [1000, 1000, 1000]
    assert frames[0].crs.to_epsg() == 3857 and frames[0].geometry.name == "geom"
    total = sum(float(f.geometry.area.sum()) for f in frames)
    expected = admin.execute("SELECT sum(ST_Area(geom)) FROM rd_metric").fetchone()
    assert expected is not None and total == pytest.approx(expected[0], rel=1e-9)
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_stream_arrow_gives_geoarrow_batches_that_load_back(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """Record batches with GeoArrow's geoarrow.wkb extension and CRS: pyarrow reads them
    through the C stream interface, and db.ingest loads them into another table as they
    were, in their CRS."""
    import geopandas as gpd
    import pyarrow as pa

    arrow = db.stream_arrow("SELECT id, value, geom FROM rd_parcels ORDER BY id", batch_size=700)
    field = arrow.schema.field("geom")
    extension = orjson.loads(field.metadata[b"ARROW:extension:metadata"])
    assert field.metadata[b"ARROW:extension:name"] == b"geoarrow.wkb"
    assert extension["crs"]["id"] == {"authority": "EPSG", "code": 4326}
    assert arrow.schema.field("value").type == pa.decimal128(12, 2)
    table = pa.table(arrow)  # the C stream interface, as DuckDB and polars read it
    assert table.num_rows == ROWS and released(db, admin)
    with db.stream_arrow("SELECT id, geom FROM rd_metric") as whole:  # the README's recipe
        frame = gpd.GeoDataFrame.from_arrow(pa.table(whole))
    assert len(frame) == ROWS and frame.crs.to_epsg() == 3857 and released(db, admin)
    geography = db.stream_arrow("SELECT id, geog FROM rd_geog").schema.field("geog")
    assert b'"edges":"spherical"' in geography.metadata[b"ARROW:extension:metadata"]
    admin.execute("DROP TABLE IF EXISTS rd_copy")
    admin.execute("CREATE TABLE rd_copy (id int PRIMARY KEY, geom geometry(Polygon, 3857))")
    try:
        moved = "SELECT id, ST_Transform(geom, 3857) AS geom FROM rd_parcels WHERE geom IS NOT NULL"
        assert db.ingest("rd_copy", db.stream_arrow(moved)).inserted == ROWS - 1
        same = admin.execute(
            "SELECT count(*) FROM rd_copy c JOIN rd_parcels p USING (id) "
            "WHERE ST_Equals(c.geom, ST_Transform(p.geom, 3857))"
        ).fetchone()
        assert same == (ROWS - 1,)
    finally:
        admin.execute("DROP TABLE IF EXISTS rd_copy")
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_stream_arrow_declares_its_columns_in_geoparquet_metadata(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Its ``geo`` metadata names each column's declared type: pyarrow's write_table of
    it writes GeoParquet, and create=True makes the column as the source declares it."""
    import geopandas as gpd
    import pyarrow.parquet as pq

    query = "SELECT id, geom, ST_Centroid(geom) AS centre FROM rd_parcels"
    with db.stream_arrow(query, geometry_column="geom") as arrow:
        geo = orjson.loads(arrow.schema.metadata[b"geo"])
        pq.write_table(arrow.read_all(), tmp_path / "parcels.parquet")
    assert (geo["version"], geo["primary_column"]) == ("1.1.0", "geom")
    assert geo["columns"]["geom"]["geometry_types"] == ["Polygon"]
    assert geo["columns"]["centre"]["geometry_types"] == []  # an expression: any type
    assert geo["columns"]["geom"]["crs"]["id"] == {"authority": "EPSG", "code": 4326}
    projected = {"centroid": ["Point"], "envelope": [], "simplify:0.001": ["Polygon"]}
    for projection, types in projected.items():
        with db.stream_arrow("SELECT id, geom FROM rd_parcels", geometry=projection) as arrow:
            described = orjson.loads(arrow.schema.metadata[b"geo"])["columns"]["geom"]
        assert described["geometry_types"] == types, projection
    frame = gpd.read_parquet(tmp_path / "parcels.parquet")
    assert frame.crs.to_epsg() == 4326 and len(frame) == ROWS
    admin.execute("DROP TABLE IF EXISTS rd_made, rd_made_rejected")
    try:
        with db.stream_arrow("SELECT id, geom FROM rd_parcels") as arrow:
            assert db.ingest("rd_made", arrow, create=True).inserted == ROWS
        made = "SELECT type, srid FROM geometry_columns WHERE f_table_name = 'rd_made'"
        assert admin.execute(made).fetchone() == ("POLYGON", 4326)
    finally:
        admin.execute("DROP TABLE IF EXISTS rd_made, rd_made_rejected")
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_stream_arrow_keeps_no_batch_it_has_given(db: SpatialDatabase) -> None:
    """Each fetched batch's decoded geometries are dropped once its record batch is out
    (every one was kept for the first one's CRS: 600 MB over 1M polygons)."""
    from geosession.read.arrow import Chunk

    def chunks_alive() -> int:
        return sum(isinstance(thing, Chunk) for thing in gc.get_objects())

    with db.stream_arrow("SELECT id, geom FROM rd_parcels", batch_size=100) as arrow:
        alive = [chunks_alive() for _ in arrow]
    assert len(alive) == ROWS // 100 and max(alive) <= 2, alive


@pytest.mark.usefixtures("tables")
def test_stream_arrow_releases_when_closed_or_dropped(
    db: SpatialDatabase, admin: psycopg.Connection[Any]
) -> None:
    """pyarrow's own reader keeps its source until it is dropped: close() releases."""
    arrow = db.stream_arrow("SELECT * FROM rd_parcels", batch_size=100)
    next(iter(arrow))
    assert db.pool_stats().checked_out == 1
    arrow.close()
    assert released(db, admin)
    with db.stream_arrow("SELECT * FROM rd_parcels", batch_size=100) as arrow:
        next(iter(arrow))
    assert released(db, admin)
    dropped = db.stream_arrow("SELECT * FROM rd_parcels", batch_size=100)
    assert db.pool_stats().checked_out == 1  # the query ran: its first batch is read
    del dropped
    gc.collect()
    assert released(db, admin)


@pytest.mark.usefixtures("tables")
def test_every_geometry_column_of_a_frame_has_its_crs(db: SpatialDatabase) -> None:
    """Not only the active one: to_crs, sjoin and area in metres need the others' too."""
    sql = (
        "SELECT p.id, p.geom, m.geom AS metric, ST_Centroid(m.geom) AS centre FROM rd_parcels p "
        "JOIN rd_metric m USING (id) WHERE p.id <= 3"
    )
    (frame,) = db.stream_frames(sql, geometry_column="geom")
    assert [frame[c].crs.to_epsg() for c in ("geom", "metric", "centre")] == [4326, 3857, 3857]
    (moved,) = db.stream_frames(sql, geometry_column="geom", geometry="transform:3857")
    assert [moved[c].crs.to_epsg() for c in ("geom", "metric", "centre")] == [3857, 3857, 3857]
    assert moved.geometry.centroid.distance(moved["centre"]).max() < 1.0  # metres apart


# --- memory ------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.usefixtures("tables")
def test_a_tables_name_is_read_as_the_table(db: SpatialDatabase, tmp_path: Any) -> None:
    """It was taken as SQL: "syntax error at or near ')'"."""
    assert sum(1 for _ in db.stream("rd_parcels", output="wkb")) == ROWS
    assert sum(len(f) for f in db.stream_frames('public."rd_parcels"')) == ROWS
    assert db.export("public.rd_metric", tmp_path / "metric.fgb").features == ROWS

    async def count() -> int:
        try:
            rows = db.async_stream("rd_two", output="wkb", geometry_column="b")
            return len([row async for row in rows])
        finally:
            await db.adispose()

    assert asyncio.run(count()) == 10


def test_curves_and_surfaces_shapely_cannot_hold_are_named_with_the_way_round(
    db: SpatialDatabase, tmp_path: Any
) -> None:
    """shapely raised NotImplementedError ("Nonlinear geometry types") or GEOS's "Unknown
    WKB type 16" from inside the stream."""
    query = (
        "SELECT 1 AS id, 'SRID=4326;CIRCULARSTRING(0 0, 1 1, 2 0)'::geometry AS geom "
        "UNION ALL SELECT 2, 'TIN Z (((0 0 0, 0 1 0, 1 1 0, 0 0 0)))'::geometry"
    )
    named = r"the rows hold CircularString and TIN, which shapely \(GEOS\) cannot.*CurveToLine"
    with pytest.raises(InvalidGeometry, match=named):
        list(db.stream(query))
    with pytest.raises(InvalidGeometry, match=named):
        list(db.stream_frames(query))
    with pytest.raises(InvalidGeometry, match=named):
        db.export(query, tmp_path / "curves.parquet")  # GeoPackage takes them: test_export
    assert list(tmp_path.iterdir()) == []
    rows = list(db.stream(query, output="wkb"))  # the bytes, for whoever reads them
    assert [row.id for row in rows] == [1, 2] and all(isinstance(row.geom, bytes) for row in rows)
    straightened = "SELECT ST_CurveToLine('CIRCULARSTRING(0 0, 1 1, 2 0)'::geometry) AS geom"
    (line,) = db.stream(straightened)
    assert line.geom.geom_type == "LineString"


def test_infinite_dates_and_times_read_as_the_largest_and_smallest_on_every_driver(
    db: SpatialDatabase, make_db: Callable[..., SpatialDatabase], tmp_path: Any
) -> None:
    """psycopg 3 refused 'infinity' ("timestamp too large (after year 10K)"), so a table
    with a valid_to that never ends could not be streamed or exported; psycopg2 and asyncpg
    read it as datetime.max. A year before 1, which no driver reads, names the columns."""
    import datetime as dt

    query = (
        "SELECT 1 AS id, 'infinity'::timestamptz AS until, '-infinity'::date AS since, "
        "ARRAY['infinity'::timestamp] AS moments, now() AS at, "
        "'SRID=4326;POINT(1 1)'::geometry AS geom"
    )
    (row,) = db.stream(query)
    assert (row.until, row.since) == (dt.datetime.max.replace(tzinfo=dt.UTC), dt.date.min)
    assert row.moments == [dt.datetime.max] and row.at.tzinfo is not None
    (other,) = make_db(driver="psycopg2").stream(query.replace("ARRAY['infinity'", "ARRAY[now()"))
    assert (other.until, other.since) == (row.until, row.since)
    frame = next(iter(db.stream_frames(query)))
    assert frame["since"].tolist() == [dt.date.min]
    for name in ("forever.gpkg", "forever.parquet", "forever.csv"):
        assert db.export(query, tmp_path / name).features == 1
    assert "9999-12-31 23:59:59.999999" in (tmp_path / "forever.csv").read_text()
    before_christ = "SELECT '0044-03-15 BC'::date AS ides, 'POINT(1 1)'::geometry AS geom"
    with pytest.raises(DatabaseError, match=r"the date and time columns are ides \(date\)"):
        list(db.stream(before_christ))
    with pytest.raises(DatabaseError, match=r"columns are midnight \(time\).*or the time 24:00"):
        list(db.stream("SELECT '24:00'::time AS midnight, 'POINT(1 1)'::geometry AS geom"))
    late = "SELECT now()::date AS day, '24:00'::time AS midnight, 'POINT(1 1)'::geometry AS g"
    with pytest.raises(DatabaseError) as hour_24:  # the advice was the date's, and no SQL
        list(db.stream(late))
    assert "(midnight::text), or without those values (NULLIF(midnight, '24:00'))" in str(
        hour_24.value
    )
    beside = (
        "SELECT 'infinity'::timestamptz AS until, '24:00'::time AS ends, 'POINT(1 1)'::geometry"
    )
    with pytest.raises(DatabaseError) as infinity_first:  # was blamed on the infinity
        list(db.stream(beside))
    assert "hour=24" in str(infinity_first.value) and "NULLIF(ends, '24:00')" in str(
        infinity_first.value
    )
    with db.session() as s, pytest.raises(DatabaseError, match="infinity or -infinity"):
        s.execute(text("SELECT 'infinity'::date")).all()  # the ORM's reads: advice only


def test_async_streams_read_timestamptz_infinities_in_utc_as_their_other_values(
    make_db: Callable[..., SpatialDatabase],
) -> None:
    """asyncpg read 'infinity'::timestamptz as the naive datetime.max beside the aware
    values of the other rows, so that max() of the column raised TypeError."""
    import datetime as dt

    query = (
        "SELECT *, 'POINT(1 1)'::geometry AS geom FROM (VALUES (1, '2024-01-01 00:00+00'::"
        "timestamptz, ARRAY['-infinity'::timestamptz]), (2, 'infinity', ARRAY[now()])) "
        "v (id, until, moments) ORDER BY id"
    )
    db = make_db(async_driver="asyncpg")

    async def read() -> list[Any]:
        try:
            return [row async for row in db.async_stream(query)]
        finally:
            await db.adispose()

    rows = asyncio.run(read())
    assert rows[1].until == dt.datetime.max.replace(tzinfo=dt.UTC)
    assert max(row.until for row in rows) == rows[1].until  # comparable: all aware
    assert rows[0].moments == [dt.datetime.min.replace(tzinfo=dt.UTC)]
    assert [row.until for row in rows] == [row.until for row in db.stream(query)]


def test_arrays_of_enums_read_as_lists_on_every_reader(
    db: SpatialDatabase, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """psycopg read an enum[] as PostgreSQL's text of it, '{walk,bus}' (SQL NULL and a
    label 'NULL' told apart only by quotes), and Arrow and files kept that text, where
    asyncpg and GeoJSON gave lists."""
    admin.execute(
        "DROP TABLE IF EXISTS rd_trips; DROP TYPE IF EXISTS rd_mode; "
        "CREATE TYPE rd_mode AS ENUM ('walk', 'bus', 'NULL'); "
        "CREATE TABLE rd_trips (id int PRIMARY KEY, modes rd_mode[], one rd_mode, "
        "geom geometry(Point, 4326)); INSERT INTO rd_trips VALUES "
        "(1, '{walk,bus}', 'bus', 'SRID=4326;POINT(1 2)'), "
        """(2, '{NULL,"NULL"}', NULL, 'SRID=4326;POINT(1 2)')"""
    )
    query = "SELECT id, modes, one, geom FROM rd_trips ORDER BY id"
    lists = [["walk", "bus"], [None, "NULL"]]
    assert [row.modes for row in db.stream(query)] == lists
    assert [row.one for row in db.stream(query)] == ["bus", None]
    assert next(iter(db.stream_frames(query)))["modes"].tolist() == lists
    arrow = next(iter(db.stream_arrow(query))).column("modes").to_pylist()
    assert [json.loads(text) for text in arrow] == lists
    assert db.export(query, tmp_path / "trips.csv").features == 2
    assert '"[""walk"",""bus""]"' in (tmp_path / "trips.csv").read_text()

    async def read() -> list[Any]:
        try:
            return [row.modes async for row in db.async_stream(query)]
        finally:
            await db.adispose()

    assert asyncio.run(read()) == lists
    admin.execute("DROP TABLE rd_trips; DROP TYPE rd_mode")


def test_arrays_of_geometries_read_as_lists_of_ewkb_and_files_hold_geojson(
    db: SpatialDatabase, make_db: Callable[..., SpatialDatabase], tmp_path: Path
) -> None:
    """array_agg(geom) read as PostgreSQL's text of the array, '{0101...:0101...}' (":" is
    geometry's array delimiter), in streams, frames, Arrow and files alike."""
    import pyarrow as pa

    query = (
        "SELECT 1 AS id, 'SRID=4326;POINT(1 2)'::geometry AS geom, "
        "ARRAY['POINT(3 4)'::geometry, NULL, 'SRID=4326;POINT(5 6)'] AS pts, "
        "ARRAY['POINT(7 8)'::geography] AS places "
        "UNION ALL SELECT 2, NULL, NULL, '{}'"
    )
    three = to_shape("POINT(3 4)")
    ewkb = [shapely.to_wkb(three), None, to_ewkb("POINT(5 6)", 4326)]
    for reader in (db, make_db(driver="psycopg2")):
        first, second = reader.stream(query)
        assert [None if value is None else bytes(value) for value in first.pts] == ewkb
        assert second.pts is None and second.places == []
        assert shapely.get_srid(to_shape(bytes(first.places[0]))) == 4326
    (frame,) = db.stream_frames(query)
    assert frame["pts"][0][0] == shapely.to_wkb(three) and frame["pts"].isna()[1]
    with db.stream_arrow(query) as arrow:
        table = pa.table(arrow)
    assert table.schema.field("pts").type == pa.list_(pa.binary())
    assert table.column("pts").to_pylist()[0][0] == shapely.to_wkb(three)
    path = tmp_path / "arrays.csv"
    db.export(query, path)
    written = path.read_text().splitlines()[1]
    assert '[{""type"":""Point"",""coordinates"":[3,4]},null,' in written
    assert '""coordinates"":[7,8]}]' in written  # the geography's, through geometry
    features = orjson.loads(b"".join(db.iter_geojson(query)))["features"]
    assert features[0]["properties"]["places"][0]["coordinates"] == [7, 8]
    for name in ("arrays.gpkg", "arrays.parquet"):
        assert db.export(query, tmp_path / name).features == 2


def test_million_rows_in_bounded_memory(db: SpatialDatabase) -> None:
    """1,000,000 polygons generated on the server; RSS growth stays far under 100 MB."""
    sql = (
        "SELECT i AS id, ST_MakeEnvelope(i % 1000, i / 1000, i % 1000 + 1, i / 1000 + 1, 3857) "
        "AS geom FROM generate_series(1, 1000000) AS i"
    )
    count = total = 0
    baseline = peak = 0
    for row in db.stream(sql):
        count += 1
        total += row.id
        if count == 20_000:
            gc.collect()
            baseline = _rss_bytes()
        elif count % 50_000 == 0:
            peak = max(peak, _rss_bytes())
    assert count == 1_000_000 and total == 1_000_000 * 1_000_001 // 2
    growth = peak - baseline
    assert growth < 100 * 1024 * 1024, f"RSS grew by {growth / 2**20:.0f} MB"


@pytest.fixture
def runner(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("GEOSESSION_DATABASE_URL", database_url)
    return CliRunner()
