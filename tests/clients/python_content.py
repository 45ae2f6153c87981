"""Drive the gateway with the real `trino` Python DB-API client at its default settings (spooling
asked for) to show routing by query content.

Usage: python_content.py HOST PORT
Runs a few statements, with and without a session catalog, and prints one JSON line mapping each
statement to its query id (the id's last five characters name the coordinator that ran it).
"""
import json
import sys

import trino

host, port = sys.argv[1], int(sys.argv[2])
out = {}


def run(conn, label, sql):
    cur = conn.cursor()
    cur.execute(sql)
    rows = cur.fetchall()
    out[label] = {"id": cur.query_id, "rows": len(rows)}


plain = trino.dbapi.connect(host=host, port=port, user="content-user", http_scheme="http")
run(plain, "hive_qualified", "SELECT * FROM hive.web.daily")
run(plain, "iceberg_qualified", "SELECT * FROM iceberg.web.daily")
run(plain, "no_table", "SELECT 1")

# The session's catalog and schema qualify a bare table name.
hive_session = trino.dbapi.connect(
    host=host, port=port, user="content-user", http_scheme="http", catalog="hive", schema="web"
)
run(hive_session, "hive_session", "SELECT * FROM daily")

print(json.dumps(out))
