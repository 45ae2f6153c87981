#!/usr/bin/env bash
# Load benchmark: the same canned Trino backend reached (a) directly, (b) through trino-edge,
# (c) through nginx as a plain keep-alive reverse proxy and (d) through a bare Pingora proxy with
# none of our logic — alternating, in one run, on loopback. See BENCHMARKS.md.
#
#   benches/load/run.sh [seconds per run] [rounds]        (defaults: 4 3)
#   SECTIONS="stream idle" benches/load/run.sh            (only some sections; latency and hybrid
#                                                          need throughput, which gives their rates;
#                                                          sections: throughput latency stream idle
#                                                          modes hybrid)
#   COUNT=2000 benches/load/run.sh                        (instructions per submission instead,
#                                                          with callgrind; needs valgrind)
#   PROFILE=submit|page benches/load/run.sh               (a perf profile of the gateway instead)
#   BIN=/path/to/trino-edge COUNT=2000 benches/load/run.sh
#                                                         (a binary built earlier instead of building:
#                                                          two builds counted back to back)
#   CG_OUT=FILE COUNT=2000 benches/load/run.sh            (keeps the gateway's callgrind profile)
#   SQL_BYTES=100000 CONTENT=1 COUNT=2000 benches/load/run.sh
#                                                         (submissions of a statement padded to
#                                                          SQL_BYTES; CONTENT=1 adds a policy on
#                                                          query content, so the gateway holds
#                                                          and parses each statement)
#
# The backend is nginx serving canned answers (so it is never the bottleneck): a small JSON answer
# to POST /v1/statement (the gateway reads it to learn the query id) and a ~1 MiB result page
# (streamed through). Also: a 1 GiB result streamed through the gateway (throughput, peak RSS),
# and 10,000 idle keep-alive client connections (RSS). `modes`: a second trino-edge whose backend
# has `forwarding: rewrite` against the default `headers` (submissions and pages), and a 16 MiB
# spooled segment downloaded directly and through each proxy (the gateway routes it by the query
# id it puts into segment URIs).
# Needs wrk, nginx and python3 (apt-get install -y wrk nginx-light); builds in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-4}
rounds=${2:-3}

[ -n "${BIN:-}" ] || cargo build --release --quiet
bin=${BIN:-$PWD/target/release/trino-edge}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

backend=127.0.0.1:19181 gateway=127.0.0.1:19182 nginx_proxy=127.0.0.1:19183 admin=127.0.0.1:19184 bare=127.0.0.1:19185
rewriting=127.0.0.1:19186 rewriting_admin=127.0.0.1:19187
id=20261123_000000_00001_bench
python3 - "$work" "$id" <<'PY'
import json, sys
work, qid = sys.argv[1], sys.argv[2]
cols = [{"name": n, "type": t, "typeSignature": {"rawType": t, "arguments": []}}
        for n, t in [("id", "bigint"), ("name", "varchar"), ("amount", "double"), ("day", "date")]]
rows, size, i = [], 0, 0
while size < 1_000_000:
    r = [i, f"customer-{i:08d}", i * 1.25, "2026-11-23"]; rows.append(r); size += len(json.dumps(r)) + 1; i += 1
# URIs on the backend's own address, as a cluster without process-forwarded builds them (what
# `forwarding: rewrite` replaces; the other targets pass them on as they are).
host = "http://127.0.0.1:19181"
page = {"id": qid, "infoUri": f"{host}/ui/query.html?{qid}", "nextUri": f"{host}/v1/statement/executing/{qid}/y/2", "columns": cols, "data": rows,
        "stats": {"state": "RUNNING", "queued": False, "scheduled": True}}
open(f"{work}/page.json", "w").write(json.dumps(page))
submit = {"id": qid, "infoUri": f"{host}/ui/query.html?{qid}",
          "nextUri": f"{host}/v1/statement/queued/{qid}/y/1",
          "stats": {"state": "QUEUED", "queued": True, "scheduled": False, "nodes": 0, "totalSplits": 0}, "warnings": []}
open(f"{work}/submit.json", "w").write(json.dumps(submit))
PY
head -c 1073741824 /dev/zero | tr '\0' 'x' > "$work/big.json"
head -c 16777216 /dev/urandom > "$work/segment.bin"
page_bytes=$(wc -c <"$work/page.json")
submit_json=$(cat "$work/submit.json")

