"""The real `trino` Python client (default settings) against a gateway that holds queries in its
queue while its cluster is full (tests/queue.rs).

Usage:
  python_queue.py fair URL ADMIN_URL BURST SOLO
      User `burst` submits BURST queries at once; once the gateway holds most of them, user `solo`
      submits SOLO. Prints the users in the order their queries completed, every failure, and
      each query's first and last id.
  python_queue.py one URL SQL
      Runs one statement; prints its rows, the ids the client saw and the states it went through.
  python_queue.py cancel URL ADMIN_URL
      Starts a query in a thread; once the gateway holds it, cancels it (the client's own
      `cancel`: DELETE of its nextUri). Prints what the client saw.
  python_queue.py error URL SQL
      Runs one statement expected to fail; prints the error name and message.
Each mode prints one JSON line.
"""
import json
import sys
import threading
import time
import urllib.request
from urllib.parse import urlparse

import trino

mode, url = sys.argv[1], sys.argv[2]
parsed = urlparse(url)
SQL = "/* emulator:page_delay_ms=60 */ SELECT * FROM UNNEST(sequence(1, 4))"


def connect(user):
    return trino.dbapi.connect(host=parsed.hostname, port=parsed.port, user=user,
                               source="queue-test", http_scheme=parsed.scheme)


def held(admin):
    with urllib.request.urlopen(f"{admin}/api/v1/queue") as r:
        return json.load(r)["waiting"]


def wait_held(admin, at_least):
    for _ in range(600):
        if held(admin) >= at_least:
            return
        time.sleep(0.05)
    raise SystemExit(f"the gateway never held {at_least} queries")


if mode == "fair":
    admin, burst, solo = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    lock = threading.Lock()
    done, failures, ids = [], [], []

    def one(user):
        cur = connect(user).cursor()
        try:
            cur.execute(SQL)
            rows = [r[0] for r in cur.fetchall()]
            if rows != [1, 2, 3, 4]:
                raise AssertionError(f"rows {rows}")
            with lock:
                done.append(user)
                ids.append({"user": user, "first": cur.query_id, "state": cur.stats.get("state")})
        except Exception as e:  # every failure is the test's business
            with lock:
                failures.append(f"{user}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=one, args=("burst",)) for _ in range(burst)]
    for t in threads:
        t.start()
    wait_held(admin, burst // 2)
    late = [threading.Thread(target=one, args=("solo",)) for _ in range(solo)]
    for t in late:
        t.start()
    for t in threads + late:
        t.join()
    print(json.dumps({"order": done, "failures": failures, "ids": ids}))

elif mode == "one":
    cur = connect("py-queue").cursor()
    cur.execute(sys.argv[3])
    first_id = cur.query_id
    rows = cur.fetchall()
    print(json.dumps({"rows": rows, "query_id": first_id, "state": cur.stats.get("state"),
                      "queued_ms": cur.stats.get("queuedTimeMillis")}))

elif mode == "cancel":
    admin = sys.argv[3]
    cur = connect("py-cancel").cursor()
    outcome = {}

    def run():
        try:
            cur.execute(SQL)
            outcome["rows"] = cur.fetchall()
        except Exception as e:
            outcome["error"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=run)
    t.start()
    wait_held(admin, 1)
    while cur.query_id is None:
        time.sleep(0.01)
    held_id = cur.query_id
    cur.cancel()
    t.join()
    print(json.dumps({"held_id": held_id, "cancelled": cur._query.cancelled,
                      "left": held(admin), **outcome}))

elif mode == "error":
    cur = connect("py-error").cursor()
    try:
        cur.execute(sys.argv[3])
        cur.fetchall()
        print(json.dumps({"error": None}))
    except trino.exceptions.TrinoQueryError as e:
        print(json.dumps({"error": e.error_name, "type": e.error_type, "message": e.message,
                          "query_id": e.query_id}))
