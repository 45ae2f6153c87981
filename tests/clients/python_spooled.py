"""Drive the gateway with the real `trino` Python DB-API client at its DEFAULT settings, which ask
for the spooling protocol (`X-Trino-Query-Data-Encoding: json+zstd,json+lz4,json`).

Usage: python_spooled.py HOST PORT ROWS[,ROWS...]
Runs `SELECT * FROM UNNEST(sequence(1, ROWS))` for each count, checks every row, and prints one
JSON line: the encodings the client asked for and the query ids.
"""
import json
import sys

import trino

host, port = sys.argv[1], int(sys.argv[2])
counts = [int(n) for n in sys.argv[3].split(",")]
conn = trino.dbapi.connect(host=host, port=port, user="spool-user", source="spool-test", http_scheme="http")
encoding = conn._client_session.encoding
assert encoding, "the client no longer asks for spooling by default"

ids = []
for n in counts:
    cur = conn.cursor()
    cur.execute(f"SELECT * FROM UNNEST(sequence(1, {n}))")
    rows = cur.fetchall()
    got = [r[0] for r in rows]
    assert got == list(range(1, n + 1)), f"{n} rows asked, {len(got)} received"
    ids.append(cur.query_id)

print(json.dumps({"encoding": encoding, "ids": ids}))