cat >"$work/backend.conf" <<NGINX
worker_processes 1;
pid $work/backend.pid;
error_log $work/backend-error.log;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  keepalive_requests 1000000;
  server {
    listen $backend backlog=4096;
    root $work;
    default_type application/json;
    location = /v1/statement { return 200 '$submit_json'; }
    location ~ ^/v1/statement/executing/[^/]+/big/ { rewrite ^ /big.json break; }
    location /v1/spooled/download/ { default_type application/octet-stream; rewrite ^ /segment.bin break; }
    location /v1/statement/executing/ { rewrite ^ /page.json break; }
    location = /v1/info { return 200 '{"nodeVersion":{"version":"bench"},"coordinator":true,"starting":false}'; }
  }
}
NGINX
nginx -c "$work/backend.conf" -g 'daemon off;' & pids+=($!)

cat >"$work/proxy.conf" <<NGINX
worker_processes auto;
pid $work/proxy.pid;
error_log $work/proxy-error.log;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  keepalive_requests 1000000;
  upstream trino { server $backend; keepalive 256; keepalive_requests 1000000; }
  server {
    listen $nginx_proxy backlog=4096;
    location / {
      proxy_pass http://trino;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto http;
      proxy_buffering off;
    }
  }
}
NGINX
nginx -c "$work/proxy.conf" -g 'daemon off;' & pids+=($!)

# The submitted statement: a small one by default, padded with a comment to SQL_BYTES.
python3 - "$work/statement.sql" "${SQL_BYTES:-0}" <<'PY'
import sys
sql = "SELECT * FROM orders WHERE day = DATE '2026-11-23'"
want = int(sys.argv[2])
if want > len(sql) + 6:
    sql += " /* " + "x" * (want - len(sql) - 6) + " */"
open(sys.argv[1], "w").write(sql)
PY
if [ -n "${CONTENT:-}" ]; then
  # A policy on query content (it routes to the one group; what it costs is the point).
  policies='[{ name: selects, group: bench, match: { statement: [select] } }]'
else
  policies='[]'
fi
cat >"$work/gw.yaml" <<YAML
proxy:
  listeners: [{ name: main, address: "$gateway" }]
admin: { address: "$admin" }
routing: { default_group: bench, policies: $policies }
groups: [{ name: bench, strategy: round_robin }]
backends: [{ name: b1, url: "http://$backend", group: bench }]
health: { enabled: false }
server: { threads: 2, grace_period: 0s, graceful_shutdown_timeout: 1s }
database: { url: "sqlite://$work/state.db" }
hybrid: { threads: 1, timeout_seconds: 60 }
YAML
# under NAME COMMAND...: run COMMAND, under callgrind when COUNT is set (exec: `$!` is its pid).
under() {
  if [ -n "${COUNT:-}" ]; then
    exec valgrind --tool=callgrind --callgrind-out-file="$work/cg.$1" "${@:2}"
  fi
  exec "${@:2}"
}
RUST_LOG=warn under edge "$bin" serve --config "$work/gw.yaml" >"$work/gw.log" 2>&1 & pids+=($!)
gw_pid=$!
under bare "$bin" passthrough --listen "$bare" --upstream "$backend" --threads 2 >"$work/bare.log" 2>&1 & pids+=($!)
bare_pid=$!

for _ in $(seq 600); do
  curl -sf "http://$admin/livez" >/dev/null 2>&1 && curl -sf "http://$bare/v1/info" >/dev/null 2>&1 \
    && curl -sf "http://$nginx_proxy/v1/info" >/dev/null 2>&1 && break
  sleep 0.1
done
# One submission through the gateway, so it knows which backend owns the query.
curl -sf -X POST -H 'X-Trino-User: bench' --data 'SELECT 1' "http://$gateway/v1/statement" >/dev/null
page_path=/v1/statement/executing/$id/y/1

cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = io.open("$work/statement.sql"):read("*a")
wrk.headers["X-Trino-User"] = "bench"
wrk.headers["X-Trino-Source"] = "wrk"
LUA

