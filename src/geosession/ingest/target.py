"""What an ingest writes to: the table, its columns and their geometry constraints.

Read from the server's catalog (``pg_attribute``, PostGIS's ``geometry_columns`` and
``geography_columns``) whatever the user passed (a mapped class, a Table or a name), so
that validation checks what the server would check and COPY names only columns that exist.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, inspect

from geosession.errors import ConfigurationError, DatabaseError
from geosession.names import split_table_name
from geosession.srs import SpatialRef, crs_of, in_degrees, spatial_ref

_TEXT_RECEIVERS = [
    "textrecv",
    "varcharrecv",
    "bpcharrecv",
    "namerecv",
    "enum_recv",
    "xml_recv",
    "citextrecv",
]
"""Binary input functions that read the value's text (psycopg can send any type so)."""
_COLUMNS_SQL = """
    SELECT a.attname, CASE WHEN t.typcategory = 'A' THEN e.typname || '[]' ELSE t.typname END,
           a.attnotnull OR base.not_null,
           coalesce(gc.srid, gg.srid, postgis_typmod_srid(spatial.typmod)),
           coalesce(gc.type, gg.type, postgis_typmod_type(spatial.typmod)),
           coalesce(gc.coord_dimension, gg.coord_dimension, postgis_typmod_dims(spatial.typmod)),
           t.typname = 'geography' OR postgis_typmod_srid(spatial.typmod) <> 0 AS stamps_srid,
           a.attgenerated <> '' OR a.attidentity = 'a' AS generated,
           a.atthasdef OR a.attidentity <> '' AS has_default,
           t.typcategory <> 'A' AND coalesce(r.proname = ANY(%(receivers)s), false)
               AS text_input,
           a.attidentity = 'a' AS identity,
           CASE WHEN er.proname = ANY(%(receivers)s) THEN e.oid END AS text_elements,
           format_type(a.atttypid, -1) AS cast_type,
           CASE WHEN t.typname IN ('varchar', 'bpchar') AND base.typmod >= 4
                THEN base.typmod - 4 END AS max_length,
           format_type(a.atttypid, a.atttypmod) AS declared,
           srs.auth_name, srs.auth_srid, srs.srtext, srs.proj4text
    FROM pg_attribute a
    CROSS JOIN LATERAL (  -- a domain is sent as the type it is based on, with its typmod
        WITH RECURSIVE chain(oid, typmod, depth, not_null) AS (  -- and NOT NULL if any says so
            SELECT a.atttypid, a.atttypmod, 0, false
            UNION ALL
            SELECT d.typbasetype, CASE WHEN chain.typmod >= 0 THEN chain.typmod
                                       ELSE d.typtypmod END, chain.depth + 1,
                   chain.not_null OR d.typnotnull
            FROM chain JOIN pg_type d ON d.oid = chain.oid WHERE d.typtype = 'd'
        )
        SELECT oid, typmod, not_null FROM chain ORDER BY depth DESC LIMIT 1
    ) base
    JOIN pg_type t ON t.oid = base.oid
    LEFT JOIN LATERAL (  -- a domain's geometry(type, srid), which geometry_columns omits
        SELECT base.typmod WHERE t.typname IN ('geometry', 'geography') AND base.typmod >= 0
    ) spatial ON true
    LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
    LEFT JOIN pg_proc r ON r.oid = t.typreceive  -- none: raster, box3d (sent as text)
    LEFT JOIN pg_proc er ON er.oid = e.typreceive
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN geometry_columns gc ON gc.f_table_schema = n.nspname
         AND gc.f_table_name = c.relname AND gc.f_geometry_column = a.attname
    LEFT JOIN geography_columns gg ON gg.f_table_schema = n.nspname
         AND gg.f_table_name = c.relname AND gg.f_geography_column = a.attname
    LEFT JOIN spatial_ref_sys srs
         ON srs.srid = coalesce(gc.srid, gg.srid, postgis_typmod_srid(spatial.typmod))
    WHERE a.attrelid = %(table)s AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
"""

