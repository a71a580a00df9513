"""A FastAPI service on geosession: sessions per request, GeoJSON streamed by pages.

    .venv/bin/python examples/parcels_api.py            # serves a few requests in-process
    uvicorn examples.parcels_api:app                    # or serve it (pip install uvicorn)

Uses GEOSESSION_DATABASE_URL, else the embedded PostGIS (`geosession local start`), and
a table of its own, ``example_parcels`` (made, and filled with 5,000 parcels, at start).

- ``GET /parcels/{id}``: a session per request from ``Depends(db.get_session)``, closed
  after the response whatever happened; 404 when there is no such parcel.
- ``GET /parcels/{id}/near``: an ``async def`` endpoint, its async session (asyncpg)
  from ``Depends(db.async_get_session)``: the parcels within 0.01 degrees.
- ``POST /parcels``: a GeoJSON polygon, checked before the database sees it (an invalid
  one is a 422 naming the reason), stored in one explicit transaction; the response sets
  a ``wrote`` cookie with the primary's WAL position.
- ``POST /parcels/bulk``: a GeoJSON FeatureCollection (properties ``id`` and ``name``)
  loaded by ``db.ingest`` in COPY chunks; bad features are reported and the others load,
  and a request retried with the same ``Idempotency-Key`` loads nothing twice.
- ``GET /parcels.geojson?bbox=...``: a FeatureCollection streamed in keyset pages, each
  page its own short transaction, so a slow client never holds a pooled connection; read
  on a streaming replica when GEOSESSION_REPLICA_URLS names any (else the primary), one
  that has the client's own writes (its ``wrote`` cookie).
- ``GET /health``: the pool's state, which is what to watch for leaks.
- geosession's errors as HTTP answers: a key that exists is a 409, a transient failure
  (pool exhausted, connection lost, serialization conflict) a 503 with Retry-After, a
  statement timeout a 504; their messages stay in the log, not in the response.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import shapely
from fastapi import Cookie, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from geoalchemy2 import WKBElement
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from geosession import GeoSessionError, IntegrityViolation, QueryTimeout, SpatialDatabase
from geosession.demo import synthetic_polygons
from geosession.geometry import from_geojson, to_geojson
from geosession.models import SpatialMixin, geometry_column

SRID = 4326
ROWS = 5_000


class Base(DeclarativeBase):
    pass


class Parcel(SpatialMixin, Base):
    __tablename__ = "example_parcels"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    geom: Mapped[WKBElement] = geometry_column("POLYGON", SRID, nullable=False)


class NewParcel(BaseModel):
    id: int
    name: str
    geometry: dict[str, Any]  # a GeoJSON Polygon, in EPSG:4326


db = SpatialDatabase.from_env()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    Base.metadata.drop_all(db.engine)  # this example's table only
    Base.metadata.create_all(db.engine)
    rows = (
        {"id": n, "name": f"parcel {n}", "geom": polygon}
        for n, polygon in enumerate(synthetic_polygons(ROWS, seed=3), start=1)
    )
    db.ingest(Parcel, rows, srid=SRID)
    yield
    await db.adispose()  # the async pool's connections too, on the loop that opened them


app = FastAPI(title="parcels", lifespan=lifespan)
SessionDep = Annotated[Session, Depends(db.get_session)]
log = logging.getLogger("parcels")


@app.exception_handler(GeoSessionError)
def database_error(request: Request, error: GeoSessionError) -> JSONResponse:
    """What the client may do about it, without the database's words (they go to the log)."""
    log.warning("%s %s: %s", request.method, request.url.path, error)
    if isinstance(error, IntegrityViolation):
        return JSONResponse({"detail": "conflicts with an existing record"}, status_code=409)
    if error.transient:  # the same request may succeed in a moment
        headers = {"Retry-After": "1"}
        return JSONResponse({"detail": "busy, try again"}, status_code=503, headers=headers)
    if isinstance(error, QueryTimeout):
        return JSONResponse({"detail": "the query took too long"}, status_code=504)
    return JSONResponse({"detail": "database error"}, status_code=500)


@app.get("/parcels/{parcel_id}")
def get_parcel(parcel_id: int, s: SessionDep) -> dict[str, Any]:
    parcel = s.get(Parcel, parcel_id)
    if parcel is None:
        raise HTTPException(404, f"no parcel {parcel_id}")
    return {"id": parcel.id, "name": parcel.name, "area": parcel.area}


