#!/usr/bin/env bash
# Memory of the gateway's queue: the gateway's RSS idle, then while it holds HELD queries (default
# 10,000), then while every one of them is being polled by its own client connection (each poll
# waits at the gateway up to 1 s, as Trino's queued endpoint does). See BENCHMARKS.md.
#
#   benches/load/queue.sh                     (builds in release mode)
#   BIN=/path/to/trino-edge HELD=10000 benches/load/queue.sh
#
# The queries are held because their users are at `max_running_per_user: 1`: each of USERS users
# (default 50) first runs one query, which a canned backend accepts and never finishes, then
# submits HELD/USERS more, each with the headers the Python client sends and a 300-byte statement.
# Needs python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
held=${HELD:-10000}
users=${USERS:-50}

[ -n "${BIN:-}" ] || cargo build --release --quiet
bin=${BIN:-$PWD/target/release/trino-edge}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

backend=127.0.0.1:19281 gateway=127.0.0.1:19282 admin=127.0.0.1:19284

# A canned coordinator: every submission is accepted, and stays queued on it.
python3 - "$backend" >"$work/backend.log" 2>&1 <<'PY' &
import itertools, json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
host, port = sys.argv[1].split(":")
seq = itertools.count(1)
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def answer(self, body):
        b = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def do_GET(self):
        self.answer({"nodeVersion": {"version": "bench"}, "coordinator": True, "starting": False})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        qid = f"20261130_000000_{next(seq):05d}_bench"
        self.answer({"id": qid, "infoUri": f"http://{sys.argv[1]}/ui/query.html?{qid}",
                     "nextUri": f"http://{sys.argv[1]}/v1/statement/queued/{qid}/y/1",
                     "stats": {"state": "QUEUED", "queued": True, "scheduled": False}})
ThreadingHTTPServer((host, int(port)), H).serve_forever()
PY
pids+=($!)

cat >"$work/gw.yaml" <<EOF
proxy:
  listeners: [{ name: main, address: "$gateway" }]
admin: { address: "$admin" }
routing: { default_group: adhoc }
groups:
  - { name: adhoc, queue: { max_queued: $((held + 1000)), client_timeout: 1h, max_running_per_user: 1 } }
backends: [{ name: b1, url: "http://$backend", group: adhoc }]
health: { enabled: false }
server: { threads: 2, grace_period: 0s, graceful_shutdown_timeout: 1s }
database: { url: "sqlite://$work/state.db" }
EOF
RUST_LOG=warn "$bin" serve --config "$work/gw.yaml" --config-source file >"$work/gw.log" 2>&1 &
gw_pid=$!
pids+=($gw_pid)

python3 - "$gateway" "$admin" "$gw_pid" "$held" "$users" <<'PY'
import asyncio, http.client, json, sys, time, urllib.request
gateway, admin, pid, held, users = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
host, port = gateway.split(":")

def rss_mib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

for _ in range(200):
    try:
        urllib.request.urlopen(f"http://{admin}/livez"); break
    except Exception:
        time.sleep(0.05)
sql = "SELECT o.orderkey, o.custkey, sum(l.extendedprice * (1 - l.discount)) AS revenue " \
      "FROM tpch.tiny.orders o JOIN tpch.tiny.lineitem l ON l.orderkey = o.orderkey " \
      "WHERE o.orderdate < DATE '1995-03-15' AND l.shipdate > DATE '1995-03-15' " \
      "GROUP BY o.orderkey, o.custkey ORDER BY revenue DESC LIMIT 10 /* padding to 300 */"
def headers(user):
    return {"X-Trino-User": user, "X-Trino-Source": "trino-python-client", "X-Trino-Catalog": "tpch",
            "X-Trino-Schema": "tiny", "X-Trino-Time-Zone": "Europe/Berlin",
            "X-Trino-Client-Capabilities": "PARAMETRIC_DATETIME",
            "X-Trino-Query-Data-Encoding": "json+zstd,json+lz4,json",
            "User-Agent": "trino-python-client/0.340.0", "Accept-Encoding": "gzip, deflate",
            "Content-Type": "text/plain", "X-Trino-Client-Info": '{"app":"bench"}'}

conn = http.client.HTTPConnection(host, int(port))
def submit(user):
    conn.request("POST", "/v1/statement", body=sql, headers=headers(user))
    r = conn.getresponse()
    return json.loads(r.read())

# Each user's first query is accepted by the backend and keeps the user at the limit.
for u in range(users):
    submit(f"user-{u:03d}")
time.sleep(1)
idle = rss_mib()
t0 = time.time()
next_uris = []
for i in range(held):
    page = submit(f"user-{i % users:03d}")
    assert page["stats"]["state"] == "QUEUED", page
    next_uris.append(page["nextUri"])
took = time.time() - t0
waiting = json.load(urllib.request.urlopen(f"http://{admin}/api/v1/queue"))["waiting"]
assert waiting == held, waiting
time.sleep(1)
holding = rss_mib()
print(f"held queries:            {held} ({users} users), submitted in {took:.1f} s over one connection")
print(f"gateway RSS idle:        {idle:7.1f} MiB")
print(f"gateway RSS holding:     {holding:7.1f} MiB  (+{holding - idle:.1f} MiB, {1024 * 1024 * (holding - idle) / held:.0f} bytes per held query)")

# Now every held query's client polls on its own connection, as real clients do.
async def poller(uri, stop, polls):
    path = uri.split(port, 1)[1]
    reader, writer = await asyncio.open_connection(host, int(port))
    req = f"GET {path} HTTP/1.1\r\nHost: {gateway}\r\nX-Trino-User: poller\r\n\r\n".encode()
    while not stop.is_set():
        writer.write(req)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
        await reader.readexactly(length)
        polls[0] += 1
    writer.close()

async def main():
    stop, polls = asyncio.Event(), [0]
    tasks = []
    for i, uri in enumerate(next_uris):
        tasks.append(asyncio.create_task(poller(uri, stop, polls)))
        if i % 500 == 499:
            await asyncio.sleep(0.05)
    await asyncio.sleep(5)
    peak = rss_mib()
    before = polls[0]
    await asyncio.sleep(3)
    rate = (polls[0] - before) / 3
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return peak, rate

peak, rate = asyncio.run(main())
print(f"gateway RSS polled:      {peak:7.1f} MiB  (+{peak - idle:.1f} MiB with {held} client connections, each polling; {rate:.0f} polls/s)")
PY