# run SHAPE TARGET → "rps p50 p99" (latencies in microseconds)
run() {
  local shape=$1 url=$2 out
  if [ "$shape" = submit ]; then
    out=$(wrk -t2 -c32 -d"${secs}s" --latency -s "$work/post.lua" "$url/v1/statement")
  elif [ "$shape" = segment ]; then
    out=$(wrk -t2 -c4 -d"${secs}s" --latency "$url$3")
  else
    out=$(wrk -t2 -c8 -d"${secs}s" --latency -H 'X-Trino-User: bench' "$url$page_path")
  fi
  python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def us(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
if errors: print(f"warning: {errors.group(1)} non-2xx answers", file=sys.stderr)
print(f"{rps:.0f} {us(lat['50']):.0f} {us(lat['99']):.0f}")
PY
}

# PROFILE=submit|page: record where the gateway spends its CPU under that load, then stop.
if [ -n "${PROFILE:-}" ]; then
  perf record -F 999 -g -o "$work/perf.data" -p "$gw_pid" -- sleep "$secs" >/dev/null 2>&1 &
  perf_pid=$!
  sleep 0.2
  run "$PROFILE" "http://$gateway" >/dev/null
  wait "$perf_pid" || true
  perf report -i "$work/perf.data" --no-children --sort comm,dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -20
  perf report -i "$work/perf.data" --no-children --percent-limit ${PROFILE_LIMIT:-0.7} --stdio 2>/dev/null | grep -v '^$' | head -${PROFILE_LINES:-80}
  exit 0
fi

# COUNT=N: instructions per submission, counted by callgrind for the whole process (proxy,
# history writer, database): N submissions over four keep-alive connections, one at a time,
# after a warm-up. Unlike requests per second this repeats to about ±1 % whatever else the
# machine is doing, so it shows what a change to the hot path costs or saves. TOP=30 also lists
# trino-edge's costliest functions.
if [ -n "${COUNT:-}" ]; then
  cat >"$work/drive.py" <<'PY'
import http.client, sys
port, n, body = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "rb").read()
conns = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(4)]
for i in range(n):
    c = conns[i % 4]
    c.request("POST", "/v1/statement", body=body,
              headers={"X-Trino-User": "bench", "X-Trino-Source": "wrk"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
  # count NAME PID ADDRESS → instructions per submission between a zeroing and a dump.
  count() {
    python3 "$work/drive.py" "${3#*:}" 200 "$work/statement.sql"
    sleep 1
    callgrind_control -z "$2" >/dev/null 2>&1
    python3 "$work/drive.py" "${3#*:}" "$COUNT" "$work/statement.sql"
    sleep 1
    callgrind_control -d "$2" >/dev/null 2>&1
    sleep 1
    echo $(($(awk '/^(summary|totals):/ {print $2; exit}' "$work/cg.$1.1") / COUNT))
  }
  b=$(count bare "$bare_pid" "$bare")
  e=$(count edge "$gw_pid" "$gateway")
  echo "instructions per submission ($COUNT requests, whole process): bare Pingora $b, trino-edge $e (+$((e - b)))"
  if [ -n "${CG_OUT:-}" ]; then cp "$work/cg.edge.1" "$CG_OUT"; fi   # keep the profile
  if [ -n "${TOP:-}" ]; then
    callgrind_annotate --inclusive=yes "$work/cg.edge.1" 2>/dev/null \
      | grep -E 'trino_edge|serde_json|prometheus|sqlx' | head -"$TOP" | cut -c1-160
  fi
  exit 0
fi

sections=" ${SECTIONS:-throughput latency stream idle modes hybrid} "
want() { [[ "$sections" == *" $1 "* ]]; }

declare -A results
if want throughput; then
for shape in submit page; do
  for r in $(seq "$rounds"); do
    for target in direct edge nginx bare; do
      case $target in
        direct) url=http://$backend ;; edge) url=http://$gateway ;;
        nginx) url=http://$nginx_proxy ;; bare) url=http://$bare ;;
      esac
      results[$shape.$target]+="$(run "$shape" "$url");"
    done
  done
done

echo
echo "page: $page_bytes bytes; $rounds rounds x ${secs}s per cell, alternating; medians"
python3 - "$(declare -p results)" <<'PY'
import re, statistics, sys
cells = dict(re.findall(r'\[([\w.]+)\]="([^"]*)"', sys.argv[1]))
def med(shape, target, i):
    vals = [float(x.split()[i]) for x in cells[f"{shape}.{target}"].split(";") if x.strip()]
    return statistics.median(vals)
print(f"{'shape':7} {'direct':>9} {'trino-edge':>11} {'nginx':>9} {'bare pingora':>13} {'edge/direct':>12} {'edge/nginx':>11} {'edge/bare':>10}")
for s in ["submit", "page"]:
    d, e, n, b = (med(s, t, 0) for t in ["direct", "edge", "nginx", "bare"])
    print(f"{s:7} {d:9.0f} {e:11.0f} {n:9.0f} {b:13.0f} {e/d:12.2f} {e/n:11.2f} {e/b:10.2f}")
print()
print(f"{'latency (us)':14} {'p50 direct':>10} {'p50 edge':>9} {'p99 direct':>11} {'p99 edge':>9} {'p50 nginx':>10} {'p99 nginx':>10}")
for s in ["submit", "page"]:
    print(f"{s:14} {med(s,'direct',1):10.0f} {med(s,'edge',1):9.0f} {med(s,'direct',2):11.0f} {med(s,'edge',2):9.0f} {med(s,'nginx',1):10.0f} {med(s,'nginx',2):10.0f}")
