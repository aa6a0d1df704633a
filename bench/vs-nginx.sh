#!/usr/bin/env bash
# slotnet-web against nginx, in the same run, on loopback.
#
# Builds the release binaries (make build), installs nginx if missing (as
# root; otherwise prints the line to run and stops), then for each scenario
# starts both servers afresh — slotnet-web with 8 slots, Debian's nginx with
# one worker and a generated configuration — and plays the same slotnet-load
# scenario against each, one after the other:
#
#   churn-max     browser-like pollers as fast as they go: connections/s, p99
#   seed-fast     7 pollers, an API client and a looping 16 MiB upload
#   upload-alone  the same upload with nothing else (the baseline)
#
# nginx serves the same bytes: /status and every rr_ reply the scenarios ask
# for are saved from slotnet-web at the start and served as files; its
# /rr_upload stores the body to disk (client_body_in_file_only) and answers
# {"err":0}. slotnet-web also computes a CRC32 while it writes, and the
# load tool downloads and compares each upload from slotnet-web only.
#
# Prints a table of both servers and the ratios; the JSON reports and the
# table stay in bench/out/vs-nginx/. Figures, not pass/fail: exit status 0
# when every run produced its report, non-zero when something could not run.
#
#   bench/vs-nginx.sh              (or: make bench)
#   BENCH_DURATION=10 bench/vs-nginx.sh   shorter churn-max and seed-fast
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BUILD=${BUILD:-$REPO/build}
case $BUILD in /*) ;; *) BUILD=$REPO/$BUILD ;; esac
OUT=${BENCH_OUT:-$REPO/bench/out/vs-nginx}
DURATION=${BENCH_DURATION:-} # empty: each scenario's own duration
SLOTS=8

say() { printf '%s\n' "vs-nginx: $*" >&2; }
die() { say "$*"; exit 1; }

# ---- clean-up: both servers and the temp dir, however we leave -------------
TMP=
LOAD_PID=
WEB_PID=
NGINX_PID=
POLICY_RC=
stop_pid() { # stop_pid PID: SIGTERM, then SIGKILL after 5 s
  local pid=$1 _
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_servers() {
  stop_pid "$WEB_PID"
  WEB_PID=
  # nginx runs in the foreground (daemon off): its master is our child and
  # takes its worker with it on SIGTERM.
  stop_pid "$NGINX_PID"
  NGINX_PID=
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$LOAD_PID"
  stop_servers
  [ -n "$POLICY_RC" ] && rm -f "$POLICY_RC"
  [ -n "$TMP" ] && rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools --------------------------------------------------------------
command -v python3 >/dev/null || die "python3 is needed (tools/install-deps.sh installs it)"
command -v curl >/dev/null || die "curl is needed (tools/install-deps.sh installs it)"

say "building the release binaries (make build)"
mkdir -p "$OUT"
# as its own make, not a sub-make of `make bench`: no directory chatter
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$REPO" -s build BUILD="$BUILD" \
  >"$OUT/build.log" 2>&1; then
  cat "$OUT/build.log" >&2
  die "make build failed"
fi
WEB=$BUILD/bin/slotnet-web
LOAD=$BUILD/bin/slotnet-load
[ -x "$WEB" ] || die "$WEB was not built"
[ -x "$LOAD" ] || die "$LOAD was not built: slotnet-load (apps/slotnet-load/) is not ready"

find_nginx() {
  command -v nginx 2>/dev/null && return 0
  [ -x /usr/sbin/nginx ] && { echo /usr/sbin/nginx; return 0; }
  return 1
}
if ! NGINX=$(find_nginx); then
  if [ "$(id -u)" != 0 ]; then
    say "nginx is not installed. Run:"
    say "  sudo apt-get install -y --no-install-recommends nginx"
    exit 1
  fi
  say "installing nginx (apt-get)"
  # The package would start its default site on port 80 of every address;
  # policy-rc.d (Debian's switch for exactly this) keeps it from starting.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    POLICY_RC=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
    chmod 755 "$POLICY_RC"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends nginx >&2
  if [ -n "$POLICY_RC" ]; then
    rm -f "$POLICY_RC"
    POLICY_RC=
  fi
  NGINX=$(find_nginx) || die "nginx still missing after apt-get"
fi
REV=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
say "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //'); slotnet at $REV"

# ---- scenarios ------------------------------------------------------------
for s in churn-max seed-fast upload-alone; do
  [ -f "$REPO/scenarios/$s.json" ] || die "scenarios/$s.json is missing"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/slotnet-vs-nginx.XXXXXX")
# nginx's worker drops to an unprivileged user when started as root: it must
# reach the files below.
chmod 755 "$TMP"
mkdir -p "$OUT" "$TMP/sd" "$TMP/ngx/root" "$TMP/ngx/tmp" "$TMP/scen"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/slotnet-web.log "$OUT"/nginx.log

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # wait_http URL PID: until the server answers (or dies)
  local _
  for _ in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || return 1
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  return 1
}

# With two or more CPUs the server (either one) gets CPU 0 and the load tool
# CPU 1, the same for both servers: otherwise they preempt each other and the
# figures measure the scheduler. SN_BENCH_PIN=0 turns this off.
SERVER_CPU=()
LOAD_CPU=()
if [ "${SN_BENCH_PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  SERVER_CPU=(taskset -c 0)
  LOAD_CPU=(taskset -c 1)
fi

start_web() {
  local _
  for _ in 1 2 3; do
    WEB_PORT=$(free_port)
    "${SERVER_CPU[@]}" "$WEB" --listen "127.0.0.1:$WEB_PORT" --slots "$SLOTS" --root "$REPO/www" --sd "$TMP/sd" \
      >>"$OUT/slotnet-web.log" 2>&1 &
    WEB_PID=$!
    wait_http "http://127.0.0.1:$WEB_PORT/status" "$WEB_PID" && return 0
    stop_pid "$WEB_PID"
    WEB_PID=
  done
  die "slotnet-web did not start (see $OUT/slotnet-web.log)"
}

# The bytes nginx serves: www/, a snapshot of /status, and every rr_ reply a
# scenario asks for, saved from slotnet-web as rr/<path>/<query> (plus
# rr/<path>/_ for any other query, e.g. rr_connect's changing time).
snapshot() {
  local root=$TMP/ngx/root
  cp -R "$REPO/www/." "$root/"
  curl -sSf --max-time 5 -o "$root/status" "http://127.0.0.1:$WEB_PORT/status"
  python3 - "$REPO/scenarios" "$root" "$WEB_PORT" <<'EOF'
import json, os, sys, urllib.request
scen, root, port = sys.argv[1], sys.argv[2], sys.argv[3]
want = {"/rr_connect?password=&time=2025-01-01T00:00:00"}
for f in ("churn-max", "seed-fast", "upload-alone"):
    for g in json.load(open(os.path.join(scen, f + ".json")))["groups"]:
        for p in ([g["path"]] if g.get("path") else []) + g.get("paths", []):
            want.add(p)
for p in sorted(want):
    path, _, query = p.partition("?")
    if not path.startswith("/rr_") or path in ("/rr_upload", "/rr_download"):
        continue
    with urllib.request.urlopen("http://127.0.0.1:%s%s" % (port, p), timeout=5) as r:
        body = r.read()
    d = os.path.join(root, "rr" + path)
    os.makedirs(d, exist_ok=True)
    for name in ([query] if query else []) + (["_"] if not os.path.exists(os.path.join(d, "_")) else []):
        with open(os.path.join(d, name), "wb") as f:
            f.write(body)
EOF
}

write_nginx_conf() {
  local types=/etc/nginx/mime.types
  [ -f "$types" ] || types=$TMP/ngx/mime.types
  [ -f "$types" ] || printf 'types { text/html html; text/css css; application/javascript js; }\n' >"$types"
  cat >"$TMP/ngx/nginx.conf" <<EOF
# generated by bench/vs-nginx.sh: one worker, loopback only, no access log
daemon off;
master_process on;
worker_processes 1;
pid $TMP/ngx/nginx.pid;
error_log $TMP/ngx/error.log warn;
events { worker_connections 4096; }
http {
    include $types;
    default_type application/json;
    access_log off;
    server_tokens off;
    etag off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30s;          # slotnet-web's idle timeout
    keepalive_requests 1000000;     # slotnet-web has no such limit
    client_body_temp_path $TMP/ngx/tmp/body;
    proxy_temp_path $TMP/ngx/tmp/proxy;
    fastcgi_temp_path $TMP/ngx/tmp/fastcgi;
    uwsgi_temp_path $TMP/ngx/tmp/uwsgi;
    scgi_temp_path $TMP/ngx/tmp/scgi;

    upstream stored { server 127.0.0.1:$NGX_PORT2; keepalive 2; }

    server {
        listen 127.0.0.1:$NGX_PORT;
        root $TMP/ngx/root;
        index index.html;
        location = /status { add_header Cache-Control no-store; }
        # rr_ replies as saved from slotnet-web, chosen by path and query
        location /rr_ {
            add_header Cache-Control no-store;
            try_files /rr\$uri/\$args /rr\$uri/_ =404;
        }
        # The upload: the whole body is written to a file (deleted after the
        # request, as slotnet-web replaces its file), then {"err":0}. nginx
        # reads a body only for a handler that wants it: the proxy to the
        # second server below, which gets the request without the body.
        location = /rr_upload {
            client_max_body_size 0;
            client_body_in_file_only clean;
            client_body_buffer_size 64k;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://stored/stored;
        }
    }
    server {
        listen 127.0.0.1:$NGX_PORT2;
        location = /stored { default_type application/json; return 200 '{"err":0}'; }
    }
}
EOF
}

start_nginx() {
  local _
  for _ in 1 2 3; do
    NGX_PORT=$(free_port)
    NGX_PORT2=$(free_port)
    [ "$NGX_PORT" != "$NGX_PORT2" ] || continue
    write_nginx_conf
    "${SERVER_CPU[@]}" "$NGINX" -p "$TMP/ngx" -e "$TMP/ngx/error.log" -c "$TMP/ngx/nginx.conf" \
      >>"$OUT/nginx.log" 2>&1 &
    NGINX_PID=$!
    wait_http "http://127.0.0.1:$NGX_PORT/status" "$NGINX_PID" && return 0
    stop_pid "$NGINX_PID"
    NGINX_PID=
  done
  cat "$TMP/ngx/error.log" >&2 2>/dev/null || true
  die "nginx did not start (see above and $OUT/nginx.log)"
}

# The scenario as played against nginx: the same clients, minus the
# download check (nginx keeps no uploads), minus the expectations (they
# read slotnet's /status), and no wait for slots to free at the end.
nginx_scenario() {
  python3 - "$REPO/scenarios/$1.json" "$TMP/scen/$1-nginx.json" <<'EOF'
import json, sys
sc = json.load(open(sys.argv[1]))
sc.pop("expect", None)
sc["final_grace_ms"] = 0
for g in sc["groups"]:
    if g.get("type") == "uploader":
        g["verify_download"] = False
json.dump(sc, open(sys.argv[2], "w"), indent=1)
EOF
}

run_load() { # run_load SCENARIO SERVER PORT SCENARIO-FILE
  local name=$1 server=$2 port=$3 file=$4 rc=0
  local args=(--scenario "$file" --target "127.0.0.1:$port" --json "$OUT/$name-$server.json")
  if [ -n "$DURATION" ] && [ "$name" != upload-alone ]; then
    args+=(--duration "$DURATION")
  fi
  say "$name against $server (127.0.0.1:$port)"
  # in the background, so that a signal reaches our trap at once
  "${LOAD_CPU[@]}" "$LOAD" "${args[@]}" >"$OUT/$name-$server.txt" &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=
  # 1 is an unmet expectation: the figures are still good to compare
  case $rc in
    0) ;;
    1) say "  $name against $server: some expectations were not met (see $OUT/$name-$server.txt)" ;;
    *) cat "$OUT/$name-$server.txt" >&2; die "slotnet-load could not run $name against $server (exit $rc)" ;;
  esac
  [ -s "$OUT/$name-$server.json" ] || die "no report from $name against $server"
}

# ---- the runs ---------------------------------------------------------------
first=1
for name in churn-max seed-fast upload-alone; do
  start_web
  if [ "$first" = 1 ]; then
    snapshot
    first=0
  fi
  nginx_scenario "$name"
  start_nginx
  run_load "$name" slotnet "$WEB_PORT" "$REPO/scenarios/$name.json"
  run_load "$name" nginx "$NGX_PORT" "$TMP/scen/$name-nginx.json"
  stop_servers
  rm -rf "$TMP/sd"/* "$TMP/ngx/tmp"/*
done

# ---- the table ----------------------------------------------------------------
python3 - "$OUT" "$SLOTS" "$("$NGINX" -v 2>&1 | sed 's|.*/||')" \
  "$(date -u '+%Y-%m-%d %H:%M UTC'), slotnet $REV, $(nproc) CPUs, Linux $(uname -r)" \
  <<'EOF' | tee "$OUT/table.txt"
