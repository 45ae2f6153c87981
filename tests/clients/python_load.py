"""Keep the gateway busy with the real `trino` Python DB-API client at its default settings, as
many clients of a production gateway would, until told to stop.

Usage: python_load.py URL WORKERS STOP_FILE ROWS PAGE_DELAY_MS
Each worker holds one connection (and so reuses its keep-alive HTTP connections, as real clients
do) and runs `SELECT * FROM UNNEST(sequence(1, ROWS))` again and again, every result page
delayed by PAGE_DELAY_MS on the coordinator, checking every row; it stops when STOP_FILE exists.
Prints one JSON line: queries completed, their ids, and every failure with its time (seconds
since the epoch) and message.
"""
import json
import os
import sys
import threading
import time
from urllib.parse import urlparse

import trino

url, workers, stop_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows, delay = int(sys.argv[4]), int(sys.argv[5])
parsed = urlparse(url)
sql = f"/* emulator:page_delay_ms={delay} */ SELECT * FROM UNNEST(sequence(1, {rows}))"

lock = threading.Lock()
ids, failures = [], []


def work(n):
    conn = trino.dbapi.connect(
        host=parsed.hostname, port=parsed.port, user=f"load-{n}", source="lifecycle-test",
        http_scheme=parsed.scheme)
    while not os.path.exists(stop_file):
        cur = conn.cursor()
        try:
            cur.execute(sql)
            got = [r[0] for r in cur.fetchall()]
            if got != list(range(1, rows + 1)):
                raise AssertionError(f"{len(got)} of {rows} rows, or out of order")
            with lock:
                ids.append(cur.query_id)
        except Exception as e:  # every failure is the test's business
            with lock:
                failures.append({"at": time.time(), "query": cur.query_id, "error": f"{type(e).__name__}: {e}"})
            time.sleep(0.1)


threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"ok": len(ids), "ids": ids, "failures": failures}))