DATABASE_IDENTITY = """(
    SELECT CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')
           THEN (SELECT system_identifier::text FROM pg_control_system()) || '/' || db.oid END
    FROM pg_database db WHERE db.datname = current_database()
)"""
"""This database in this cluster (NULL without the right to read the cluster's identifier):
what makes a table's OID mean something, as restoring a dump gives every table a new one."""
_DATABASE_SQL = (
    f"SELECT {DATABASE_IDENTITY}, has_database_privilege(current_database(), 'TEMPORARY')"
)
_TRIGGERS_SQL = """
    SELECT EXISTS (SELECT 1 FROM pg_trigger  -- the partitions' too: COPY fires theirs
                   WHERE (tgrelid = %(oid)s OR tgrelid IN (
                       SELECT relid FROM pg_partition_tree(CAST(%(oid)s AS oid))))
                   AND NOT tgisinternal AND tgtype & 7 = 7),  -- ROW, BEFORE, INSERT
           EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = %(oid)s
                   AND tgtype & 68 = 68),  -- INSTEAD OF, INSERT
           EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = %(oid)s AND condeferrable),
           EXISTS (SELECT 1 FROM pg_rewrite WHERE ev_class = %(oid)s AND ev_type = '3')
"""
_UNIQUE_KEYS_SQL = """
    SELECT array_agg(a.attname::text ORDER BY k.position) FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = %(oid)s AND i.indisunique AND i.indimmediate AND i.indisvalid
          AND i.indpred IS NULL AND i.indexprs IS NULL AND k.position <= i.indnkeyatts
    GROUP BY i.indexrelid, i.indisprimary
    ORDER BY i.indisprimary DESC, i.indexrelid
"""
"""The columns of each unique index ON CONFLICT can name: the primary key first; not a
partial, expression or deferrable one (INCLUDE columns are not part of the key)."""
_KINDS = {"v": "view", "m": "materialized view", "S": "sequence", "i": "index", "c": "type"}
"""Relations COPY FROM cannot load (a view only with an INSTEAD OF INSERT trigger)."""


@dataclass(frozen=True)
class GeometrySpec:
    """The constraints PostGIS puts on one geometry column."""

    srid: int
    geometry_type: str
    """Upper-case PostGIS name (POLYGON, MULTIPOLYGON, GEOMETRY ...), without Z/M."""
    dimension: int
    reference: SpatialRef | None = field(default=None, compare=False)
    """The SRID's spatial_ref_sys row (None: not in it)."""
    measured: bool = False
    """Whether the column holds M values (XYM, XYZM)."""
    stamps_srid: bool = True
    """Whether the server gives a geometry without an SRID the column's: a typmod's
    (geometry(Point, 4326)) does; CHECK constraints (AddGeometryColumn(..., use_typmod =>
    false), PostGIS 1's columns, which geometry_columns reads too) refuse it instead."""

    @property
    def has_z(self) -> bool:
        return self.dimension == 4 or (self.dimension == 3 and not self.measured)

    @property
    def unconstrained(self) -> bool:
        """A plain ``geometry`` column, which takes any SRID, type and dimension."""
        return self.srid == 0 and self.geometry_type == "GEOMETRY"

    @property
    def crs(self) -> str | None:
        """What PROJ calls the column's CRS in this database (None: none it reads)."""
        return crs_of(self.srid, [self.reference] if self.reference else [])

    @property
    def in_degrees(self) -> bool:
        """Whether the column's SRID has longitudes and latitudes (EPSG:4326 ...)."""
        return in_degrees(self.reference)


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str
    """The server's type name (int4, text, geometry ...; text[] for an array of text; for a
    domain, the type it is based on)."""
    not_null: bool
    geometry: GeometrySpec | None
    generated: bool = False
    """GENERATED ALWAYS, AS (...) STORED or AS IDENTITY: the server computes or numbers it.

    COPY cannot write the first and, unlike INSERT, writes the second without OVERRIDING
    SYSTEM VALUE and without advancing its sequence, so that later INSERTs collide with
    the loaded values: both are left to the server."""
    has_default: bool = False
    """A DEFAULT or an identity: a source may leave it out."""
    text_input: bool = False
    """Its binary input reads text (varchar, enums, xml, citext): a type psycopg has no
    binary dumper for can still be sent as its text."""
    text_elements: int = 0
    """For an array of such a type (an enum's): the element type's OID, which a text[]
    sent for it must name."""
    identity: bool = False
    """GENERATED ALWAYS AS IDENTITY (``generated`` too): numbered, not computed."""
    cast_type: str = ""
    """The column's type as SQL, without its typmod (``"bit"``, ``public.mac``, ``pair[]``):
    what text sent for a type without a binary dumper is cast to. The INSERT from the
    stage then applies the typmod as an INSERT of the text would (bit(4) refuses '10',
    which a cast to bit(4) would pad)."""
    max_length: int | None = None
    """The characters a varchar(n) or char(n) holds: n."""
    declared: str = ""
    """The type as the table declares it, typmod included (``geometry(Point,4326)``):
    what each chunk checks the column still has (:func:`ensure_unchanged`)."""

    @property
    def generated_as(self) -> str:
        """What makes it generated, for messages."""
        return "GENERATED ALWAYS AS IDENTITY" if self.identity else "GENERATED ALWAYS AS (...)"


