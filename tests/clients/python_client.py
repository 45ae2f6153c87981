"""Drive the gateway with the real `trino` Python DB-API client (PyPI), as a user would.

Usage: python_client.py HOST PORT
Prints one JSON line with facts the Rust test checks against the emulated backends.
"""
import json
import sys

import trino
from trino.exceptions import TrinoUserError

host, port = sys.argv[1], int(sys.argv[2])
conn = trino.dbapi.connect(host=host, port=port, user="py-user", source="pytest-client", http_scheme="http")

# Multi-page result: every row arrives, in order.
cur = conn.cursor()
cur.execute("SELECT * FROM UNNEST(sequence(1, 5000))")
rows = cur.fetchall()
assert [r[0] for r in rows] == list(range(1, 5001)), f"got {len(rows)} rows"
multi_page_id = cur.query_id

# A failing query raises the backend's error, unchanged.
try:
    cur = conn.cursor()
    cur.execute("SELECT fail('kaboom from python')")
    cur.fetchall()
    raise AssertionError("expected a TrinoUserError")
except TrinoUserError as e:
    assert "kaboom from python" in str(e), str(e)
    assert e.error_name == "GENERIC_USER_ERROR", e.error_name

# Cancel a running query: the DELETE must reach the backend that runs it.
cur = conn.cursor()
cur.execute("/* emulator:page_delay_ms=50 */ SELECT * FROM UNNEST(sequence(1, 1000000))")
assert cur.fetchone()[0] == 1
canceled_id = cur.query_id
cur.cancel()

# USE sets catalog and schema on the connection; the next query carries them.
cur = conn.cursor()
cur.execute("USE tpch.tiny")
cur.fetchall()
cur = conn.cursor()
cur.execute("SELECT current_catalog, current_schema")
assert cur.fetchall() == [["tpch", "tiny"]], "USE was not carried to the next query"

print(json.dumps({"multi_page_id": multi_page_id, "canceled_id": canceled_id}))
