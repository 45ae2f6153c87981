"""Run SQL statements with the real `trino` Python DB-API client at its default settings (which
ask for spooled results) and print one JSON line: each statement's rows and column types.

Usage: python_sql.py HOST PORT STATEMENT [STATEMENT...]
"""
import json
import sys

import trino

host, port = sys.argv[1], int(sys.argv[2])
conn = trino.dbapi.connect(host=host, port=port, user="sql-user", source="sql-test", http_scheme="http")
out = []
for sql in sys.argv[3:]:
    cur = conn.cursor()
    cur.execute(sql)
    rows = cur.fetchall()
    types = [d[1] for d in (cur.description or [])]
    out.append({"rows": [[str(v) if not isinstance(v, (int, float, str, type(None))) else v for v in r] for r in rows],
                "types": types})
print(json.dumps(out))
