#!/usr/bin/env bash
# Smoke test for slotnet-web: start it on a free loopback port over a copy
# of www/ (plus a few planted files and symlinks), talk HTTP to it, stop it
# with SIGINT. Usage: test_web.sh path/to/slotnet-web path/to/www [--poll]
# Exit 0 pass, 1 fail, 77 skipped (curl or python3 missing).
set -u

BIN=${1:?usage: test_web.sh BIN WWW [extra server options]}
WWW=${2:?usage: test_web.sh BIN WWW [extra server options]}
shift 2
EXTRA=("$@")
# The raw-HTTP helpers the embedded Python checks share with tests/web.
export PYTHONPATH="$(cd "$(dirname "$0")/../../tests/common" && pwd)${PYTHONPATH:+:$PYTHONPATH}"

for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: $tool not found"; exit 77; }
done

TMP=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

fails=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }
check() { # check "description" command...
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

# The root: www/ plus a big file to stream, a subdirectory, one symlink
# inside the root (served) and three pointing out of it (refused).
ROOT=$TMP/root
mkdir -p "$ROOT/sub"
cp -R "$WWW"/. "$ROOT"/
head -c 3000000 /dev/urandom >"$ROOT/big.bin"
echo "sub index" >"$ROOT/sub/index.html"
ln -s index.html "$ROOT/alias.html"
ln -s /etc/passwd "$ROOT/passwd-link"
ln -s /etc "$ROOT/etc-link"
echo "secret" >"$TMP/outside.txt"
ln -s ../outside.txt "$ROOT/outside-link.txt"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Start the server; another process may grab the port between free_port and
# the server's bind, so try a few.
for attempt in 1 2 3; do
  PORT=$(free_port)
  "$BIN" --listen "127.0.0.1:$PORT" --slots 8 --root "$ROOT" --sd "$TMP/sd" "${EXTRA[@]}" >"$TMP/server.log" 2>&1 &
  PID=$!
  up=0
  for _ in $(seq 1 200); do # it prints "serving" once it listens
    if ! kill -0 "$PID" 2>/dev/null; then break; fi
    if grep -q "serving" "$TMP/server.log"; then
      up=1
      break
    fi
    sleep 0.05
  done
  [ "$up" = 1 ] && break
  kill -KILL "$PID" 2>/dev/null
  wait "$PID" 2>/dev/null
  PID=
done
if [ -z "$PID" ]; then
  echo "FAIL - server did not start"
  cat "$TMP/server.log"
  exit 1
fi
URL=http://127.0.0.1:$PORT
echo "# server pid $PID on $URL"

# status code of a GET (or other curl options), body to $TMP/body
code() { curl -sS --max-time 10 --path-as-is -o "$TMP/body" -w '%{http_code}' "$@"; }

# ---- static files -------------------------------------------------------
check "GET / is 200" [ "$(code "$URL/")" = 200 ]
check "GET / is www/index.html" cmp -s "$TMP/body" "$WWW/index.html"
check "GET /app.js is 200" [ "$(code "$URL/app.js")" = 200 ]
check "Content-Type of .css" \
  [ "$(curl -sS -o /dev/null -w '%{content_type}' "$URL/style.css")" = "text/css; charset=utf-8" ]
check "GET /alias.html (symlink inside root) is 200" [ "$(code "$URL/alias.html")" = 200 ]
check "GET /no-such-file is 404" [ "$(code "$URL/no-such-file")" = 404 ]
check "GET /sub is a redirect to /sub/" \
  [ "$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "$URL/sub")" = "301 $URL/sub/" ]
check "GET /sub/ serves sub/index.html" [ "$(code "$URL/sub/")" = 200 ]
check "big file streams intact" \
  sh -c "curl -sS '$URL/big.bin' | cmp -s - '$ROOT/big.bin'"
check "HEAD / has the length and no body" python3 - "$PORT" "$(wc -c <"$WWW/index.html")" <<'EOF'
import socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), 5)
s.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
sys.exit(0 if head.startswith(b"HTTP/1.1 200") and
         f"Content-Length: {size}".encode() in head and body == b"" else 1)
EOF

# ---- no way out of the root --------------------------------------------
for path in "/../../etc/passwd" "/%2e%2e/%2e%2e/etc/passwd" "/..%2f..%2fetc%2fpasswd" \
            "/sub/../../outside.txt" "/%2E%2E/outside.txt" "/passwd-link" "/etc-link/passwd" \
            "/outside-link.txt" "/index.html%00.txt"; do
  c=$(code "$URL$path")
  if [ "$c" != 200 ] && ! grep -q -e "root:" -e "secret" "$TMP/body"; then
    pass "GET $path refused ($c)"
  else
    fail "GET $path escaped the root ($c)"
  fi