import json, os, sys
out, slots, ngx, where = sys.argv[1:5]
R = {(n, s): json.load(open(os.path.join(out, "%s-%s.json" % (n, s))))
     for n in ("churn-max", "seed-fast", "upload-alone") for s in ("slotnet", "nginx")}

def get(n, s, *keys):
    v = R[(n, s)]
    for k in keys:
        if not isinstance(v, dict) or v.get(k) is None:
            return None
        v = v[k]
    return v

def num(v, fmt):
    return "–" if v is None else fmt.format(v)

def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b

rows = []
def row(label, a, b, fmt, r=None, note=""):
    rows.append((label, num(a, fmt), num(b, fmt), num(r, "{:.2f}"), note))

for n in ("churn-max", "seed-fast"):
    dur = get(n, "slotnet", "run_s")
    rows.append(("%s (%.0f s)" % (n, dur or 0), "", "", "", ""))
    a, b = get(n, "slotnet", "connections", "per_s"), get(n, "nginx", "connections", "per_s")
    row("  connections/s", a, b, "{:,.0f}", ratio(a, b), "higher is better")
    if n == "churn-max":  # seed-fast's clients set their own pace
        a, b = get(n, "slotnet", "requests", "per_s"), get(n, "nginx", "requests", "per_s")
        row("  requests/s", a, b, "{:,.0f}", ratio(a, b))
    a, b = get(n, "slotnet", "latency_ms", "p99"), get(n, "nginx", "latency_ms", "p99")
    row("  request latency p99, ms", a, b, "{:.2f}", ratio(a, b), "lower is better")
    a, b = get(n, "slotnet", "latency_ms", "p50"), get(n, "nginx", "latency_ms", "p50")
    row("  request latency p50, ms", a, b, "{:.2f}", ratio(a, b))
    a, b = get(n, "slotnet", "requests", "failed"), get(n, "nginx", "requests", "failed")
    row("  failed requests", a, b, "{:,.0f}")
    row("  longest poll pass, µs", get(n, "slotnet", "server", "longest_poll_us"), None, "{:,.0f}")
    row("  longest close call, µs", get(n, "slotnet", "server", "longest_close_us"), None, "{:,.0f}")