PY
fi

# Added latency at a fixed rate: LAT_FRACTION (default 0.25) of trino-edge's wrk saturation rate.
# Not 0.5: the fixed-rate driver (reqwest) needs a core of its own, which leaves the proxies on
# these two cores saturating at about half of what they reach against wrk.
lat=$bin
want latency && echo && python3 - "$(declare -p results)" "$lat" "$backend" "$gateway" "$nginx_proxy" "$page_path" "$secs" <<'PY'
import re, statistics, subprocess, sys
cells = dict(re.findall(r'\[([\w.]+)\]="([^"]*)"', sys.argv[1]))
lat, backend, gateway, nginx, page_path, secs = sys.argv[2:8]
fraction = float(__import__("os").environ.get("LAT_FRACTION", "0.25"))
print(f"{f'at {fraction:g} of saturation':22} {'rate':>6} {'p50 / p99 / p99.9 direct':>26} {'trino-edge':>22} {'nginx':>22} {'added p50':>10} {'added p99':>10}")
for shape in ["submit", "page"]:
    sat = statistics.median(float(x.split()[0]) for x in cells[f"{shape}.edge"].split(";") if x.strip())
    rate = max(1, int(sat * fraction))
    res = {}
    for name, addr in [("direct", backend), ("edge", gateway), ("nginx", nginx)]:
        if shape == "submit":
            args = [lat, "latency-probe", f"http://{addr}/v1/statement", str(rate), secs, "--post", "SELECT 1"]
        else:
            args = [lat, "latency-probe", f"http://{addr}{page_path}", str(rate), secs]
        res[name] = [int(x) for x in subprocess.run(args, capture_output=True, text=True).stdout.split()]
    fmt = lambda r: f"{r[0]} / {r[1]} / {r[2]}"
    print(f"{shape:22} {rate:6} {fmt(res['direct']):>26} {fmt(res['edge']):>22} {fmt(res['nginx']):>22} "
          f"{res['edge'][0]-res['direct'][0]:>8}us {res['edge'][1]-res['direct'][1]:>8}us")
PY

# 1 GiB through the gateway vs direct: throughput and the gateway's peak RSS growth.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$gw_pid/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$gw_pid/status"; }
if want stream; then
base=$(rss_kb)
big=/v1/statement/executing/$id/big/1
d=$(curl -s -o /dev/null -w '%{speed_download}' -H 'X-Trino-User: bench' "http://$backend$big")
g=$(curl -s -o /dev/null -w '%{speed_download}' -H 'X-Trino-User: bench' "http://$gateway$big")
peak=$(hwm_kb)
python3 -c "print(f'1 GiB stream: direct {$d/2**20:.0f} MiB/s, trino-edge {$g/2**20:.0f} MiB/s ({$g/$d:.2f}x); gateway RSS {$base/1024:.0f} MiB before, peak {$peak/1024:.0f} MiB (+{($peak-$base)/1024:.0f} MiB)')"
fi

# 10,000 idle keep-alive connections, each after one request; RSS read while they are held.
want idle && python3 - "$gateway" "$gw_pid" <<'PY'
import socket, sys
host, port = sys.argv[1].split(":"); port = int(port)
def rss_mib():
    for line in open(f"/proc/{sys.argv[2]}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1]) / 1024
before = rss_mib()
socks, ok = [], 0
for i in range(10000):
    # One request at a time (a low request rate), each connection then stays open and idle.
    s = socket.create_connection((host, port)); s.settimeout(10)
    s.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n")
    if s.recv(65536).startswith(b"HTTP/1.1 200"): ok += 1
    socks.append(s)
after = rss_mib()
print(f"10,000 idle connections ({ok} answered, all held open): gateway RSS {before:.0f} MiB -> {after:.0f} MiB (+{after - before:.0f} MiB)")
PY

# forwarding: rewrite vs headers, and spooled segments.
if want modes; then
  sed -e "s/$gateway/$rewriting/; s/$admin/$rewriting_admin/; s#state.db#rewriting.db#" \
      -e 's/group: bench }]/group: bench, forwarding: rewrite }]/' "$work/gw.yaml" >"$work/rw.yaml"
  RUST_LOG=warn "$bin" serve --config "$work/rw.yaml" >"$work/rw.log" 2>&1 & pids+=($!)
  for _ in $(seq 600); do curl -sf "http://$rewriting_admin/livez" >/dev/null 2>&1 && break; sleep 0.1; done
  first=$(curl -s -X POST -H 'X-Trino-User: bench' --data 'SELECT 1' "http://$rewriting/v1/statement" || true)
  case $first in *"http://$rewriting/v1/statement/queued/"*) ;; *) echo "rewrite mode did not rewrite: $first" >&2; cat "$work/rw.log" >&2; exit 1 ;; esac
  declare -A modes
  for r in $(seq "$rounds"); do
    for shape in submit page; do
      modes[$shape.headers]+="$(run "$shape" "http://$gateway");"
      modes[$shape.rewrite]+="$(run "$shape" "http://$rewriting");"
    done
    modes[segment.direct]+="$(run segment "http://$backend" /v1/spooled/download/seg1);"
    modes[segment.edge]+="$(run segment "http://$gateway" "/v1/spooled/$id/download/seg1");"
    modes[segment.nginx]+="$(run segment "http://$nginx_proxy" /v1/spooled/download/seg1);"
    modes[segment.bare]+="$(run segment "http://$bare" /v1/spooled/download/seg1);"
  done
  echo
  python3 - "$(declare -p modes)" <<'PY'