@dataclass(frozen=True)
class Target:
    """A resolved target table: its quoted name and columns in table order."""

    schema: str
    name: str
    quoted: str
    columns: tuple[Column, ...]
    oid: int = 0
    """The table's OID: a table dropped and made again under the same name has another."""
    insert_triggers: bool = False
    """BEFORE INSERT row triggers (its own or a partition's), which may fill columns the
    source leaves out or gives as NULL."""
    deferrable: bool = False
    """Constraints (keys, foreign keys, constraint triggers) that may be checked at COMMIT,
    where no row that breaks them can be found: each chunk checks them at once."""
    insert_rules: bool = False
    """Rules ON INSERT (CREATE RULE ... DO INSTEAD INSERT INTO ...), which COPY does not
    apply: rows go through a staging table and an INSERT, which does."""
    row_security: bool = False
    """Row-level security applies to this role on the table: COPY FROM refuses such a
    table, so rows go through a staging table and an INSERT, which the policies check."""
    database: str | None = None
    """Where ``oid`` is the table's: the cluster's system identifier and the database's
    OID (None when the server does not say). A restored dump has other OIDs."""
    temporary: bool = True
    """The role may create temporary tables here (the TEMPORARY privilege, PUBLIC's unless
    revoked): where it may not, rows the server refuses are found by halving the chunk."""
    unique_keys: tuple[tuple[str, ...], ...] = ()
    """The columns of the primary key (first) and of the other unique constraints and
    indexes that ``INSERT ... ON CONFLICT`` can match on."""
    timezone: dt.tzinfo = dt.UTC
    """The session's TimeZone: the server reads a timestamp without a zone in it for a
    timestamptz column, and gives a timestamp column the local time there of one with a
    zone. COPY's binary format does neither, so the ingest converts as the server would."""

    @property
    def geometry_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.geometry is not None)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def quote(self, identifier: str) -> str:
        return double_quoted(identifier)

    def sibling(self, suffix: str) -> str:
        """The quoted name of a table beside this one, e.g. ``parcels_rejected``."""
        return f"{self.quote(self.schema)}.{self.quote(self.name + suffix)}"


def double_quoted(identifier: str) -> str:
    """``identifier`` always double-quoted (as the ingest writes every name in SQL)."""
    return '"' + identifier.replace('"', '""') + '"'


def sql_literal(value: str) -> str:
    """``value`` as an SQL string literal, for SQL that advice gives to run."""
    return "'" + value.replace("'", "''") + "'"


IDENTIFIER_BYTES = 63
"""The bytes of a name PostgreSQL keeps (NAMEDATALEN - 1): a longer one is cut."""


def stored_identifier(name: str) -> str:
    """The name PostgreSQL keeps of ``name``: its first 63 bytes, cut between characters
    (so a field named longer lands in the column CREATE TABLE made of it, as in SQL)."""
    encoded = name.encode()
    if len(encoded) <= IDENTIFIER_BYTES:
        return name
    return encoded[:IDENTIFIER_BYTES].decode(errors="ignore")


