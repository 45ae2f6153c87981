#!/usr/bin/env bash
# Throughput of trino-edge against a direct connection and nginx, measured in the same run on the
# same emulated coordinator, with wrk on loopback.
#
#   benches/load.sh [duration] [connections] [threads]      (defaults: 10s 32 2)
#
# Two request shapes, both follow-ups of a real query (the gateway's hot path, sticky lookup included):
#   small: GET /v1/query/{id}                        (~0.4 KB JSON)
#   page:  GET {nextUri} of a page with 110,000 rows   (~1 MB JSON; Trino clients may re-GET a page)
# Needs: wrk and nginx (apt-get install -y wrk nginx-light), cmake for the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-32}
wrk_threads=${3:-2}

cargo build --release --quiet
bin=$PWD/target/release/trino-edge
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

backend=127.0.0.1:19081 gateway=127.0.0.1:19082 nginx_addr=127.0.0.1:19083 admin=127.0.0.1:19084
"$bin" emulator --listen "$backend" --rows-per-page 110000 >"$work/emulator.log" 2>&1 & pids+=($!)

cat >"$work/gw.yaml" <<YAML
proxy:
  listeners: [{ name: main, address: "$gateway" }]
admin: { address: "$admin" }
routing: { default_group: bench }
groups: [{ name: bench, strategy: round_robin }]
backends: [{ name: b1, url: "http://$backend", group: bench }]
server: { threads: 2, grace_period: 0s, graceful_shutdown_timeout: 1s }
database: { url: "sqlite://$work/state.db" }
YAML
RUST_LOG=warn "$bin" serve --config "$work/gw.yaml" >"$work/gw.log" 2>&1 & pids+=($!)

cat >"$work/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  upstream trino { server $backend; keepalive 128; }
  server {
    listen $nginx_addr;
    location / {
      proxy_pass http://trino;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto http;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Forwarded-Port \$server_port;
      proxy_buffering off;
    }
  }
}
NGINX
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)

for _ in $(seq 100); do
  curl -sf "http://$admin/livez" >/dev/null 2>&1 && curl -sf "http://$backend/v1/info" >/dev/null 2>&1 && break
  sleep 0.1
done

# One query through the gateway (so it learns the query id); then find a page full of rows.
resp=$(curl -sf -X POST -H 'X-Trino-User: bench' --data 'SELECT * FROM UNNEST(sequence(1, 10000000))' "http://$gateway/v1/statement")
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$resp")
next=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["nextUri"])' <<<"$resp")
for _ in 1 2 3; do
  page=$(curl -sf -H 'X-Trino-User: bench' "$next")
  rows=$(python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("data") or []))' <<<"$page")
  [ "$rows" -gt 0 ] && break
  next=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["nextUri"])' <<<"$page")
done
page_path=/${next#*://*/}
bytes=$(curl -sf -H 'X-Trino-User: bench' "http://$gateway$page_path" | wc -c)
echo "query $id; page $page_path ($rows rows, $bytes bytes)"

rps() { wrk -t"$wrk_threads" -c"$1" -d"$duration" -H 'X-Trino-User: bench' "$2" | awk '/Requests\/sec/ {print $2}'; }
printf '%-6s %12s %12s %12s %10s %10s\n' shape direct nginx trino-edge "vs direct" "vs nginx"
for shape in small page; do
  if [ "$shape" = small ]; then path="/v1/query/$id"; c=$conns; else path=$page_path; c=$(( conns < 8 ? conns : 8 )); fi
  d=$(rps "$c" "http://$backend$path"); n=$(rps "$c" "http://$nginx_addr$path"); g=$(rps "$c" "http://$gateway$path")
  printf '%-6s %12s %12s %12s %10s %10s\n' "$shape" "$d" "$n" "$g" \
    "$(python3 -c "print(f'{$g/$d:.2f}')")" "$(python3 -c "print(f'{$g/$n:.2f}')")"
done
