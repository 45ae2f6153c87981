"""SQLAlchemy's inspector, through the `trino` package's dialect, lists what a catalog holds.

Usage: python_inspector.py HOST PORT CATALOG SCHEMA TABLE
Prints one JSON line: the catalog's schemas, the schema's tables and the table's columns
(name, SQLAlchemy type, nullable).
"""
import json
import sys

from sqlalchemy import create_engine, inspect

host, port, catalog, schema, table = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
engine = create_engine(f"trino://inspector@{host}:{port}/{catalog}")
insp = inspect(engine)
out = {
    "schemas": sorted(insp.get_schema_names()),
    "tables": sorted(insp.get_table_names(schema=schema)),
    "columns": [[c["name"], str(c["type"]), c["nullable"]] for c in insp.get_columns(table, schema=schema)],
}
print(json.dumps(out))