SCHEMA_EXISTS_SQL = "SELECT to_regnamespace(%s) IS NOT NULL"
"""Takes the schema's name as :func:`double_quoted` gives it (to_regnamespace parses it)."""


def missing_schema(schema: str, table: str) -> ConfigurationError:
    """The error for a target whose schema does not exist (to_regclass says only NULL)."""
    name = double_quoted(schema)
    return ConfigurationError(
        f"Schema {name} does not exist, so table {table} cannot be there: create it first "
        f"(CREATE SCHEMA {name}), or check the schema's name and case"
    )


def resolve_target(cursor: Any, target: Any) -> Target:
    """Resolves a mapped class, a Table or a (schema-qualified) table name."""
    schema, name = schema_and_name(target)
    quoted_name = double_quoted(name)
    relation = f"{double_quoted(schema)}.{quoted_name}" if schema else quoted_name
    cursor.execute(
        "SELECT n.nspname, c.oid, c.relkind, row_security_active(c.oid) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
        (relation,),
    )
    found = cursor.fetchone()
    if found is None:
        if schema:
            cursor.execute(SCHEMA_EXISTS_SQL, (double_quoted(schema),))
            if not cursor.fetchone()[0]:
                raise missing_schema(schema, relation)
        raise ConfigurationError(
            f"Table {relation} does not exist: create it first (for a mapped class: "
            "Base.metadata.create_all(db.engine)), or let the ingest create it with "
            "create=True (on the command line: --create)"
        )
    cursor.execute(_TRIGGERS_SQL, {"oid": found[1]})
    before_insert, instead_of_insert, deferrable, insert_rules = cursor.fetchone()
    kind = _KINDS.get(str(found[2]))
    if kind is not None and not (kind == "view" and (instead_of_insert or insert_rules)):
        raise ConfigurationError(
            f"{relation} is a {kind}, which COPY cannot load: ingest into a table (a view "
            "takes rows only through an INSTEAD OF INSERT trigger or an INSERT rule)"
        )
    cursor.execute(_DATABASE_SQL)
    database, temporary = cursor.fetchone()
    cursor.execute(_COLUMNS_SQL, {"table": found[1], "receivers": _TEXT_RECEIVERS})
    columns = tuple(_column(row) for row in cursor.fetchall())
    cursor.execute(_UNIQUE_KEYS_SQL, {"oid": found[1]})
    unique_keys = tuple(tuple(row[0]) for row in cursor.fetchall())
    return Target(
        schema=str(found[0]),
        name=name,
        quoted=f"{double_quoted(str(found[0]))}.{quoted_name}",
        columns=columns,
        oid=int(found[1]),
        insert_triggers=bool(before_insert),
        row_security=bool(found[3]),
        deferrable=bool(deferrable),
        insert_rules=bool(insert_rules),
        database=database,
        temporary=bool(temporary),
        unique_keys=unique_keys,
        timezone=cursor.connection.info.timezone,
    )


def check_required_columns(
    target: Target, present: Collection[str], *, started_empty: bool = True
) -> None:
    """A NOT NULL column without a default that the source lacks fails every row: refused
    before the first one (unless a BEFORE INSERT trigger may fill it) instead of every
    chunk's rows found one by one on the server to quarantine them all. Into a table
    that had rows (not ``started_empty``) a file's own feature ids are not loaded, which
    is why a key without a default may be missing: the message says so."""
    missing = [
        c.name
        for c in target.columns
        if c.not_null and not (c.has_default or c.generated) and c.name not in present
    ]
    if not missing or target.insert_triggers:
        return
    message = (
        f"The source has no values for {', '.join(missing)}: NOT NULL column(s) of "
        f"{target.quoted} without a default. Add them to the source, or give the "
        "column(s) a DEFAULT"
    )
    key = target.unique_keys[0] if target.unique_keys else ()
    if not started_empty and len(key) == 1 and key[0] in missing:
        column = double_quoted(key[0])
        message += (
            f". A file's own feature ids (a GeoPackage's fid) load into {column} only while "
            "the table is empty, as they would collide with the ids of the rows already "
            "there: give the key a DEFAULT that numbers new rows (ALTER TABLE "
            f"{target.quoted} ALTER COLUMN {column} ADD GENERATED BY DEFAULT AS IDENTITY, "
            "then move it past the ids there with setval), or load into an empty table"
        )
    raise ConfigurationError(message)


