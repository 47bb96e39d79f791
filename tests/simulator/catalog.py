"""Read a database's catalog into comparable, name-keyed facts."""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from psycopg import sql

from simulator.schema import PRIMARY_KEYS, TABLES


def catalog(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            """SELECT table_name, ordinal_position, column_name, data_type, udt_name,
                      character_maximum_length, numeric_precision, numeric_scale,
                      datetime_precision, is_nullable, column_default
               FROM information_schema.columns WHERE table_schema = 'public'
               ORDER BY table_name, ordinal_position"""
        ).fetchall()
        constraints = conn.execute(
            """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
               FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"""
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        enums = conn.execute(
            """SELECT t.typname, e.enumsortorder, e.enumlabel FROM pg_enum e
               JOIN pg_type t ON t.oid = e.enumtypid ORDER BY 1, 2"""
        ).fetchall()
        sequences = conn.execute(
            """SELECT s.relname, d.refobjid::regclass::text, a.attname
               FROM pg_class s JOIN pg_depend d ON d.objid = s.oid AND d.deptype = 'a'
               JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
               WHERE s.relkind = 'S' ORDER BY 1"""
        ).fetchall()
    return {
        "columns": columns,
        "constraints": constraints,
        "indexes": indexes,
        "enums": enums,
        "sequences": sequences,
    }


def content_digest(url: str) -> str:
    """One hash over every row of every table, in key order."""
    digest = hashlib.sha256()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table in TABLES:
            query = sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT").format(
                sql.Identifier(table), sql.Identifier(PRIMARY_KEYS[table])
            )
            with cur.copy(query) as copy:
                for block in copy:
                    digest.update(block)
    return digest.hexdigest()