@app.get("/parcels/{parcel_id}/near")
async def near_parcels(
    parcel_id: int, s: Annotated[AsyncSession, Depends(db.async_get_session)]
) -> dict[str, Any]:
    """An async endpoint: its session comes from the asyncio pool (asyncpg)."""
    centre = select(Parcel.geom).where(Parcel.id == parcel_id).scalar_subquery()
    query = select(func.count()).where(func.ST_DWithin(Parcel.geom, centre, 0.01))
    return {"id": parcel_id, "within_0.01_degrees": (await s.execute(query)).scalar_one()}


@app.post("/parcels", status_code=201)
def add_parcel(new: NewParcel, response: Response) -> dict[str, Any]:
    try:
        polygon = from_geojson(new.geometry, srid=SRID)
    except ValueError as error:
        raise HTTPException(422, f"not a GeoJSON geometry: {error}") from None
    if polygon.geom_type != "Polygon" or not shapely.is_valid(polygon):
        reason = shapely.is_valid_reason(polygon) if polygon.geom_type == "Polygon" else ""
        raise HTTPException(422, f"need a valid Polygon, got {polygon.geom_type} {reason}")
    with db.transaction(statement_timeout="5s") as s:
        s.add(Parcel(id=new.id, name=new.name, geom=polygon))  # shapely, as it is
    response.set_cookie("wrote", db.write_position())  # this client's next reads see it
    return {"id": new.id, "geometry": to_geojson(polygon)}


@app.post("/parcels/bulk")
def add_parcels(
    collection: dict[str, Any], idempotency_key: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    ingest_id = f"bulk-{idempotency_key}" if idempotency_key else None  # a retry resumes
    report = db.ingest(Parcel, collection, on_invalid="skip", ingest_id=ingest_id)
    return report.as_dict()  # rejected: the features (by number, from 1) and why


@app.get("/parcels.geojson")
def parcels_geojson(
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in EPSG:4326")] = None,
    wrote: Annotated[str | None, Cookie()] = None,
) -> StreamingResponse:
    box = [float(part) for part in bbox.split(",")] if bbox else None
    query = select(Parcel.id, Parcel.name, Parcel.geom)
    with db.reads_after(wrote):  # the stream, read later, keeps this
        chunks = db.iter_geojson(query, pages_by="id", bbox=box, replica=True)
    return StreamingResponse(chunks, media_type="application/geo+json")


@app.get("/health")
def health() -> dict[str, Any]:
    stats = db.pool_stats()
    return {"checked_out": stats.checked_out, "idle": stats.checked_in, "size": stats.size}


def main() -> None:
    """A few requests in-process (FastAPI's TestClient), and the pool after each."""
    import warnings

    import orjson

    with warnings.catch_warnings():  # Starlette's note on its httpx-based client
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    with TestClient(app) as client:
        found = client.get("/parcels/42").json()
        print(f"GET /parcels/42: {found['name']}, area {found['area']:.3e}")
        print(f"GET /parcels/999999: {client.get('/parcels/999999').status_code}")
        near = client.get("/parcels/42/near").json()
        print(f"GET /parcels/42/near (async): {near['within_0.01_degrees']} parcels")
        bow_tie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
        refused = client.post("/parcels", json={"id": 9001, "name": "x", "geometry": bow_tie})
        print(f"POST a bow-tie: {refused.status_code} {refused.json()['detail']}")
        square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
        added = client.post("/parcels", json={"id": 9001, "name": "square", "geometry": square})
        print(f"POST a square: {added.status_code}")
        again = client.post("/parcels", json={"id": 9001, "name": "square", "geometry": square})
        print(f"POST it again: {again.status_code} {again.json()['detail']}")
        features = [
            {"type": "Feature", "geometry": g, "properties": {"id": 9100 + n, "name": "bulk"}}
            for n, g in enumerate([square, bow_tie, square])
        ]
        bulk = {"type": "FeatureCollection", "features": features}
        key = {"Idempotency-Key": "batch-7"}
        loaded = client.post("/parcels/bulk", json=bulk, headers=key).json()
        rejected = [(r["row"], r["reason"]) for r in loaded["rejected"]]
        print(f"POST /parcels/bulk: {loaded['inserted']} inserted, rejected {rejected}")
        retried = client.post("/parcels/bulk", json=bulk, headers=key).json()
        skipped = retried["already_committed"]
        print(f"POST it again: {retried['inserted']} inserted, {skipped} already loaded")
        everything = orjson.loads(client.get("/parcels.geojson").content)
        print(f"GET /parcels.geojson: {len(everything['features']):,} features")
        box = client.get("/parcels.geojson", params={"bbox": "-74,40.7,-73.99,40.71"}).content
        print(f"GET /parcels.geojson?bbox=...: {len(orjson.loads(box)['features'])} features")
        print(f"GET /health: {client.get('/health').json()}")


if __name__ == "__main__":
    main()