_DECLARED_SQL = """
    SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
    WHERE a.attrelid = %(oid)s AND a.attrelid = to_regclass(%(name)s)
          AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY(%(columns)s)
"""


def ensure_unchanged(cursor: Any, target: Target, columns: Sequence[str], where: str) -> None:
    """Refuses to go on when another session altered, dropped or replaced the table since
    the load read it: binary COPY sends each column as the type it had then, which the
    server would refuse in every row, or keep as another type's bytes (an int8 read as a
    float8, a timestamp as a timestamptz)."""
    known = [c for c in target.columns if c.name in columns and c.declared]
    if not known:
        return
    names = [c.name for c in known]
    cursor.execute(_DECLARED_SQL, {"oid": target.oid, "name": target.quoted, "columns": names})
    now = {str(name): str(declared) for name, declared in cursor.fetchall()}
    if not now:  # not a ConfigurationError: the rows committed before did not stay
        raise DatabaseError(
            f"{target.quoted} was dropped or replaced by another session while the load "
            f"ran, so {where} were not written. Run the load again: the rows it committed "
            "went with the table, so a new run starts over"
        )
    changes = [
        f"{c.name} was {c.declared}, "
        + (f"is {now[c.name]} now" if c.name in now else "renamed or dropped")
        for c in known
        if now.get(c.name) != c.declared
    ]
    if changes:
        raise ConfigurationError(
            f"{target.quoted} was altered by another session while the load ran "
            f"({'; '.join(changes)}), so {where} were not written: binary COPY sends each "
            "column as the type it had when the load began, and a new run reads the table "
            "as it is now"
        )


def schema_and_name(target: Any) -> tuple[str | None, str]:
    _refuse_joined_inheritance(target)
    table = getattr(target, "__table__", target)
    if isinstance(table, Table):
        return table.schema, table.name
    if isinstance(table, str):
        name = split_table_name(table)
        if name is None:
            raise ConfigurationError(
                f"{table!r} is not a table name: give table or schema.table, with double "
                'quotes around a part that holds a dot or a quote ("my.table")'
            )
        return name
    raise ConfigurationError(
        "ingest target must be a mapped class, a Table or a table name, "
        f"not {type(target).__name__}"
    )


def _refuse_joined_inheritance(target: Any) -> None:
    """A class mapped over several tables (joined-table inheritance) has each row in all of
    them, which the ORM inserts in turn; COPY loads one table."""
    mapper = inspect(target, raiseerr=False) if isinstance(target, type) else None
    tables = getattr(mapper, "tables", ())
    if len(tables) > 1:
        names = ", ".join(table.fullname for table in tables)
        raise ConfigurationError(
            f"{target.__name__} is mapped over {len(tables)} tables (joined-table "
            f"inheritance: {names}), and COPY loads one table: load each table with its "
            "own columns (the base table's first, then the others with the same keys), or "
            "use session.add_all"
        )


def _column(row: Any) -> Column:
    described, srs_row = row[:-4], row[-4:]  # spatial_ref_sys: auth_name ... proj4text
    name, type_name, not_null, srid, geometry_type, dimension, stamps, *flags = described[:-4]
    text_elements, cast_type, max_length, declared_type = described[-4:]
    generated, has_default, text_input, identity = map(bool, flags)
    spec = None
    if type_name in ("geometry", "geography"):
        declared = (geometry_type or "GEOMETRY").upper()  # POINTM, or PointZM from typmods
        base = declared.rstrip("M").rstrip("Z") or "GEOMETRY"
        reference = spatial_ref((srid, *srs_row)) if srid and any(srs_row) else None
        dims = int(dimension or 2)
        measured = declared.endswith("M") or dims == 4
        spec = GeometrySpec(int(srid or 0), base, dims, reference, measured, bool(stamps))
    return Column(
        name,
        type_name,
        bool(not_null),
        spec,
        generated,
        has_default,
        text_input,
        int(text_elements or 0),
        identity,
        cast_type,
        max_length,
        str(declared_type),
    )
