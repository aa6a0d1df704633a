#!/usr/bin/env python3
"""The status page in headless Chromium.

Starts slotnet-web on a free loopback port over the repository's www/, holds
a few idle client connections so that some slots are busy, then drives
Chromium headless over the DevTools protocol (a WebSocket, spoken here with
the standard library only): loads the page, waits for it to refresh from
/status, checks the slot table, the counters, the histogram and the chart,
checks that it keeps polling with one request at a time, and takes
screenshots (PNG) of a laptop-sized viewport and of the whole page.

  test_page.py --server path/to/slotnet-web --root path/to/www [--out DIR]

Exit status: 0 pass, 1 fail, 77 skipped (no Chromium, and it cannot be
installed here).
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

SKIP = 77
STATES = {"free", "allocated", "connecting", "connected", "other-end-closed",
          "close-pending", "aborted"}
VIEW_W, VIEW_H = 1366, 768  # a common laptop screen
HELD = 3                    # idle client connections that keep slots busy


class Fail(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, cond, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Fail("timed out waiting for " + what)
        time.sleep(step)


# ---- a minimal WebSocket client, enough for the DevTools protocol ---------

class WebSocket:
    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, url, timeout):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "ws" or u.hostname != "127.0.0.1":
            raise Fail("unexpected DevTools address " + url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout)
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET " + u.path.encode() + b" HTTP/1.1\r\n"
                          b"Host: 127.0.0.1:" + str(u.port).encode() + b"\r\n"
                          b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Key: " + key + b"\r\n"
                          b"Sec-WebSocket-Version: 13\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Fail("DevTools closed the WebSocket handshake")
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        want = base64.b64encode(hashlib.sha1(key + self.GUID).digest())
        if not head.startswith(b"HTTP/1.1 101") or want not in head:
            raise Fail("WebSocket handshake refused: %r" % head[:200])

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise Fail("DevTools closed the WebSocket")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, payload, opcode=0x1):
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)  # a client masks every frame
        body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + body)

    def recv(self):
        """One whole message (text or binary); answers pings on the way."""
        parts = []
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            mask = self._exact(4) if b1 & 0x80 else None
            data = self._exact(n)
            if mask:
                data = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
            op = b0 & 0x0F
            if op == 0x9:
                self.send(data, 0xA)
                continue
            if op == 0xA:
                continue
            if op == 0x8:
                raise Fail("DevTools closed the WebSocket")
            parts.append(data)
            if b0 & 0x80:
                return b"".join(parts)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class DevTools:
    """Calls over the protocol; events are kept in order in self.events."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.events = []

    def call(self, method, timeout=30, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}).encode())
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                raise Fail(method + ": no answer from Chromium")
            self.ws.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                msg = json.loads(self.ws.recv())
            except socket.timeout:
                continue
            if msg.get("id") == mid:
                if "error" in msg:
                    raise Fail("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def js(self, expr):
        """The value of a JavaScript expression (JSON-serialisable), awaited."""
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise Fail("page script failed: %s" % json.dumps(r["exceptionDetails"])[:500])
        return r["result"].get("value")


# ---- the test ---------------------------------------------------------------

def find_chromium():
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def start_server(binary, root, tmp):
    for _ in range(3):  # another process may take the port before the bind
        port = free_port()
        out = open(os.path.join(tmp, "server.log"), "w")
        proc = subprocess.Popen([binary, "--listen", "127.0.0.1:%d" % port, "--slots", "8",
                                 "--idle-ms", "0", "--root", root],
                                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if "serving" in open(out.name).read():
                return proc, port
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    raise Fail("slotnet-web did not start:\n" + open(os.path.join(tmp, "server.log")).read())


def one_request(s):
    """GET /status on a keep-alive connection; reads the whole reply."""
    s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise Fail("held connection closed before its reply")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise Fail("held connection: %r" % head[:100])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise Fail("held connection closed mid-reply")
        body += chunk


def get_status(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/status" % port, timeout=5) as r:
        return json.load(r)


def start_chromium(chromium, tmp):
    profile = tempfile.mkdtemp(prefix="profile-", dir=tmp)
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--user-data-dir=" + profile,
            # for the test's own control, and for containers with a small /dev/shm
            "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
            "--no-proxy-server", "--disable-dev-shm-usage", "--hide-scrollbars",
            "--mute-audio", "--window-size=%d,%d" % (VIEW_W, VIEW_H), "about:blank"]
    out = open(os.path.join(tmp, "chromium.log"), "w")
    # its own process group, so every helper process it starts goes with it
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    active = os.path.join(profile, "DevToolsActivePort")

    def ready():
        if proc.poll() is not None:
            raise Fail("Chromium exited (%d):\n%s" % (proc.returncode,
                                                       open(out.name).read()[-3000:]))
        try:
            with open(active) as f:
                line = f.readline().strip()
            return int(line) if line else None
        except (OSError, ValueError):
            return None

    devport = wait_for("Chromium's DevTools port", ready, 60)
    return proc, devport


def page_target(devport):
    def find():
        c = http.client.HTTPConnection("127.0.0.1", devport, timeout=5)
        try:
            c.request("GET", "/json/list")
            targets = json.loads(c.getresponse().read())
        finally:
            c.close()
        pages = [t for t in targets if t.get("type") == "page"]
        return pages[0]["webSocketDebuggerUrl"] if pages else None
    return wait_for("a page target", find, 20, 0.2)


def stop_chromium(proc, cdp):
    if proc is None or proc.poll() is not None:
        return
    if cdp is not None:
        try:
            cdp.call("Browser.close", timeout=5)
        except (Fail, OSError):
            pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group we created for it
    except ProcessLookupError:
        pass
    proc.wait()


def png_size(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise Fail("screenshot is not a PNG")
    return struct.unpack("!II", data[16:24])


# What the page shows, read in one go.
SNAPSHOT_JS = r"""
(() => {
  const rows = [...document.querySelectorAll("#slots tbody tr")].map((tr) => {
    const badge = tr.cells[1].querySelector(".badge");
    const cs = getComputedStyle(badge);
    return {index: tr.cells[0].textContent, state: badge.textContent,
            cls: badge.className, remote: tr.cells[2].textContent,
            bg: cs.backgroundColor, fg: cs.color};
  });
  const counters = {};
  for (const dd of document.querySelectorAll("#counters dd"))
    counters[dd.dataset.counter] = dd.textContent;
  const hist = [...document.querySelectorAll("#hist tbody tr")].map((tr) =>
    [tr.cells[0].textContent, tr.cells[2].textContent]);
  // pixels of the chart drawn in the "connected" colour
  const canvas = document.getElementById("chart");
  const want = getComputedStyle(document.documentElement)
    .getPropertyValue("--st-connected").trim();
  const rgb = [1, 3, 5].map((i) => parseInt(want.slice(i, i + 2), 16));
  let painted = 0;
  if (canvas.width && canvas.height) {
    const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < px.length; i += 4)
      if (Math.abs(px[i] - rgb[0]) + Math.abs(px[i + 1] - rgb[1]) +
          Math.abs(px[i + 2] - rgb[2]) < 12 && px[i + 3] > 200) painted++;
  }
  return {title: document.title, link: document.getElementById("link").textContent,
          refreshes: Number(document.body.dataset.refreshes || 0), rows, counters, hist,
          canvas: [canvas.clientWidth, canvas.clientHeight], painted,
          tiles: [...document.querySelectorAll(".tile")].map((t) => t.textContent.trim()),
          legend: document.getElementById("legend").children.length,
          width: document.documentElement.scrollWidth,
          height: document.documentElement.scrollHeight};
})()
"""


def run(opts, tmp):
    failures = []

    def check(what, ok, detail=""):
        log(("ok   - " if ok else "FAIL - ") + what + (("  (" + detail + ")") if detail and not ok else ""))
        if not ok:
            failures.append(what)

    chromium = find_chromium()
    if chromium is None:
        log("SKIP: Chromium is not installed; as root: apt-get install -y chromium "
            "(make test installs it through tools/install-deps.sh)")
        return SKIP

    state = {"server": None, "browser": None, "cdp": None, "held": []}
    try:
        server, port = start_server(opts.server, opts.root, tmp)
        state["server"] = server
        base = "http://127.0.0.1:%d" % port
        log("# slotnet-web pid %d on %s; %s" % (server.pid, base, chromium))

        # Keep-alive connections that made one request and now sit idle: they
        # hold their slots (--idle-ms 0) as a browser's idle tab would.
        for _ in range(HELD):
            s = socket.create_connection(("127.0.0.1", port), 5)
            state["held"].append(s)
            one_request(s)
        held = {"127.0.0.1:%d" % s.getsockname()[1] for s in state["held"]}

        def held_connected():
            st = get_status(port)
            on = {s["remote"] for s in st["slots"] if s["state"] == "connected"}
            return held <= on and st
        status = wait_for("the held connections in /status", held_connected, 10)
        log("# holding %d slots: %s" % (HELD, ", ".join(sorted(held))))

        browser, devport = start_chromium(chromium, tmp)
        state["browser"] = browser
        cdp = DevTools(WebSocket(page_target(devport), 10))
        state["cdp"] = cdp
        for domain in ("Runtime", "Page", "Log", "Network"):
            cdp.call(domain + ".enable")
        cdp.call("Emulation.setDeviceMetricsOverride", width=VIEW_W, height=VIEW_H,
                 deviceScaleFactor=1, mobile=False)
        cdp.call("Page.navigate", url=base + "/")

        # the first answer draws the page; the second shows that it polls
        wait_for("two refreshes of the page",
                 lambda: (cdp.js("Number(document.body && document.body.dataset.refreshes || 0)")
                          or 0) >= 2, 30, 0.1)
        snap = cdp.js(SNAPSHOT_JS)

        check("title is 'slotnet status'", snap["title"] == "slotnet status", snap["title"])
        check("link shows 'live'", snap["link"] == "live", snap["link"])
        rows = snap["rows"]
        check("8 slot rows", len(rows) == 8, "%d rows" % len(rows))
        check("rows numbered 0..7", [r["index"] for r in rows] == [str(i) for i in range(8)],
              str([r["index"] for r in rows]))
        check("every row shows a state name", all(r["state"] in STATES for r in rows),
              str([r["state"] for r in rows]))
        check("each state badge carries its state's class",
              all(("state-" + r["state"]) in r["cls"].split() for r in rows))
        for remote in sorted(held):
            mine = [r for r in rows if r["remote"] == remote]
            check("held client %s shows as connected" % remote,
                  len(mine) == 1 and mine[0]["state"] == "connected", str(mine))
        conn = [r for r in rows if r["state"] == "connected"]
        free = [r for r in rows if r["state"] == "free"]
        check("connected badges are coloured (stylesheet applied)",
              conn and all(r["bg"] not in ("rgba(0, 0, 0, 0)", "transparent") for r in conn),
              str(conn[:1]))
        check("connected and free badges differ in colour",
              conn and free and conn[0]["bg"] != free[0]["bg"] and conn[0]["fg"] != free[0]["fg"],
              "%s vs %s" % (conn[:1], free[:1]))

        missing = [k for k in status["counters"] if k not in snap["counters"]]
        check("every /status counter is on the page", not missing, str(missing))
        for key in ("longest_poll_us", "longest_close_us"):
            v = snap["counters"].get(key, "")
            check("%s shown in time units (%s)" % (key, v), v.endswith("µs") or v.endswith("ms")
                  or v.endswith(" s"), v)
        check("tiles show the longest poll pass and close call",
              any(t.startswith("longest poll pass") for t in snap["tiles"]) and
              any(t.startswith("longest close call") for t in snap["tiles"]), str(snap["tiles"]))
        check("histogram has a row per bucket (%d)" % len(status["poll_hist"]),
              len(snap["hist"]) == len(status["poll_hist"]) and all(h[0] for h in snap["hist"]),
              str(snap["hist"]))
        check("legend lists every state", snap["legend"] == len(STATES), str(snap["legend"]))
        check("chart canvas has a size", snap["canvas"][0] >= 200 and snap["canvas"][1] >= 100,
              str(snap["canvas"]))
        check("chart draws the connected slots", snap["painted"] > 50,
              "%d pixels" % snap["painted"])
        check("no horizontal scrolling at %dx%d" % (VIEW_W, VIEW_H), snap["width"] <= VIEW_W,
              "page is %d px wide" % snap["width"])

        # It keeps polling several times a second, one request at a time.
        before = snap["refreshes"]
        time.sleep(2.0)
        after = cdp.js("Number(document.body.dataset.refreshes)")
        check("polls several times a second (%d refreshes in 2 s)" % (after - before),
              after - before >= 4, "%d" % (after - before))

        # A held client goes away: the page follows.
        gone = state["held"].pop()
        gone_addr = "127.0.0.1:%d" % gone.getsockname()[1]
        gone.close()

        def row_of_gone():
            r = cdp.js("[...document.querySelectorAll('#slots tbody tr')]"
                       ".filter((tr) => tr.cells[2].textContent === %s).length" %
                       json.dumps(gone_addr))
            return r == 0
        try:
            wait_for("the closed client's row to leave", row_of_gone, 10, 0.1)
            check("a client that closes leaves the table", True)
        except Fail as e:
            check("a client that closes leaves the table", False, str(e))

        # Let the chart gather a few seconds, then the screenshots.
        time.sleep(opts.settle)
        shot = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
        w, h = png_size(shot)
        path = os.path.join(opts.out, "status-page.png")
        with open(path, "wb") as f:
            f.write(shot)
        check("screenshot %dx%d written to %s" % (w, h, path), (w, h) == (VIEW_W, VIEW_H))
        full_h = max(VIEW_H, int(cdp.js("document.documentElement.scrollHeight")))
        shot = base64.b64decode(cdp.call(
            "Page.captureScreenshot", format="png", captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": VIEW_W, "height": full_h, "scale": 1})["data"])
        path = os.path.join(opts.out, "status-page-full.png")
        with open(path, "wb") as f:
            f.write(shot)
        log("# full page (%dx%d): %s" % (png_size(shot) + (path,)))

        # Over the whole run: never two /status requests at once, no script errors.
        open_reqs, peak, polls = set(), 0, 0
        errors = []
        for ev in cdp.events:
            m, p = ev["method"], ev.get("params", {})
            if m == "Network.requestWillBeSent" and p["request"]["url"].endswith("/status"):
                open_reqs.add(p["requestId"])
                polls += 1
                peak = max(peak, len(open_reqs))
            elif m in ("Network.loadingFinished", "Network.loadingFailed"):
                open_reqs.discard(p["requestId"])
            elif m == "Runtime.exceptionThrown":
                errors.append(json.dumps(p["exceptionDetails"])[:300])
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                errors.append(p["entry"].get("text", "")[:300])
            elif m == "Runtime.consoleAPICalled" and p["type"] == "error":
                errors.append(json.dumps(p["args"])[:300])
        check("at most one /status request in flight (%d polls, peak %d)" % (polls, peak),
              polls >= 4 and peak == 1)
        check("no script errors or failed loads", not errors, "; ".join(errors))
    finally:
        stop_chromium(state["browser"], state["cdp"])
        if state["cdp"] is not None:
            state["cdp"].ws.close()
        for s in state["held"]:
            s.close()
        server = state["server"]
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                rc = server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                rc = server.wait()
            check("slotnet-web stops cleanly on SIGINT (exit %d)" % rc, rc == 0)
            if rc != 0:
                log(open(os.path.join(tmp, "server.log")).read()[-4000:])

    if failures:
        log("# %d failure(s)" % len(failures))
        log("# Chromium log tail:\n" + open(os.path.join(tmp, "chromium.log")).read()[-2000:]
            if os.path.exists(os.path.join(tmp, "chromium.log")) else "")
        return 1
    log("# all passed")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="path to slotnet-web")
    ap.add_argument("--root", required=True, help="the www folder to serve")
    ap.add_argument("--out", default=".", help="folder for the screenshots")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds of chart history before the screenshots")
    opts = ap.parse_args()
    opts.out = os.path.abspath(opts.out)
    os.makedirs(opts.out, exist_ok=True)

    # ctest stops a test that runs over its time with SIGTERM: clean up then too.
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    tmp = tempfile.mkdtemp(prefix="slotnet-page-")
    try:
        return run(opts, tmp)
    except Fail as e:
        log("FAIL - " + str(e))
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