rows.append(("upload (16 MiB each)", "", "", "", ""))
churn = {s: get("seed-fast", s, "upload", "mb_s") for s in ("slotnet", "nginx")}
alone = {s: get("upload-alone", s, "upload", "mb_s") for s in ("slotnet", "nginx")}
row("  MB/s alone (upload-alone)", alone["slotnet"], alone["nginx"], "{:.1f}",
    ratio(alone["slotnet"], alone["nginx"]))
row("  MB/s under churn (seed-fast)", churn["slotnet"], churn["nginx"], "{:.1f}",
    ratio(churn["slotnet"], churn["nginx"]))
u = {s: ratio(churn[s], alone[s]) for s in ("slotnet", "nginx")}
row("  under churn / alone", u["slotnet"], u["nginx"], "{:.1%}", None, "target ≥ 95%")
crc = get("seed-fast", "slotnet", "upload", "crc_verified")
rows.append(("  CRC verified by download", "yes" if crc else "NO", "n/a", "", "nginx: not downloaded"))
free = get("seed-fast", "slotnet", "server", "slots_free_at_end")
rows.append(("  every slot free at the end", "yes" if free else "NO", "n/a", "", ""))

head = ("", "slotnet-web (%s slots)" % slots, "nginx %s (1 worker)" % ngx, "slotnet/nginx", "")
w = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
line = lambda r: "  ".join((r[0].ljust(w[0]),) + tuple(c.rjust(w[i]) for i, c in enumerate(r[1:4], 1)) + (r[4],)).rstrip()
print("slotnet-web vs nginx on 127.0.0.1: %s" % where)
print(line(head))
print("-" * (sum(w[:4]) + 6))
for r in rows:
    print(line(r))
fails = []
for (n, s), rep in sorted(R.items()):
    for e in rep.get("expectations", []):
        if not e.get("pass") and not e.get("skipped"):
            fails.append("%s on %s: %s wanted %s, got %s" % (n, s, e["name"], e["want"], e["got"]))
if fails:
    print("\nexpectations not met:\n  " + "\n  ".join(fails))
EOF
say "reports in $OUT"