done

# ---- /status -----------------------------------------------------------
check "GET /status is 200" [ "$(code -D "$TMP/headers" "$URL/status")" = 200 ]
check "/status has Cache-Control: no-store" grep -qi '^cache-control: no-store' "$TMP/headers"
check "/status is application/json" grep -qi '^content-type: application/json' "$TMP/headers"
check "/status JSON has slots, counters, uptime" python3 - "$TMP/body" <<'EOF'
import json, sys
st = json.load(open(sys.argv[1]))
slots = st["slots"]
assert len(slots) == 8, slots
assert [s["index"] for s in slots] == list(range(8))
for s in slots:
    assert isinstance(s["state"], str) and s["state"], s
# this very request holds one connected slot
mine = [s for s in slots if s["state"] == "connected"]
assert mine and all(s["local"].startswith("127.0.0.1:") for s in mine), slots
for k in ("accepted", "rejected", "closed_graceful", "closed_peer", "closed_timeout",
          "reset_by_peer", "peer_closed", "idle_timeouts", "terminated", "aborted",
          "connects", "connect_retries", "connect_failures", "releases", "releases_forced",
          "emfile_events", "accept_errors", "write_retryable", "poll_passes",
          "longest_poll_us", "backlog_now", "backlog_peak"):
    assert isinstance(st["counters"][k], int), k
assert st["counters"]["accepted"] >= 1
assert isinstance(st["uptime_ms"], int)
EOF

# ---- bad requests, keep-alive, pipelining (raw sockets) ----------------
check "raw protocol checks" python3 - "$PORT" <<'EOF'
import socket, sys

PORT = int(sys.argv[1])
bad = 0

def connect():
    return socket.create_connection(("127.0.0.1", PORT), 5)

from httpraw import read_response

def closed_by_server(s):
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True

def expect(what, cond):
    global bad
    print(("  ok   " if cond else "  FAIL ") + what)
    if not cond:
        bad += 1

def one(raw, want, what):
    s = connect()
    s.sendall(raw)
    try:
        st, h, _, _ = read_response(s)
    except (EOFError, ConnectionResetError) as e:
        expect("%s: %s" % (what, e), False)
        return
    expect("%s -> %d (want %d)" % (what, st, want), st == want)
    expect("%s closes the connection" % what,
           h.get("connection", "").lower() == "close" and closed_by_server(s))
    s.close()

