#!/usr/bin/env bash
# Instructions per submission, counted by valgrind's callgrind: trino-edge against the bare
# Pingora proxy (`trino-edge passthrough`), same canned backend. Unlike requests per second this
# is repeatable to about ±1 % whatever else the machine is doing, so it shows what a change to
# the hot path costs or saves. See BENCHMARKS.md.
#
#   benches/load/instructions.sh [requests]        (default 2000)
#   TOP=30 benches/load/instructions.sh            (also list trino-edge's costliest functions)
#
# Needs valgrind and nginx (apt-get install -y valgrind nginx-light); builds in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-2000}
cargo build --release --quiet
bin=$PWD/target/release/trino-edge
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT

backend=127.0.0.1:19281 proxy=127.0.0.1:19282 admin=127.0.0.1:19284
id=20261123_000000_00001_bench
submit="{\"id\":\"$id\",\"infoUri\":\"http://host/ui/query.html?$id\",\"nextUri\":\"http://host/v1/statement/queued/$id/y/1\",\"stats\":{\"state\":\"QUEUED\",\"queued\":true,\"scheduled\":false,\"nodes\":0,\"totalSplits\":0},\"warnings\":[]}"
cat >"$work/backend.conf" <<NGINX
worker_processes 1;
pid $work/backend.pid;
error_log $work/backend-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  keepalive_requests 1000000;
  server {
    listen $backend;
    default_type application/json;
    location = /v1/statement { return 200 '$submit'; }
    location = /v1/info { return 200 '{"nodeVersion":{"version":"bench"},"coordinator":true,"starting":false}'; }
  }
}
NGINX
nginx -c "$work/backend.conf" -g 'daemon off;' & pids+=($!)

cat >"$work/gw.yaml" <<YAML
proxy:
  listeners: [{ name: main, address: "$proxy" }]
admin: { address: "$admin" }
routing: { default_group: bench }
groups: [{ name: bench, strategy: round_robin }]
backends: [{ name: b1, url: "http://$backend", group: bench }]
health: { enabled: false }
server: { threads: 2, grace_period: 0s, graceful_shutdown_timeout: 1s }
database: { url: "sqlite://$work/state.db" }
YAML

# Submissions over four keep-alive connections, one at a time (as the load test's, plus a body).
cat >"$work/drive.py" <<'PY'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
conns = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(4)]
for i in range(n):
    c = conns[i % 4]
    c.request("POST", "/v1/statement", body=b"SELECT * FROM orders WHERE day = DATE '2026-11-23'",
              headers={"X-Trino-User": "bench", "X-Trino-Source": "wrk"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY

# count LABEL COMMAND... → instructions per request of that proxy (after a warm-up).
count() {
  local label=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$label" "$@" >"$work/$label.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do curl -sf "http://$proxy/v1/info" >/dev/null 2>&1 && break; sleep 0.2; done
  python3 "$work/drive.py" "${proxy#*:}" 200
  sleep 1
  callgrind_control -z "$pid" >/dev/null 2>&1
  python3 "$work/drive.py" "${proxy#*:}" "$n"
  sleep 1
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local total
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$work/cg.$label.1")
  echo "$label $((total / n))"
}

bare=$(count bare "$bin" passthrough --listen "$proxy" --upstream "$backend" --threads 2)
edge=$(RUST_LOG=warn count edge "$bin" serve --config "$work/gw.yaml")
python3 - "$bare" "$edge" "$n" <<'PY'
import sys
b, e, n = int(sys.argv[1].split()[1]), int(sys.argv[2].split()[1]), sys.argv[3]
print(f"instructions per submission ({n} requests, whole process): bare Pingora {b:,}, "
      f"trino-edge {e:,} (+{e - b:,}, {b / e:.2f} of the bare proxy's throughput at equal cost per instruction)")
PY
if [ -n "${TOP:-}" ]; then
  callgrind_annotate --inclusive=yes "$work/cg.edge.1" 2>/dev/null | grep -E 'trino_edge|serde_json|prometheus|sqlx' \
    | head -"$TOP" | cut -c1-160
fi