import re, statistics, sys
cells = dict(re.findall(r'\[([\w.]+)\]="([^"]*)"', sys.argv[1]))
med = lambda k, i=0: statistics.median(float(x.split()[i]) for x in cells[k].split(";") if x.strip())
print(f"{'forwarding':10} {'headers':>9} {'rewrite':>9} {'rewrite/headers':>16}")
for s in ["submit", "page"]:
    h, r = med(f"{s}.headers"), med(f"{s}.rewrite")
    print(f"{s:10} {h:9.0f} {r:9.0f} {r/h:16.2f}")
print()
mib = lambda k: med(k) * 16
d, e, n, b = (mib(f"segment.{t}") for t in ["direct", "edge", "nginx", "bare"])
print(f"16 MiB spooled segment, MiB/s: direct {d:.0f}, trino-edge {e:.0f} ({e/d:.2f}x direct, "
      f"{e/n:.2f}x nginx, {e/b:.2f}x bare Pingora), nginx {n:.0f}, bare Pingora {b:.0f}")
PY
fi

# Proxy latency while heavy hybrid queries run (last: the join's memory would distort the RSS
# figures above): submissions at the same fixed rate, first idle, then
# with a DataFusion hash join of two 5M-row inputs looping on the admin API (one at a time).
want hybrid || exit 0
heavy='{"sql": "SELECT count(*) AS n FROM (SELECT unnest(range(0, 5000000)) AS x) a JOIN (SELECT unnest(range(0, 5000000)) AS y) b ON a.x = b.y"}'
python3 - "$(declare -p results)" "$lat" "$gateway" "$admin" "$secs" "$heavy" "$work" <<'PY'
import re, statistics, subprocess, sys, os, json, urllib.request, threading, time
cells = dict(re.findall(r'\[([\w.]+)\]="([^"]*)"', sys.argv[1]))
lat, gateway, admin, secs, heavy, work = sys.argv[2:9]
fraction = float(os.environ.get("LAT_FRACTION", "0.25"))
sat = statistics.median(float(x.split()[0]) for x in cells["submit.edge"].split(";") if x.strip())
rate = max(1, int(sat * fraction))
measure = lambda: [int(x) for x in subprocess.run(
    [lat, "latency-probe", f"http://{gateway}/v1/statement", str(rate), secs, "--post", "SELECT 1"],
    capture_output=True, text=True).stdout.split()]
idle = measure()
stop, done, failed = threading.Event(), [], []
def loop():
    while not stop.is_set():
        t = time.time()
        req = urllib.request.Request(f"http://{admin}/api/query/hybrid", data=heavy.encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            out = json.load(urllib.request.urlopen(req, timeout=120))
            assert out["rows"] == [[5000000]], out
            done.append(time.time() - t)
        except Exception as e:
            failed.append(str(e)); time.sleep(0.5)
th = threading.Thread(target=loop, daemon=True); th.start()
time.sleep(1)
busy = measure()
stop.set(); th.join()
print(f"\nsubmissions at {rate}/s while hybrid joins run ({len(done)} joins of 5M x 5M rows, "
      f"{statistics.median(done) if done else float('nan'):.2f} s each, {len(failed)} failed):")
print(f"  p50 / p99 / p99.9 idle {idle[0]} / {idle[1]} / {idle[2]} us, busy {busy[0]} / {busy[1]} / {busy[2]} us"
      f" -> p99 busy/idle {busy[1] / idle[1]:.2f}x")
PY