one(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400, "header without a colon")
one(b"GET / HTTP/1.x\r\n\r\n", 400, "broken HTTP version")
one(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", 400, "bad Content-Length")
one(b"\x01\x02\x03 garbage\r\n\r\n", 400, "binary garbage")
one(b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n", 501, "unknown method")
one(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", 405, "POST")
one(b"DELETE /index.html HTTP/1.1\r\nHost: t\r\n\r\n", 405, "DELETE")
one(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431,
    "oversized header")
one(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 431, "oversized URL")
one(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n" + b"x" * 20000, 413,
    "oversized body")

# keep-alive: two requests, one after the other, on one connection
s = connect()
s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
st1, h1, _, rest = read_response(s)
s.sendall(b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n")
st2, h2, body2, rest = read_response(s, rest)
expect("keep-alive: two responses on one connection (%d, %d)" % (st1, st2),
       st1 == 200 and st2 == 200 and "close" not in h1.get("connection", ""))
expect("keep-alive: /status body is JSON", body2.startswith(b"{"))
# pipelined: three requests in one send, answered in order
s.sendall(b"GET /app.js HTTP/1.1\r\nHost: t\r\n\r\n"
          b"HEAD /style.css HTTP/1.1\r\nHost: t\r\n\r\n"
          b"GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
a, ha, _, rest = read_response(s, rest)
b, hb, bb, rest = read_response(s, rest, is_head=True)
c, hc, _, rest = read_response(s, rest)
expect("pipelined: 200, 200 (HEAD), 404 in order (%d, %d, %d)" % (a, b, c),
       (a, b, c) == (200, 200, 404) and "css" in hb.get("content-type", "") and bb == b"")
expect("Connection: close honoured", hc.get("connection") == "close" and rest == b""
       and closed_by_server(s))
s.close()

# a long pipeline: more requests than fit in the server's buffer at once,
# answered in order (the server takes them in turns, not by recursion)
s = connect()
n = 400
s.sendall(b"".join(b"GET /nope%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(n)))
rest, got = b"", 0
for i in range(n):
    st, _, body, rest = read_response(s, rest)
    got += st == 404 and body == b"404 Not Found\n"
expect("pipeline of %d answered in order (%d)" % (n, got), got == n)
s.close()

# request split into small pieces arrives in several reads
s = connect()
for piece in (b"GE", b"T /stat", b"us HTTP/1.1\r\nHo", b"st: t\r\n", b"\r\n"):
    s.sendall(piece)
st, _, body, _ = read_response(s)
expect("request in pieces -> %d" % st, st == 200 and body.startswith(b"{"))
s.close()

# HTTP/1.0 closes after one response, even when asking for keep-alive
s = connect()
s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
st, h, _, _ = read_response(s)
expect("HTTP/1.0 -> %d and closed" % st, st == 200 and closed_by_server(s))
s.close()

# half-close: the request, then FIN; the response must still arrive
s = connect()
s.sendall(b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n")
s.shutdown(socket.SHUT_WR)
try:
    st, _, _, _ = read_response(s)
except EOFError:
    st = 0
expect("half-closed client still answered (%d)" % st, st == 200)
s.close()

# a client that connects and vanishes, and one that resets mid-request
s = connect()
s.close()
s = connect()
s.sendall(b"GET / HTTP/1.1\r\nHo")
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
s.close()

# more clients than slots, each holding a keep-alive connection: the server
# closes idle ones so everyone is served
held = []
for i in range(12):
    s = connect()
    s.sendall(b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n")
    held.append(s)
served = 0
for s in held:
    try:
        st, _, _, _ = read_response(s)
        served += st == 200
    except (EOFError, ConnectionResetError, socket.timeout):
        pass
    s.close()
expect("12 keep-alive clients on 8 slots all served (%d)" % served, served == 12)

sys.exit(1 if bad else 0)
EOF

# ---- streaming to a slow reader, and to one that leaves ------------------
check "slow reader: intact, no spinning, no leaked descriptors" \
  python3 - "$PORT" "$PID" "$ROOT/big.bin" <<'EOF'
import hashlib, os, socket, sys, time

port, pid, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
proc = "/proc/%d" % pid
have_proc = os.path.isdir(proc)

def cpu_ticks():
    fields = open(proc + "/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime

def open_fds():
    return len(os.listdir(proc + "/fd"))

# Keep-alive on purpose: with "Connection: close" the server's close
# timeout (2 s) would start while megabytes still sit in the kernel's send
# buffer, and a starved reader on a loaded machine could be reset.
def request_big():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    return s

ok = True
time.sleep(0.3)  # let earlier connections finish closing
fds_before = open_fds() if have_proc else 0

# The server fills the small window, then must wait for SN_EV_WRITABLE.
s = request_big()
t0 = cpu_ticks() if have_proc else 0
time.sleep(1.0)
busy = (cpu_ticks() - t0) if have_proc else 0
size = os.path.getsize(path)
data = b""
while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < size:
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    data += chunk
s.close()
body = data.partition(b"\r\n\r\n")[2]
want = hashlib.sha256(open(path, "rb").read()).hexdigest()
if hashlib.sha256(body).hexdigest() != want:
    print("  FAIL body differs (%d bytes)" % len(body)); ok = False
ticks = os.sysconf("SC_CLK_TCK")
if busy > ticks // 4:  # more than 250 ms of CPU while a reader sleeps 1 s: a spin
    print("  FAIL server used %d/%d CPU ticks waiting for a slow reader" % (busy, ticks)); ok = False

# A reader that goes away mid-file: its file descriptor must be closed.
for _ in range(3):
    s = request_big()
    s.recv(1000)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
if have_proc:
    deadline = time.time() + 3
    while open_fds() > fds_before and time.time() < deadline:
        time.sleep(0.05)
    if open_fds() > fds_before:
        print("  FAIL %d descriptors open, %d before" % (open_fds(), fds_before)); ok = False
sys.exit(0 if ok else 1)
EOF

check "server still answers after all that" [ "$(code "$URL/status")" = 200 ]

# ---- clean stop ----------------------------------------------------------
kill -INT "$PID"
stopped=0
for _ in $(seq 1 40); do
  if ! kill -0 "$PID" 2>/dev/null; then stopped=1; break; fi
  sleep 0.05
done
if [ "$stopped" = 1 ]; then
  wait "$PID"
  rc=$?
  PID=
  check "SIGINT: exit 0 within 2 s (rc $rc)" [ "$rc" = 0 ]
else
  fail "SIGINT: still running after 2 s"
fi

if [ "$fails" -ne 0 ]; then
  echo "# $fails failure(s); server log:"
  cat "$TMP/server.log"
  exit 1
fi
echo "# all passed"
exit 0
