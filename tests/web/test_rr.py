#!/usr/bin/env python3
"""The rr_ API of slotnet-web, case by case.

Usage: test_rr.py BIN WWW CASE [SERVER-OPTION...]   (CASE "list" prints them)

Each case starts its own slotnet-web on a free 127.0.0.1 port with a
temporary --sd folder, talks to it, checks both the replies and what is (and
is not) on disk, and stops it with SIGINT, which must give exit status 0 (so
a sanitizer report fails the case). Exit 0 pass, 1 fail, 77 skipped.
Standard library only.
"""
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from httpraw import read_response  # noqa: E402

DATE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
MODEL_KEYS = ["boards", "directories", "fans", "global", "heat", "inputs", "job", "ledStrips",
              "limits", "move", "network", "sensors", "spindles", "state", "tools", "volumes"]
LINGER_RST = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s: close() sends RST


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("  ok  " + what)


def q(v):
    """encodeURIComponent, as the client encodes values."""
    return urllib.parse.quote(str(v), safe="-_.!~*'()")


def crc_hex(data):
    return "%x" % (zlib.crc32(data) & 0xffffffff)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=3.0, step=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


EXTRA_ARGS = []  # given after CASE: passed to every server (e.g. --poll)
TEMP_DIRS = []


class Server:
    """One slotnet-web with its own storage folder."""

    def __init__(self, binary, www, *extra, env=None, preexec=None):
        extra = list(extra) + EXTRA_ARGS
        self.tmp = tempfile.mkdtemp(prefix="rr-test-")
        TEMP_DIRS.append(self.tmp)
        self.sd = os.path.join(self.tmp, "sd")
        self.key = None  # X-Session-Key sent by request() when set
        self.proc = None
        for _ in range(3):  # another process may take the port first
            self.port = free_port()
            self.log = open(os.path.join(self.tmp, "server.log"), "w+")
            self.proc = subprocess.Popen(
                [binary, "--listen", "127.0.0.1:%d" % self.port, "--root", www,
                 "--sd", self.sd] + list(extra),
                stdout=self.log, stderr=subprocess.STDOUT,
                env=dict(os.environ, **(env or {})), preexec_fn=preexec)
            if wait_for(lambda: self.proc.poll() is not None or "serving" in self.log_text(), 10):
                if self.proc.poll() is None:
                    return
            self.proc.kill()
            self.proc.wait()
        raise Fail("server did not start:\n" + self.log_text())

    def log_text(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        """SIGINT; the server must exit 0 within 5 s."""
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Fail("server still running 5 s after SIGINT")
        check(rc == 0, "SIGINT: server exits 0 (got %d)" % rc)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def path(self, *parts):
        return os.path.join(self.sd, *parts)

    # ---- HTTP ----------------------------------------------------------

    def request(self, method, target, body=None, headers=None, key="default"):
        """Returns (status, headers dict (lower-case names), body bytes)."""
        h = dict(headers or {})
        if key == "default":
            key = self.key
        if key is not None:
            h["X-Session-Key"] = str(key)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, target, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def get(self, endpoint, raw_query=None, key="default", method="GET", **params):
        # key_ is the query's "key" (key is the session's)
        query = raw_query if raw_query is not None else "&".join(
            "%s=%s" % (k.rstrip("_"), q(v)) for k, v in params.items())
        target = "/" + endpoint + ("?" + query if query else "")
        return self.request(method, target, key=key)

    def json(self, endpoint, key="default", raw_query=None, **params):
        st, h, body = self.get(endpoint, raw_query=raw_query, key=key, **params)
        if st != 200:
            raise Fail("%s %s: HTTP %d %r" % (endpoint, params or raw_query, st, body[:200]))
        if not h.get("content-type", "").startswith("application/json"):
            raise Fail("%s: content-type %r" % (endpoint, h.get("content-type")))
        return json.loads(body)

    def upload(self, name, data, crc=True, key="default", time_text=None, extra_query=""):
        query = "name=" + q(name)
        if crc is True:
            query += "&crc32=" + crc_hex(data)
        elif crc:
            query += "&crc32=" + crc
        if time_text:
            query += "&time=" + q(time_text)
        query += extra_query
        st, h, body = self.request("POST", "/rr_upload?" + query, body=data, key=key)
        return st, body

    def connect(self, password="", session_key=True):
        params = {"password": password, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if session_key:
            params["sessionKey"] = "yes"
        return self.json("rr_connect", key=None, **params)

    def seqs(self):
        return self.json("rr_model", key_="seqs")["result"]

    def raw(self):
        return socket.create_connection(("127.0.0.1", self.port), 5)

    def parts_left(self):
        """Every .part file anywhere in the storage folder."""
        found = []
        for root, dirs, files in os.walk(self.sd):
            found += [os.path.join(root, f) for f in files if f.endswith(".part")]
        return found

    def status(self):
        st, _, body = self.request("GET", "/status", key=None)
        check(st == 200, "/status is 200")
        return json.loads(body)




def closed_by_peer(s, timeout=3):
    s.settimeout(timeout)
    try:
        while True:
            if s.recv(65536) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def upload_headers(name, length, crc=None, extra=b""):
    query = "name=" + q(name) + ("&crc32=" + crc if crc else "")
    return (b"POST /rr_upload?" + query.encode() + b" HTTP/1.1\r\nHost: t\r\n"
            b"Content-Length: " + str(length).encode() + b"\r\n" + extra + b"\r\n")


def start_partial_upload(srv, name, total, sent, crc=None):
    """A raw upload that stops after `sent` of `total` body bytes; returns
    the socket once the server has written some of it to <name>.part."""
    s = srv.raw()
    s.sendall(upload_headers(name, total, crc))
    s.sendall(os.urandom(sent))
    return s


# ---- cases -------------------------------------------------------------

def case_connect(b, w):
    srv = Server(b, w, "--password", "pw")
    try:
        r = srv.connect("wrong")
        check(r == {"err": 1}, "wrong password: {\"err\":1} (%r)" % r)
        r = srv.json("rr_connect", key=None, sessionKey="yes")
        check(r.get("err") == 1, "no password parameter: not a login")
        r = srv.connect("pw")
        check(r["err"] == 0 and r["apiLevel"] == 2 and r["sessionTimeout"] == 8000,
              "login: err 0, apiLevel 2, sessionTimeout 8000")
        check("isEmulated" not in r, "login: no isEmulated")
        key = r["sessionKey"]
        check(isinstance(key, int) and 0 < key < 2 ** 32, "login: key is a nonzero u32")

        check(srv.get("rr_model", key=None, key_="")[0] == 401, "no X-Session-Key: 401")
        check(srv.get("rr_model", key=12345)[0] == 401, "unknown key: 401")
        check(srv.get("rr_model", key="abc")[0] == 401, "key not a number: 401")
        check(srv.get("rr_model", key=99999999999)[0] == 401, "key over 32 bits: 401")
        check(srv.get("rr_model", key=0)[0] == 401, "key 0 (IP-only, none made): 401")
        st, _, body = srv.get("rr_model", key=key, key_="seqs")
        check(st == 200 and json.loads(body)["key"] == "seqs", "valid key: 200")
        check(srv.request("GET", "/status", key=None)[0] == 200, "/status needs no session")
        check(srv.request("GET", "/", key=None)[0] == 200, "static files need no session")

        # 401 for an upload, and nothing written
        st, _ = srv.upload("0:/gcodes/x.g", b"data", key=None)
        check(st == 401, "upload without a session: 401")
        check(not os.path.exists(srv.path("gcodes", "x.g")) and not srv.parts_left(),
              "upload without a session: nothing on disk")

        # at most 8 sessions, unique keys
        keys = [key] + [srv.connect("pw")["sessionKey"] for _ in range(7)]
        check(len(set(keys)) == 8 and all(k > 0 for k in keys), "8 sessions, 8 unique keys")
        r = srv.connect("pw")
        check(r == {"err": 2}, "9th login: {\"err\":2} (%r)" % r)

        # disconnect, then the re-login flow the client follows on 401
        check(srv.json("rr_disconnect", key=keys[0]) == {"err": 0}, "disconnect: err 0")
        check(srv.get("rr_model", key=keys[0])[0] == 401, "after disconnect: 401")
        check(srv.get("rr_disconnect", key=keys[0])[0] == 401, "disconnect again: 401")
        r = srv.connect("pw")
        check(r["err"] == 0 and r["sessionKey"] not in keys, "re-login: err 0, a new key")
        check(srv.get("rr_model", key=r["sessionKey"])[0] == 200, "re-login: request repeats fine")
        check(srv.connect("pw") == {"err": 2}, "table full again: err 2")
        check(srv.json("rr_model", key=keys[3], key_="state.status")["result"] == "idle",
              "other sessions unaffected")
        # an IP-only session by login without sessionKey=yes
        srv.json("rr_disconnect", key=keys[1])
        r = srv.connect("pw", session_key=False)
        check(r["err"] == 0 and "sessionKey" not in r, "login without sessionKey=yes: no key")
        check(srv.get("rr_model", key=None)[0] == 200, "IP-only session: no header needed")
        check(srv.get("rr_model", key=0)[0] == 200, "IP-only session: key 0 works too")
    finally:
        srv.stop()


def case_session_expiry(b, w):
    srv = Server(b, w, "--password", "pw", "--session-timeout-ms", "600")
    try:
        r = srv.connect("pw")
        check(r["sessionTimeout"] == 600, "sessionTimeout reports the option")
        key = r["sessionKey"]
        for i in range(4):  # each request within the timeout keeps it alive
            time.sleep(0.35)
            check(srv.get("rr_model", key=key, key_="seqs")[0] == 200,
                  "request %d at %.2f s: still in session" % (i, 0.35 * (i + 1)))
        time.sleep(1.0)
        check(srv.get("rr_model", key=key)[0] == 401, "idle past the timeout: 401")
        key2 = srv.connect("pw")["sessionKey"]
        check(srv.get("rr_model", key=key2)[0] == 200, "re-login after expiry works")
        # expired sessions make room
        for _ in range(7):
            srv.connect("pw")
        check(srv.connect("pw") == {"err": 2}, "table full")
        time.sleep(0.9)
        check(srv.connect("pw")["err"] == 0, "expired sessions free the table")
    finally:
        srv.stop()


def case_no_password(b, w):
    srv = Server(b, w)
    try:
        check(srv.get("rr_model", key=None)[0] == 200, "no password: request without login works")
        check(srv.get("rr_filelist", dir="0:/gcodes", key=424242)[0] == 200,
              "no password: unknown key still served (IP-only session)")
        r = srv.connect("anything")
        check(r["err"] == 0 and r["sessionKey"] > 0, "no password: any password logs in")
        r = srv.json("rr_connect", key=None, sessionKey="yes")
        check(r["err"] == 0, "no password: even without the parameter")
        check(srv.status()["sessions"] >= 1, "/status counts sessions")
        st, body = srv.upload("0:/gcodes/np.g", b"G28\n", key=None)
        check(st == 200 and json.loads(body) == {"err": 0}, "no password: upload works")
    finally:
        srv.stop()


def case_model(b, w):
    srv = Server(b, w)
    try:
        st, h, body = srv.get("rr_model", key_="seqs")
        r = json.loads(body)
        check(st == 200 and h["content-type"] == "application/json", "seqs: 200 JSON")
        check("no-cache" in h.get("cache-control", "") and
              h.get("access-control-allow-origin") == "*", "rr_ headers: no-cache, CORS")
        check(r["key"] == "seqs" and r["flags"] == "" and isinstance(r["result"], dict),
              "seqs: key/flags echoed, result is an object")
        s = r["result"]
        check(isinstance(s["reply"], int) and s["volChanges"] == [0],
              "seqs has reply and volChanges [0]")
        check(all(isinstance(s[k], int) for k in MODEL_KEYS), "seqs has a counter per key")

        for k in MODEL_KEYS:
            r = srv.json("rr_model", key_=k, flags="d99vno")
            check(r["key"] == k and r["flags"] == "d99vno" and "result" in r,
                  "key %s: 200, valid JSON" % k)
            if k in ("state", "job", "limits", "move"):
                check(isinstance(r["result"], dict), "key %s is an object" % k)
        mv = srv.json("rr_model", key_="move", flags="d99vno")["result"]
        check(isinstance(mv["axes"], list) and 0 < len(mv["axes"]) < 9, "move.axes: 1..8 entries")
        lim = srv.json("rr_model", key_="limits", flags="d99vno")["result"]
        check(lim.get("reportedAxes") is None, "limits.reportedAxes absent (client assumes 9)")
        vols = srv.json("rr_model", key_="volumes", flags="d99vno")["result"]
        check(vols[0]["mounted"] is True and vols[0]["freeSpace"] > 0, "volumes[0] mounted")

        live = srv.get("rr_model", flags="d99fn")[2]
        full = srv.get("rr_model", flags="d99vno")[2]
        r = json.loads(live)["result"]
        check(isinstance(r["seqs"], dict) and isinstance(r["job"], dict) and
              isinstance(r["state"]["upTime"], int) and r["state"]["status"] == "idle",
              "live query: seqs, state.upTime, state.status, job")
        check(len(live) < len(full) and "directories" not in r,
              "live query is the live subset (%d < %d bytes)" % (len(live), len(full)))
        fr = json.loads(full)["result"]
        check(all(k in fr for k in MODEL_KEYS + ["seqs"]), "full query: all 16 keys and seqs")

        up = []
        for _ in range(6):
            up.append(srv.json("rr_model", key_="state.upTime")["result"])
            time.sleep(0.3)
        check(all(isinstance(u, int) for u in up), "upTime: whole seconds")
        check(all(a <= b for a, b in zip(up, up[1:])) and up[-1] >= up[0] + 1,
              "upTime never falls and advances (%r)" % up)

        check(srv.json("rr_model", key_="nonsense")["result"] is None, "unknown key: null, 200")
        check(srv.json("rr_model", key_="state.nonsense")["result"] is None,
              "unknown subkey: null")
        check(srv.json("rr_model", key_="move.axes[1].letter")["result"] == "Y",
              "key with an index: move.axes[1].letter")
        check(srv.json("rr_model", key_="move.axes[7]")["result"] is None,
              "index past the end: null")
        ax = srv.json("rr_model", key_="move.axes", flags="d99vnoa1")["result"]
        check([a["letter"] for a in ax] == ["Y", "Z"], "a<N>: array from element N")
        check(srv.json("rr_model", key_="directories.gCodes")["result"] == "0:/gcodes/",
              "directories.gCodes")
        st, h, body = srv.get("rr_model", method="HEAD", key_="seqs")
        check(st == 200 and body == b"" and int(h["content-length"]) > 0, "HEAD: header only")
    finally:
        srv.stop()


def wait_reply_seq(srv, target, key="default"):
    return wait_for(lambda: srv.json("rr_model", key=key, key_="seqs")["result"]["reply"] >= target)


def case_gcode(b, w):
    srv = Server(b, w, "--password", "pw")
    try:
        ka = srv.connect("pw")["sessionKey"]
        kb = srv.connect("pw")["sessionKey"]
        srv.key = ka
        r0 = srv.seqs()["reply"]
        r = srv.json("rr_gcode", gcode="M115")
        check(set(r) == {"buff"} and r["buff"] > 0, "M115 accepted, buff > 0 (%r)" % r)
        check(wait_reply_seq(srv, r0 + 1), "seqs.reply bumps once the code ran")
        check(srv.seqs()["reply"] == r0 + 1, "...by exactly one")
        st, h, body = srv.get("rr_reply")
        check(st == 200 and h["content-type"].startswith("text/plain") and
              b"FIRMWARE_NAME: slotnet-web" in body, "rr_reply: M115's answer (%r)" % body)
        check(srv.get("rr_reply")[2] == b"", "rr_reply again: empty (already read)")
        check(b"FIRMWARE_NAME" in srv.get("rr_reply", key=kb)[2],
              "the other session reads it too")
        check(srv.get("rr_reply", key=kb)[2] == b"", "...once")

        r1 = srv.seqs()["reply"]
        r = srv.json("rr_gcode", gcode='G28\nM118 S"hello world" ; say it\n; only a comment\nM999')
        check(r["buff"] > 0, "three codes and a comment accepted")
        check(wait_reply_seq(srv, r1 + 3) and srv.seqs()["reply"] == r1 + 3,
              "seqs.reply bumps once per code (3)")
        body = srv.get("rr_reply")[2].decode()
        check(body.split("\n")[:3] == ["ok", "hello world", "ok"], "replies in order: %r" % body)

        r1 = srv.seqs()["reply"]
        srv.json("rr_gcode", gcode="hello")
        check(wait_reply_seq(srv, r1 + 1), "a bad command also finishes")
        check(srv.get("rr_reply")[2].startswith(b"Error: Bad command: hello"), "...with an error")

        r1 = srv.seqs()["reply"]
        r = srv.json("rr_gcode", gcode="")
        check(r["buff"] == 1024, "empty gcode: reports the free buffer (%r)" % r)
        r = srv.json("rr_gcode")
        check(r["buff"] == 1024, "no gcode parameter: same")
        time.sleep(0.2)
        check(srv.seqs()["reply"] == r1, "nothing queued: seqs.reply unchanged")

        s0 = srv.seqs()
        srv.json("rr_gcode", gcode='M117 "Printing nothing"')
        check(wait_for(lambda: srv.seqs()["state"] > s0["state"]), "M117 bumps seqs.state")
        check(srv.json("rr_model", key_="state.displayMessage")["result"] == "Printing nothing",
              "M117 sets state.displayMessage")
        srv.json("rr_gcode", gcode='M550 P"bench printer"')
        check(wait_for(lambda: srv.json("rr_model", key_="network.name")["result"] ==
                       "bench printer"), "M550 sets network.name")
        check(srv.seqs()["network"] > s0["network"], "M550 bumps seqs.network")

        r = srv.json("rr_gcode", gcode="G1 X" + "1" * 1019)  # 1024 bytes with its newline
        check(r == {"err": 1}, "code that would fill the queue: err 1, never buff 0 (%r)" % r)
        r = srv.json("rr_gcode", gcode="G1 X" + "1" * 1018)  # leaves 1 byte
        check(r.get("buff") == 1, "largest code that fits: buff 1 (%r)" % r)
        r = srv.json("rr_gcode", raw_query="gcode=M%zz5")
        check(r == {"err": 1}, "bad percent-encoding: err 1")
        check(srv.get("rr_gcode", key=None, gcode="M115")[0] == 401, "rr_gcode needs a session")
        check(srv.get("rr_reply", key=None)[0] == 401, "rr_reply needs a session")
    finally:
        srv.stop()


def case_upload_ok(b, w):
    srv = Server(b, w)
    try:
        s0 = srv.seqs()
        data = os.urandom(100000)
        st, body = srv.upload("0:/gcodes/a.g", data, time_text="2021-03-04T05:06:07")
        check(st == 200 and json.loads(body) == {"err": 0}, "upload with CRC: err 0")
        with open(srv.path("gcodes", "a.g"), "rb") as f:
            check(f.read() == data, "file on disk is the body")
        check(not srv.parts_left(), "no .part left")
        mt = time.localtime(os.stat(srv.path("gcodes", "a.g")).st_mtime)
        check(time.strftime("%Y-%m-%dT%H:%M:%S", mt) == "2021-03-04T05:06:07",
              "time parameter applied as mtime")
        s1 = srv.seqs()
        check(s1["volChanges"][0] == s0["volChanges"][0] + 1 and s1["volumes"] > s0["volumes"],
              "volChanges[0] and seqs.volumes bumped")
        check(srv.json("rr_upload") == {"err": 0}, "GET rr_upload: last result err 0")

        st, body = srv.upload("0:/gcodes/nocrc.g", b"G28\n", crc=None)
        check(json.loads(body) == {"err": 0}, "upload without crc32: err 0")
        st, body = srv.upload("0:/gcodes/empty.g", b"", crc="0")
        check(json.loads(body) == {"err": 0} and os.path.getsize(srv.path("gcodes", "empty.g")) == 0,
              "empty file with crc32=0")
        st, body = srv.upload("0:/gcodes/upper.g", b"a", crc="E8B7BE43")
        check(json.loads(body) == {"err": 0}, "upper-case CRC accepted")
        check(crc_hex(b"123456789") == "cbf43926", "the test's CRC is the reference one")
        d = next(x for x in (b"%d" % i for i in range(1000)) if zlib.crc32(x) < 0x10000000)
        st, body = srv.upload("0:/gcodes/short.g", d)
        check(len(crc_hex(d)) < 8 and json.loads(body) == {"err": 0},
              "unpadded CRC (%s) accepted" % crc_hex(d))
        st, body = srv.upload("0:/gcodes/padded.g", d, crc="%08x" % zlib.crc32(d))
        check(json.loads(body) == {"err": 0}, "zero-padded CRC accepted too")
        st, body = srv.upload("0:/gcodes/new/deep/b.g", b"deep")
        check(json.loads(body) == {"err": 0} and
              open(srv.path("gcodes", "new", "deep", "b.g"), "rb").read() == b"deep",
              "missing folders are made")
        st, body = srv.upload("0:/gcodes/a.g", b"replaced")
        check(json.loads(body) == {"err": 0} and
              open(srv.path("gcodes", "a.g"), "rb").read() == b"replaced", "upload replaces")
        st, body = srv.upload("gcodes/novol.g", b"x")
        check(json.loads(body) == {"err": 0} and os.path.exists(srv.path("gcodes", "novol.g")),
              "a path without volume is on volume 0")
        name = "0:/gcodes/sp ace&amp;+ü.g"
        st, body = srv.upload(name, b"odd")
        check(json.loads(body) == {"err": 0} and
              os.path.exists(srv.path("gcodes", "sp ace&amp;+ü.g")), "odd characters in a name")
        st, _, got = srv.get("rr_download", name=name)
        check(st == 200 and got == b"odd", "...and downloaded by that name")

        # a big one over keep-alive, then more requests on the same connection
        big = os.urandom(3 * 1024 * 1024 + 17)
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
        conn.request("POST", "/rr_upload?name=" + q("0:/gcodes/big.bin") + "&crc32=" +
                     crc_hex(big), body=big)
        r = conn.getresponse()
        check(r.status == 200 and json.loads(r.read()) == {"err": 0}, "3 MiB upload: err 0")
        conn.request("GET", "/rr_download?name=" + q("0:/gcodes/big.bin"))
        r = conn.getresponse()
        got = r.read()
        check(r.status == 200 and got == big, "downloaded on the same connection, intact")
        conn.request("GET", "/rr_fileinfo?name=" + q("0:/gcodes/big.bin"))
        r = conn.getresponse()
        info = json.loads(r.read())
        check(info["err"] == 0 and info["size"] == len(big), "fileinfo on the same connection")
        conn.close()
        check(srv.status()["upload_bytes"] >= len(big) + len(data), "/status: upload_bytes")

        # Expect: 100-continue (curl asks before a large body)
        body = b"continued body"
        s = srv.raw()
        s.sendall(upload_headers("0:/gcodes/cont.g", len(body), crc_hex(body),
                                 b"Expect: 100-continue\r\n"))
        s.settimeout(5)
        first = s.recv(100)
        check(first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), "100 Continue sent first")
        s.sendall(body)
        st, _, rb, _ = read_response(s, first[len(b"HTTP/1.1 100 Continue\r\n\r\n"):])
        check(st == 200 and json.loads(rb) == {"err": 0}, "then the upload completes")
        s.close()
        st, _, _ = srv.get("rr_download", name="0:/gcodes/missing.g")
        check(st == 404, "download of a missing file: 404")
        check(not srv.parts_left(), "no .part left anywhere")
        check(srv.status()["uploads_active"] == 0, "/status: no upload active")
    finally:
        srv.stop()


def case_upload_bad(b, w):
    srv = Server(b, w)
    try:
        keep = srv.path("gcodes", "keep.g")
        with open(keep, "wb") as f:
            f.write(b"OLD CONTENT")
        s0 = srv.seqs()
        st, body = srv.upload("0:/gcodes/keep.g", b"new content", crc="12345678")
        check(st == 200 and json.loads(body) == {"err": 1}, "CRC mismatch: err 1")
        check(open(keep, "rb").read() == b"OLD CONTENT", "old target kept")
        check(not srv.parts_left(), "no .part left")
        check(srv.json("rr_upload") == {"err": 1}, "GET rr_upload: last result err 1")
        check(srv.seqs()["volChanges"] == s0["volChanges"], "volChanges not bumped on failure")

        st, body = srv.upload("0:/gcodes/n1/n2/x.g", b"data", crc="1")
        check(json.loads(body) == {"err": 1} and not os.path.exists(srv.path("gcodes", "n1")),
              "CRC mismatch in new folders: the folders are removed too")
        os.mkdir(srv.path("gcodes", "n1"))
        st, body = srv.upload("0:/gcodes/n1/n2/x.g", b"data", crc="1")
        check(os.path.isdir(srv.path("gcodes", "n1")) and
              not os.path.exists(srv.path("gcodes", "n1", "n2")),
              "...but a folder that was there stays")

        for crc in ("xyz", "123456789", "0x12", "", "-1", "%zz"):
            st, _, body = srv.request("POST", "/rr_upload?name=" + q("0:/gcodes/badcrc.g") +
                                      "&crc32=" + crc, body=b"data")
            check(json.loads(body) == {"err": 1}, "malformed crc32 %r: err 1" % crc)
        check(not os.path.exists(srv.path("gcodes", "badcrc.g")), "...and nothing written")

        st, _, body = srv.request("POST", "/rr_upload", body=b"data")
        check(json.loads(body) == {"err": 1}, "no name: err 1")
        for name in ("0:/", "0:", "", "0:/gcodes", "0:/gcodes/"):
            st, body = srv.upload(name, b"data")
            check(json.loads(body) == {"err": 1}, "name %r: err 1" % name)
        check(os.path.isdir(srv.path("gcodes")), "gcodes folder untouched")
        st, body = srv.upload("1:/gcodes/a.g", b"data")
        check(json.loads(body) == {"err": 1}, "volume 1: err 1")
        long_name = "0:/gcodes/" + "n" * 252
        st, body = srv.upload(long_name, b"data")
        check(json.loads(body) == {"err": 1}, "name too long for its .part: err 1")

        # chunked, no Content-Length: refused, nothing written
        s = srv.raw()
        s.sendall(b"POST /rr_upload?name=" + q("0:/gcodes/ch.g").encode() +
                  b" HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndata\r\n0\r\n\r\n")
        st, _, _, _ = read_response(s)
        check(st == 411, "no Content-Length: 411")
        s.close()
        check(not os.path.exists(srv.path("gcodes", "ch.g")), "...nothing written")

        # a planted .part symlink is replaced, never written through
        outside = os.path.join(srv.tmp, "victim.txt")
        with open(outside, "wb") as f:
            f.write(b"VICTIM")
        os.symlink(outside, srv.path("gcodes", "p.g.part"))
        st, body = srv.upload("0:/gcodes/p.g", b"payload")
        check(json.loads(body) == {"err": 0} and open(outside, "rb").read() == b"VICTIM",
              "a .part symlink is not followed")
        check(open(srv.path("gcodes", "p.g"), "rb").read() == b"payload", "upload landed")
        check(not srv.parts_left(), "no .part left anywhere")
    finally:
        srv.stop()


def case_upload_oversize(b, w):
    srv = Server(b, w, "--upload-max", "1000")
    try:
        # announced: headers only
        s = srv.raw()
        s.sendall(upload_headers("0:/gcodes/big.g", 5000))
        st, h, _, _ = read_response(s)
        check(st == 413 and h.get("connection") == "close", "announced oversize: 413, close")
        check(closed_by_peer(s), "...and the connection is closed")
        s.close()
        # announced, with the whole body sent
        data = os.urandom(5000)
        st, body = srv.upload("0:/gcodes/big.g", data)
        check(st == 413, "oversize body sent anyway: 413")
        check(not os.path.exists(srv.path("gcodes", "big.g")) and not srv.parts_left(),
              "nothing on disk")
        data = os.urandom(1000)
        st, body = srv.upload("0:/gcodes/max.g", data)
        check(json.loads(body) == {"err": 0}, "exactly the limit: err 0")

        # actual: more bytes than announced; the surplus is not the file (its
        # first byte is no method, so it is a malformed request for sure)
        data = os.urandom(500) + b"\x00" + os.urandom(499)
        s = srv.raw()
        s.sendall(upload_headers("0:/gcodes/more.g", 500, crc_hex(data)) + data)
        st, _, rb, rest = read_response(s)
        check(st == 200 and json.loads(rb) == {"err": 1},
              "body longer than Content-Length: CRC of the whole fails, err 1")
        try:
            st2, h2, _, _ = read_response(s, rest)
        except (EOFError, ConnectionResetError):
            st2, h2 = 0, {}
        check(st2 == 400, "the surplus is a malformed request: 400 (%d)" % st2)
        s.close()
        check(not os.path.exists(srv.path("gcodes", "more.g")) and not srv.parts_left(),
              "nothing on disk")
        s = srv.raw()
        s.sendall(upload_headers("0:/gcodes/cut.g", 500) + data[:500])
        st, _, rb, _ = read_response(s)
        check(json.loads(rb) == {"err": 0} and os.path.getsize(srv.path("gcodes", "cut.g")) == 500,
              "without crc32 the file is exactly Content-Length bytes")
        s.close()
        check(srv.json("rr_upload", raw_query="") == {"err": 0}, "GET rr_upload")
    finally:
        srv.stop()


def cut_upload(srv, name, how):
    """Sends part of an upload, checks the .part exists, then breaks off."""
    leaf = os.path.basename(name.split(":", 1)[-1])
    s = srv.raw()
    s.sendall(upload_headers(name, 1000000, "1234"))
    s.sendall(os.urandom(200000))
    part = None

    def find_part():
        nonlocal part
        found = [p for p in srv.parts_left() if os.path.basename(p) == leaf + ".part"]
        part = found[0] if found else None
        return part and os.path.getsize(part) > 0
    check(wait_for(find_part), "%s: body streams into %s.part" % (how, leaf))
    if how == "rst":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        s.close()
    elif how == "fin":
        s.close()
    return s, part


def case_upload_cut(b, w):
    srv = Server(b, w)
    try:
        keep = srv.path("gcodes", "keep.g")
        with open(keep, "wb") as f:
            f.write(b"OLD")
        for how in ("fin", "rst"):
            _, part = cut_upload(srv, "0:/gcodes/keep.g", how)
            check(wait_for(lambda: not os.path.exists(part)), "%s mid-body: .part deleted" % how)
            check(open(keep, "rb").read() == b"OLD", "%s mid-body: old target kept" % how)
            check(srv.json("rr_upload") == {"err": 1}, "%s: GET rr_upload says err 1" % how)
        _, part = cut_upload(srv, "0:/gcodes/c1/c2/new.g", "rst")
        check(wait_for(lambda: not os.path.exists(srv.path("gcodes", "c1"))),
              "cut upload into new folders: folders removed")
        check(wait_for(lambda: srv.status()["uploads_active"] == 0), "no upload active")
        st = srv.status()
        check(st["uploads_failed"] >= 3, "/status counts failed uploads")
        # the server stops mid-upload: the .part must go too
        s, part = cut_upload(srv, "0:/gcodes/stop.g", "keep")
        srv.stop()
        s.close()
        check(not os.path.exists(part) and not os.path.exists(srv.path("gcodes", "stop.g")),
              "stopped mid-upload: nothing left")
        check(not srv.parts_left(), "no .part anywhere")
    finally:
        srv.kill()


def case_upload_stall(b, w):
    # the client stops sending: abandoned after the session timeout
    srv = Server(b, w, "--session-timeout-ms", "700")
    try:
        with open(srv.path("gcodes", "keep.g"), "wb") as f:
            f.write(b"OLD")
        t0 = time.time()
        s, part = cut_upload(srv, "0:/gcodes/keep.g", "stall")
        check(wait_for(lambda: not os.path.exists(part), 5), "stalled upload: .part deleted")
        check(time.time() - t0 > 0.6, "...not before the timeout")
        check(closed_by_peer(s), "...and the connection ended")
        s.close()
        check(open(srv.path("gcodes", "keep.g"), "rb").read() == b"OLD", "old target kept")
        # a trickle (a byte every 200 ms keeps clear of the no-data rule) is
        # dropped once a window passes below the minimum rate
        s = srv.raw()
        s.sendall(upload_headers("0:/gcodes/keep.g", 100000))
        t0 = time.time()
        dropped = False
        while time.time() - t0 < 5 and not dropped:
            try:
                s.sendall(b"x")
            except OSError:
                dropped = True
                break
            time.sleep(0.2)
            dropped = closed_by_peer(s, 0.01)
        check(dropped and time.time() - t0 < 3, "trickling upload dropped (%.1f s)" % (time.time() - t0))
        s.close()
        check(wait_for(lambda: not srv.parts_left(), 5), "...its .part deleted")
        check(open(srv.path("gcodes", "keep.g"), "rb").read() == b"OLD", "old target kept")
        # a slow but steady upload is not a stalled one
        data = os.urandom(40000)
        s = srv.raw()
        s.sendall(upload_headers("0:/gcodes/slow.g", len(data), crc_hex(data)))
        for i in range(0, len(data), 10000):
            time.sleep(0.4)
            s.sendall(data[i:i + 10000])
        st, _, rb, _ = read_response(s)
        check(json.loads(rb) == {"err": 0}, "slow upload (gaps < timeout) completes")
        s.close()
    finally:
        srv.stop()


def case_upload_idle(b, w):
    # the core's idle timeout frees the slot mid-upload
    srv = Server(b, w, "--idle-ms", "500")
    try:
        s, part = cut_upload(srv, "0:/gcodes/idle.g", "stall")
        check(wait_for(lambda: not os.path.exists(part), 5), "slot freed by idle timeout: .part deleted")
        check(not os.path.exists(srv.path("gcodes", "idle.g")), "no target")
        check(closed_by_peer(s), "connection reset")
        s.close()
        check(srv.status()["counters"]["idle_timeouts"] >= 1, "core counted an idle timeout")
    finally:
        srv.stop()


def case_upload_busy(b, w):
    srv = Server(b, w)
    try:
        socks = []
        for i in range(4):
            s, _ = cut_upload(srv, "0:/gcodes/u%d.g" % i, "keep")
            socks.append(s)
        check(srv.status()["uploads_active"] == 4, "four uploads at once")
        check(srv.json("rr_disconnect") == {"err": 1}, "disconnect while uploading: err 1")
        st, h, body = srv.request("POST", "/rr_upload?name=" + q("0:/gcodes/u5.g"), body=b"x")
        check(st == 503 and body == b"", "a fifth: 503 with an empty body")
        check(not os.path.exists(srv.path("gcodes", "u5.g")), "...nothing written")
        st, body = srv.upload("0:/gcodes/u6.g", b"x")
        check(st == 503, "still 503 while the table is full")
        socks[0].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        socks[0].close()
        check(wait_for(lambda: srv.status()["uploads_active"] == 3), "one ends")
        # same target as a running upload: refused, the running one unharmed
        st, body = srv.upload("0:/gcodes/u1.g", b"second")
        check(json.loads(body) == {"err": 1}, "second upload to a busy target: err 1")
        check(any(p.endswith("u1.g.part") for p in srv.parts_left()), "first one's .part still there")
        st, body = srv.upload("0:/gcodes/u5.g", b"now")
        check(json.loads(body) == {"err": 0}, "a free entry again: upload works")
        for s in socks[1:]:
            s.close()
        check(wait_for(lambda: not srv.parts_left()), "all cut uploads cleaned up")
    finally:
        srv.stop()


def send_upload(srv, name, data, extra=b""):
    """A raw upload sent whole; returns the socket, the reply not read."""
    s = srv.raw()
    s.sendall(upload_headers(name, len(data), crc_hex(data), extra) + data)
    return s


def quiet_status(srv):
    """/status without a line in the log: for polling."""
    st, _, body = srv.request("GET", "/status", key=None)
    return json.loads(body) if st == 200 else {}


def body_in(srv, total):
    """True once the server has written `total` upload bytes in all."""
    return quiet_status(srv).get("upload_bytes", 0) >= total


def case_upload_finish(b, w):
    # The durable finish (fsync, rename, fsync of the folder) runs on a
    # worker. A test hook makes the worker wait 1.5 s first, so the window
    # in which a finish is pending is hit every time.
    slow = {"SLOTNET_WEB_TEST_FINISH_DELAY_MS": "1500"}
    srv = Server(b, w, "--password", "pw", "--session-timeout-ms", "700", env=slow)
    try:
        def seqs():
            # each time in a new session: the uploader's must not be refreshed
            srv.key = srv.connect("pw")["sessionKey"]
            return srv.seqs()
        key = srv.connect("pw")["sessionKey"]
        hdr = b"X-Session-Key: %d\r\n" % key
        s0 = seqs()
        data = os.urandom(2 * 1024 * 1024 + 5)
        s = send_upload(srv, "0:/gcodes/f.g", data, hdr)
        check(wait_for(lambda: body_in(srv, len(data)), 10), "the whole body is in")
        t_in = time.time()
        st = srv.status()
        check(time.time() - t_in < 0.5 and st["uploads_active"] == 1,
              "while the finish is pending the loop answers /status at once")
        check(st["loop"]["longest_turn_us"] < 1000000, "...and no loop turn waited for it")
        s.settimeout(0.3)
        try:
            early = s.recv(100)
        except socket.timeout:
            early = None
        check(early is None, "no reply before the file is in place")
        check(not os.path.exists(srv.path("gcodes", "f.g")) and srv.parts_left(),
              "...and it is not yet: only the .part")
        check(seqs()["volChanges"] == s0["volChanges"], "volChanges not bumped yet")
        time.sleep(max(0.0, t_in + 1.0 - time.time()))
        seqs()  # sessions are swept here: the uploader's is 1 s idle, past its 0.7 s
        s.settimeout(10)
        st_, _, rb, _ = read_response(s)
        check(st_ == 200 and json.loads(rb) == {"err": 0}, "then {\"err\":0}")
        with open(srv.path("gcodes", "f.g"), "rb") as f:
            check(f.read() == data, "the file is in place, whole")
        check(not srv.parts_left(), "no .part left")
        check(seqs()["volChanges"][0] == s0["volChanges"][0] + 1, "volChanges bumped now")
        check(srv.get("rr_model", key=key, key_="seqs")[0] == 200,
              "the uploader's session was kept while its finish was pending")
        s.sendall(b"GET /rr_model?key=seqs HTTP/1.1\r\n" + hdr + b"\r\n")
        st_, _, _, _ = read_response(s)
        check(st_ == 200, "the connection goes on with the next request")
        s.close()

        # the client goes away while its finish is pending: the file lands
        srv.key = srv.connect("pw")["sessionKey"]
        ok0 = srv.status()["uploads_ok"]
        data2 = os.urandom(1024 * 1024)
        base = srv.status()["upload_bytes"]
        s = send_upload(srv, "0:/gcodes/gone.g", data2, b"X-Session-Key: %d\r\n" % srv.key)
        check(wait_for(lambda: body_in(srv, base + len(data2)), 10), "second body in")
        check(srv.status()["uploads_active"] == 1, "its finish is pending")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        s.close()
        check(wait_for(lambda: quiet_status(srv).get("uploads_active") == 0, 5), "the finish ends")
        with open(srv.path("gcodes", "gone.g"), "rb") as f:
            check(f.read() == data2, "client gone meanwhile: the file still lands, whole")
        check(srv.status()["uploads_ok"] == ok0 + 1 and not srv.parts_left(),
              "counted as done, no .part left")

        # SIGINT while a finish is pending: the server completes it first
        srv.key = srv.connect("pw")["sessionKey"]
        data3 = os.urandom(1024 * 1024)
        base = srv.status()["upload_bytes"]
        s = send_upload(srv, "0:/gcodes/stop.g", data3, b"X-Session-Key: %d\r\n" % srv.key)
        check(wait_for(lambda: body_in(srv, base + len(data3)), 10), "third body in")
        check(srv.status()["uploads_active"] == 1, "its finish is pending")
        srv.stop()
        s.close()
        with open(srv.path("gcodes", "stop.g"), "rb") as f:
            check(f.read() == data3, "SIGINT while pending: the file landed before the exit")
        check(not srv.parts_left(), "no .part left")
    finally:
        srv.kill()


def case_upload_write_error(b, w):
    # A write that fails mid-body (here EFBIG past RLIMIT_FSIZE, standing in
    # for ENOSPC: the server sees the same -1 from write) fails the upload
    # cleanly: {"err":1}, no .part, the old target kept, the server fine.
    limit = 1024 * 1024

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    srv = Server(b, w, preexec=small_disk)
    try:
        st, body = srv.upload("0:/gcodes/keep.g", b"old content")
        check(json.loads(body) == {"err": 0}, "a small upload fits")
        for size in (limit + 1, 3 * limit + 12345, 24 * limit):
            data = os.urandom(size)
            s = srv.raw()
            # The server stops reading at the failure: send from a thread, so
            # the reply can be read meanwhile. Past the failure the server
            # answers and closes with body unread, which may reset instead.
            def send():
                try:
                    s.sendall(upload_headers("0:/gcodes/keep.g", size, crc_hex(data)) + data)
                except OSError:
                    pass
            t = threading.Thread(target=send)
            t.start()
            s.settimeout(20)
            try:
                st_, _, rb, _ = read_response(s)
            except (ConnectionResetError, EOFError):
                st_, rb = None, b""
            if st_ is not None:
                check(st_ == 200 and json.loads(rb) == {"err": 1},
                      "%d bytes past the limit: {\"err\":1} (%r)" % (size, rb[:40]))
            else:
                check(True, "%d bytes past the limit: reset with body unread" % size)
            s.close()
            t.join(20)
            check(wait_for(lambda: not srv.parts_left(), 5), "...no .part left")
            with open(srv.path("gcodes", "keep.g"), "rb") as f:
                check(f.read() == b"old content", "...the old target kept")
            check(srv.status()["uploads_active"] == 0, "...no upload active")
            check(srv.json("rr_upload") == {"err": 1}, "GET rr_upload: last result err 1")
        st, body = srv.upload("0:/gcodes/after.g", b"G28\n" * 1000)
        check(json.loads(body) == {"err": 0}, "a small upload still works afterwards")
    finally:
        srv.stop()


def case_upload_stop(b, w):
    # SIGINT right after a large upload's last byte, at a few moments: the
    # server may still be reading the body, finishing it, or done. Either the
    # whole target or nothing; never a .part, never a partial file.
    data = os.urandom(24 * 1024 * 1024)
    seen = set()
    for delay in (0, 0.01, 0.05, 0.2, 1.0):
        srv = Server(b, w)
        try:
            s = send_upload(srv, "0:/gcodes/big.g", data)
            time.sleep(delay)
            srv.stop()
            s.close()
            target = srv.path("gcodes", "big.g")
            if os.path.exists(target):
                with open(target, "rb") as f:
                    check(f.read() == data,
                          "SIGINT %g s after the last byte: the whole file" % delay)
                seen.add("whole")
            else:
                check(True, "SIGINT %g s after the last byte: no file" % delay)
                seen.add("none")
            check(not srv.parts_left(), "...and no .part")
        finally:
            srv.kill()
    print("# outcomes seen: %s" % ", ".join(sorted(seen)))
    check("whole" in seen, "a stop 1 s after the body leaves the whole file")


def raw_until_reply(s, data, step, limit):
    """Sends data one byte every `step` s until the server answers (or
    closes); returns (what came back, seconds from the first byte)."""
    t0 = time.time()
    got = b""
    i = 0
    s.settimeout(step)
    while time.time() - t0 < limit:
        if not got and i < len(data):
            try:
                s.send(data[i:i + 1])
            except OSError:
                break
            i += 1
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
        if b"\r\n\r\n" in got:
            break
    return got, time.time() - t0


def case_header_timeout(b, w):
    srv = Server(b, w, "--header-timeout-ms", "800")
    try:
        # a trickle: every byte resets the idle timer, not the deadline
        s = srv.raw()
        got, took = raw_until_reply(s, b"GET /status HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100,
                                    0.1, 5)
        head = got.split(b"\r\n\r\n")[0].lower()
        check(head.startswith(b"http/1.1 408") and b"connection: close" in head,
              "headers trickled past the deadline: 408, Connection: close (%r)" % got[:40])
        check(0.7 < took < 2.5, "...about 0.8 s after the first byte (%.2f s)" % took)
        check(closed_by_peer(s), "...and the connection is closed")
        s.close()

        # slow but in time, and the clock starts at a request's first byte
        s = srv.raw()
        time.sleep(1.0)  # idle before the first byte: no deadline yet
        s.sendall(b"GET /status HTTP/1.1\r\nHost: t\r\n")
        time.sleep(0.4)
        s.sendall(b"\r\n")
        st, _, _, _ = read_response(s)
        check(st == 200, "connected 1 s before its first byte, headers in 0.4 s: 200")
        time.sleep(1.0)  # idle between keep-alive requests does not count either
        s.sendall(b"GET /status HTTP/1.1\r\n")
        time.sleep(0.4)
        s.sendall(b"Host: t\r\n\r\n")
        st, _, _, _ = read_response(s)
        check(st == 200, "next request on the kept-alive connection, 1 s later: 200")
        # two requests in one segment: the second waits its turn, not late
        s.sendall(b"GET /status HTTP/1.1\r\nHost: t\r\n\r\nGET /status HTTP/1.1\r\nHost: t\r\n\r\n")
        a, _, _, rest = read_response(s)
        c, _, _, _ = read_response(s, rest)
        check((a, c) == (200, 200), "pipelined pair: 200, 200")
        s.close()
        check(srv.get("rr_model", key_="seqs")[0] == 200, "server fine afterwards")
    finally:
        srv.stop()

    # One slot, held by a trickle; another connection waits for it. A
    # request still incomplete after 1 s gives way (408) long before its
    # 5 s deadline, so the waiting one is served.
    srv = Server(b, w, "--slots", "1")
    try:
        slow = srv.raw()
        slow.sendall(b"GET /status HTTP/1.1\r\nHost: t\r\n")
        time.sleep(0.2)
        t0 = time.time()
        fast = srv.raw()
        fast.sendall(b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n")
        fast.settimeout(5)
        st, _, _, _ = read_response(fast)
        took = time.time() - t0
        check(st == 200 and took < 2.5,
              "a waiting connection is served in %.2f s, before the 5 s deadline" % took)
        fast.close()
        got, _ = raw_until_reply(slow, b"X", 0.1, 3)
        check(got.lower().startswith(b"http/1.1 408"), "...the trickle got 408 (%r)" % got[:40])
        slow.close()
    finally:
        srv.stop()


def case_traversal(b, w):
    srv = Server(b, w)
    try:
        outside = os.path.join(srv.tmp, "outside")
        os.mkdir(outside)
        with open(os.path.join(outside, "secret.txt"), "wb") as f:
            f.write(b"SECRET")
        os.symlink(outside, srv.path("gcodes", "outdir"))
        os.symlink(os.path.join(outside, "secret.txt"), srv.path("gcodes", "secret.g"))
        os.symlink("/", srv.path("rootlink"))
        before = sorted(os.listdir(outside))

        def outside_intact():
            return (sorted(os.listdir(outside)) == before and
                    open(os.path.join(outside, "secret.txt"), "rb").read() == b"SECRET")

        bad_names = ["0:/../outside/secret.txt", "0:/gcodes/../../outside/secret.txt",
                     "../outside/secret.txt", "0:/gcodes/..", "0:/gcodes\\..\\..\\x",
                     "0:/gcodes/outdir/secret.txt", "0:/gcodes/secret.g",
                     "0:/rootlink/etc/passwd", "0:/rootlink"]
        for name in bad_names:
            st, _, body = srv.get("rr_download", name=name)
            check(st in (403, 404) and b"SECRET" not in body and b"root:" not in body,
                  "download %r refused (%d)" % (name, st))
            r = srv.json("rr_fileinfo", name=name)
            check(r["err"] == 1, "fileinfo %r: err 1" % name)
        for raw in ("name=0%3A%2F%2e%2e%2Foutside%2Fsecret.txt",
                    "name=0%3A%2Fgcodes%2F%2E%2E%2F%2E%2E%2Foutside%2Fsecret.txt",
                    "name=%2e%2e%2foutside%2fsecret.txt", "name=0%3A%2Fgcodes%2Fa%00.g",
                    "name=0%3A%2Fgcodes%2Fa%zz.g"):
            st, _, body = srv.get("rr_download", raw_query=raw)
            check(st in (403, 404) and b"SECRET" not in body, "download ?%s refused (%d)" % (raw, st))
        st, _, _ = srv.get("rr_download", raw_query="name=0%3A%2F%252e%252e%2Foutside%2Fsecret.txt")
        check(st == 404, "double-encoded dots are just a name inside (404)")
        for name in ("/etc/passwd", "0:/etc/passwd", "//etc/passwd"):
            st, _, body = srv.get("rr_download", name=name)
            check(st == 404 and b"root:" not in body, "absolute %r stays inside: 404" % name)
        st, _, _ = srv.get("rr_download", name="1:/gcodes/a.g")
        check(st == 404, "volume 1: 404")

        for name in ("0:/gcodes/outdir/x.g", "0:/../outside/x.g", "0:/gcodes/../../outside/x.g",
                     "0:/rootlink/tmp/x.g"):
            st, body = srv.upload(name, b"EVIL")
            check(json.loads(body) == {"err": 1}, "upload to %r: err 1" % name)
        r = srv.json("rr_filelist", dir="0:/gcodes/outdir")
        check(r.get("err") == 1 and r["files"] == [] and "next" not in r,
              "filelist through a symlink: err 1, no next")
        r = srv.json("rr_filelist", dir="0:/../outside")
        check(r.get("err") == 1 and r["files"] == [], "filelist of ..: err 1")
        names = [f["name"] for f in srv.json("rr_filelist", dir="0:/gcodes")["files"]]
        check("outdir" not in names and "secret.g" not in names, "symlinks are not listed")
        for d in ("0:/gcodes/outdir/new", "0:/../outside/new", "0:/gcodes/../../outside/new"):
            check(srv.json("rr_mkdir", dir=d) == {"err": 1}, "mkdir %r: err 1" % d)
        for n in ("0:/gcodes/outdir/secret.txt", "0:/../outside/secret.txt", "0:/", "0:/..",
                  "0:/gcodes/outdir/x/.."):
            check(srv.json("rr_delete", name=n) == {"err": 1}, "delete %r: err 1" % n)
        with open(srv.path("gcodes", "mine.g"), "wb") as f:
            f.write(b"MINE")
        for old, new in (("0:/gcodes/outdir/secret.txt", "0:/gcodes/stolen.g"),
                         ("0:/gcodes/mine.g", "0:/gcodes/outdir/mine.g"),
                         ("0:/gcodes/mine.g", "0:/../outside/mine.g"),
                         ("0:/gcodes/mine.g", "0:/")):
            check(srv.json("rr_move", old=old, new=new) == {"err": 1},
                  "move %r -> %r: err 1" % (old, new))
        check(not os.path.exists(srv.path("gcodes", "stolen.g")), "nothing stolen")
        check(outside_intact(), "outside folder untouched so far")

        # removing links inside the folder is fine; their targets stay
        check(srv.json("rr_delete", name="0:/gcodes/secret.g") == {"err": 0},
              "delete a symlink inside: err 0")
        os.mkdir(srv.path("gcodes", "tree"))
        os.symlink(outside, srv.path("gcodes", "tree", "link"))
        check(srv.json("rr_delete", name="0:/gcodes/tree", recursive="yes") == {"err": 0},
              "recursive delete of a folder holding a symlink")
        check(not os.path.exists(srv.path("gcodes", "tree")) and outside_intact(),
              "the link went, its target stayed")
        check(outside_intact() and os.path.exists("/etc/passwd"), "nothing outside touched")
        check(not srv.parts_left(), "no .part left")
    finally:
        srv.stop()


def case_filelist(b, w):
    srv = Server(b, w)
    try:
        many = srv.path("gcodes", "many")
        os.mkdir(many)
        want = set()
        for i in range(300):
            n = "file-%03d-%s.gcode" % (i, "x" * 50)
            with open(os.path.join(many, n), "wb") as f:
                f.write(b"G1\n" * i)
            want.add(n)
        for d in ("sub1", "sub2", "sub3"):
            os.mkdir(os.path.join(many, d))
            want.add(d)
        odd = 'q"uote\\back ü\t.g'
        with open(os.path.join(many, odd), "wb") as f:
            f.write(b"x")
        want.add(odd)

        got, first, pages = [], 0, 0
        while True:
            st, _, body = srv.get("rr_filelist", dir="0:/gcodes/many", first=first)
            check(st == 200 and len(body) <= 16384, "page at %d: 200, fits (%d bytes)" % (first, len(body)))
            r = json.loads(body)
            check(r["dir"] == "0:/gcodes/many" and r["first"] == first and "err" not in r,
                  "page at %d: dir and first echoed, no err" % first)
            check(isinstance(r.get("next"), int), "page at %d: numeric next" % first)
            got += r["files"]
            pages += 1
            if r["next"] == 0:
                break
            check(r["next"] == first + len(r["files"]), "next follows the page")
            first = r["next"]
            check(pages < 50, "paging ends")
        names = [f["name"] for f in got]
        check(pages > 1, "several pages (%d)" % pages)
        check(len(names) == len(set(names)) and set(names) == want,
              "every entry exactly once (%d)" % len(names))
        by = {f["name"]: f for f in got}
        check(all(by[d]["type"] == "d" for d in ("sub1", "sub2", "sub3")), "folders are type d")
        check(by["file-007-" + "x" * 50 + ".gcode"]["type"] == "f" and
              by["file-007-" + "x" * 50 + ".gcode"]["size"] == 21, "files: type f and size")
        check(all(DATE_RE.match(f["date"]) for f in got), "dates as YYYY-MM-DDTHH:MM:SS")

        r = srv.json("rr_filelist", dir="0:/gcodes/many", first=100000)
        check(r["files"] == [] and r["next"] == 0, "first past the end: empty, next 0")
        r = srv.json("rr_filelist", dir="0:/gcodes/nope")
        check(r == {"dir": "0:/gcodes/nope", "first": 0, "files": [], "err": 2},
              "missing folder: err 2, no next (%r)" % r)
        with open(srv.path("gcodes", "plain.g"), "wb") as f:
            f.write(b"x")
        r = srv.json("rr_filelist", dir="0:/gcodes/plain.g")
        check(r.get("err") == 2 and "next" not in r, "a file is not a folder: err 2")
        r = srv.json("rr_filelist", dir="2:/gcodes")
        check(r.get("err") == 1 and "next" not in r, "volume 2: err 1 (not mounted)")
        r = srv.json("rr_filelist", dir="0:/gcodes", first="abc")
        check(r.get("err") == 1, "first not a number: err 1")
        r = srv.json("rr_filelist", dir="0:/")
        check(sorted(f["name"] for f in r["files"]) == ["gcodes", "macros", "sys"],
              "volume root lists the folders made at start")
        r = srv.json("rr_filelist", dir="0:/gcodes", first=0)
        check({"many", "plain.g"} <= {f["name"] for f in r["files"]}, "a short list: one page")
    finally:
        srv.stop()


def case_fileops(b, w):
    srv = Server(b, w)
    try:
        def vc():
            return srv.seqs()["volChanges"][0]
        v = vc()
        check(srv.json("rr_mkdir", dir="0:/gcodes/d1") == {"err": 0} and
              os.path.isdir(srv.path("gcodes", "d1")), "mkdir: err 0, folder made")
        check(vc() == v + 1, "mkdir bumps volChanges")
        check(srv.json("rr_mkdir", dir="0:/gcodes/d1") == {"err": 1}, "mkdir existing: err 1")
        check(srv.json("rr_mkdir", dir="0:/gcodes/no/such") == {"err": 1} and
              not os.path.exists(srv.path("gcodes", "no")), "mkdir without parent: err 1")
        check(srv.json("rr_mkdir") == {"err": 1}, "mkdir without dir: err 1")

        for n in ("a.g", "b.g"):
            with open(srv.path("gcodes", n), "wb") as f:
                f.write(n.encode())
        v = vc()
        check(srv.json("rr_delete", name="0:/gcodes/a.g") == {"err": 0} and
              not os.path.exists(srv.path("gcodes", "a.g")), "delete a file")
        check(vc() == v + 1, "delete bumps volChanges")
        check(srv.json("rr_delete", name="0:/gcodes/a.g") == {"err": 1}, "delete missing: err 1")
        deep = srv.path("gcodes", "d1", "x", "y")
        os.makedirs(deep)
        with open(os.path.join(deep, "f.g"), "wb") as f:
            f.write(b"f")
        check(srv.json("rr_delete", name="0:/gcodes/d1") == {"err": 1} and os.path.isdir(deep),
              "delete a full folder without recursive: err 1, kept")
        check(srv.json("rr_delete", name="0:/gcodes/d1", recursive="no") == {"err": 1},
              "recursive=no: same")
        check(srv.json("rr_delete", name="0:/gcodes/d1", recursive="yes") == {"err": 0} and
              not os.path.exists(srv.path("gcodes", "d1")), "recursive=yes: gone")
        os.mkdir(srv.path("gcodes", "e"))
        check(srv.json("rr_delete", name="0:/gcodes/e") == {"err": 0}, "delete an empty folder")

        v = vc()
        check(srv.json("rr_move", old="0:/gcodes/b.g", new="0:/gcodes/c.g") == {"err": 0} and
              open(srv.path("gcodes", "c.g"), "rb").read() == b"b.g", "move: err 0")
        check(vc() == v + 1, "move bumps volChanges")
        with open(srv.path("gcodes", "d.g"), "wb") as f:
            f.write(b"D")
        check(srv.json("rr_move", old="0:/gcodes/c.g", new="0:/gcodes/d.g") == {"err": 1} and
              open(srv.path("gcodes", "d.g"), "rb").read() == b"D" and
              os.path.exists(srv.path("gcodes", "c.g")), "move onto existing: err 1, both kept")
        check(srv.json("rr_move", old="0:/gcodes/c.g", new="0:/gcodes/d.g",
                       deleteexisting="no") == {"err": 1}, "deleteexisting=no: same")
        check(srv.json("rr_move", old="0:/gcodes/c.g", new="0:/gcodes/d.g",
                       deleteexisting="yes") == {"err": 0} and
              open(srv.path("gcodes", "d.g"), "rb").read() == b"b.g" and
              not os.path.exists(srv.path("gcodes", "c.g")), "deleteexisting=yes: replaced")
        check(srv.json("rr_move", old="0:/gcodes/zz.g", new="0:/gcodes/yy.g") == {"err": 1},
              "move missing: err 1")
        check(srv.json("rr_move", old="0:/gcodes", new="0:/gcodes/inside") == {"err": 1} and
              os.path.isdir(srv.path("gcodes")), "move a folder into itself: err 1")
        check(srv.json("rr_move", old="0:/gcodes/d.g") == {"err": 1}, "move without new: err 1")
        check(srv.json("rr_move", old="0:/gcodes/d.g", new="0:/macros/d.g") == {"err": 0} and
              os.path.exists(srv.path("macros", "d.g")), "move across folders")

        # fileinfo: size, date, and what slicers write in comments
        gcode = (b"; generated by PrusaSlicer 2.6.0+linux on 2024-01-01\n" + b"G1 X1\n" * 3000 +
                 b"; layer_height = 0.2\n")
        srv.upload("0:/gcodes/part.gcode", gcode, time_text="2022-02-03T04:05:06")
        r = srv.json("rr_fileinfo", name="0:/gcodes/part.gcode")
        check(r["err"] == 0 and r["fileName"] == "0:/gcodes/part.gcode" and r["size"] == len(gcode),
              "fileinfo: err 0, name, size")
        check(r["lastModified"] == "2022-02-03T04:05:06", "fileinfo: lastModified")
        check(r["generatedBy"].startswith("PrusaSlicer 2.6.0") and abs(r["layerHeight"] - 0.2) < 1e-9,
              "fileinfo: generatedBy and layerHeight from the comments (%r)" % r)
        check(r["thumbnails"] == [] and isinstance(r["filament"], list), "fileinfo: lists")
        cura = b";FLAVOR:Marlin\n;Layer height: 0.12\n;Generated with Cura_SteamEngine 5.4.0\n;LAYER_COUNT:42\n"
        srv.upload("0:/gcodes/cura.gcode", cura)
        r = srv.json("rr_fileinfo", name="0:/gcodes/cura.gcode")
        check(r["generatedBy"] == "Cura_SteamEngine 5.4.0" and r["numLayers"] == 42 and
              abs(r["layerHeight"] - 0.12) < 1e-9, "fileinfo: Cura's header (%r)" % r)
        r = srv.json("rr_fileinfo", name="0:/gcodes/none.g")
        check(r == {"err": 1, "fileName": "0:/gcodes/none.g"}, "fileinfo missing: err 1 + name")
        check(srv.json("rr_fileinfo", name="0:/gcodes")["err"] == 1, "fileinfo on a folder: err 1")
        check(srv.json("rr_fileinfo")["err"] == 1, "fileinfo without name (nothing printing): err 1")

        st, h, body = srv.get("rr_download", name="0:/gcodes/part.gcode")
        check(st == 200 and body == gcode and int(h["content-length"]) == len(gcode),
              "download: the bytes, with Content-Length")
        st, h, body = srv.get("rr_download", method="HEAD", name="0:/gcodes/part.gcode")
        check(st == 200 and body == b"" and int(h["content-length"]) == len(gcode), "HEAD download")
        check(srv.get("rr_download", name="0:/gcodes")[0] == 404, "download a folder: 404")
        check(srv.get("rr_download")[0] == 404, "download without name: 404")
    finally:
        srv.stop()


def case_malformed(b, w):
    srv = Server(b, w, "--password", "pw")
    try:
        srv.key = srv.connect("pw")["sessionKey"]
        check(srv.get("rr_model", raw_query="key=%zz")[0] == 400, "rr_model bad escape: 400")
        check(srv.get("rr_model", raw_query="key=%")[0] == 400, "rr_model truncated escape: 400")
        check(srv.get("rr_nonsense")[0] == 404, "unknown rr_ endpoint: 404")
        st, h, _ = srv.request("POST", "/rr_model", body=b"{}")
        check(st == 405 and h.get("connection") == "close", "POST rr_model: 405, close")
        st, h, _ = srv.request("PUT", "/rr_upload?name=x", body=b"x")
        check(st == 405 and "POST" in h.get("allow", ""), "PUT rr_upload: 405, Allow has POST")
        st, h, _ = srv.get("rr_gcode", method="HEAD", gcode="M115")
        check(st == 405 and "HEAD" not in h.get("allow", "HEAD"), "HEAD rr_gcode: 405 (it would act)")
        check(srv.get("rr_reply", method="HEAD")[0] == 405, "HEAD rr_reply: 405 (it marks read)")
        st, h, body = srv.request("OPTIONS", "/rr_upload", key=None)
        check(st == 204 and body == b"" and "content-length" not in h, "OPTIONS: 204, no body")
        check("X-Session-Key" in h.get("access-control-allow-headers", "") and
              h.get("access-control-allow-origin") == "*", "OPTIONS: CORS headers")
        check(srv.json("rr_filelist")["err"] in (1, 2), "filelist without dir: err")
        check(srv.json("rr_fileinfo", raw_query="name=%00")["err"] == 1, "fileinfo %00: err 1")
        check(srv.json("rr_delete", raw_query="name=%C") == {"err": 1}, "delete bad escape: err 1")
        st, _, _ = srv.get("rr_model", raw_query="key=" + "a" * 9000)
        check(st == 431, "URL over the request buffer: 431")

        s = srv.raw()
        s.sendall(b"GET /rr_model?key=seqs HTTP/1.1\r\nX-Session-Key: %d\r\n\r\n"
                  b"GET /rr_gcode?gcode=M115 HTTP/1.1\r\nX-Session-Key: %d\r\n\r\n"
                  b"GET /rr_reply HTTP/1.1\r\nX-Session-Key: %d\r\nConnection: close\r\n\r\n"
                  % (srv.key, srv.key, srv.key))
        a, _, ab, rest = read_response(s)
        bb_, _, gb, rest = read_response(s, rest)
        c, hc, _, rest = read_response(s, rest)
        check((a, bb_, c) == (200, 200, 200) and json.loads(ab)["key"] == "seqs" and
              "buff" in json.loads(gb), "pipelined rr_ requests answered in order")
        check(hc.get("connection") == "close" and closed_by_peer(s), "last one closes")
        s.close()
        s = srv.raw()
        s.sendall(b"GET /rr_model?key=seqs HTTP/1.0\r\nX-Session-Key: %d\r\n\r\n" % srv.key)
        st, h, _, _ = read_response(s)
        check(st == 200 and closed_by_peer(s), "HTTP/1.0: answered and closed")
        s.close()
        s = srv.raw()
        s.sendall(b"GET /rr_model HTTP/1.1\r\nX-Session-Key: \r\n\r\n")
        st, _, _, _ = read_response(s)
        check(st == 401, "empty X-Session-Key with a password: 401")
        s.close()
        s = srv.raw()
        s.sendall(b"GET /rr_model HTTP/1.1\r\nX-Session-Key %d\r\n\r\n" % srv.key)
        st, _, _, _ = read_response(s)
        check(st == 400, "header without a colon: 400")
        s.close()
        check(srv.get("rr_model", key_="seqs")[0] == 200, "server fine afterwards")
    finally:
        srv.stop()


def case_options(b, w):
    out = subprocess.run([b, "--help"], capture_output=True, text=True, timeout=10)
    check(out.returncode == 0, "--help exits 0")
    for opt, default in (("--listen", "127.0.0.1:8080"), ("--slots", "default 8"),
                         ("--max-conns", "default"), ("--idle-ms", "default 30000"),
                         ("--close-timeout-ms", "default 2000"), ("--backlog", "default 8"),
                         ("--backlog-timeout-ms", "default 3000"), ("--root", "default www"),
                         ("--sd", "default sd"), ("--upload-max", "default 1073741824"),
                         ("--password", "Default: none"),
                         ("--session-timeout-ms", "default 8000"),
                         ("--header-timeout-ms", "default 5000"), ("--poll", "poll()"), ("--backend", "default posix")):
        i = out.stdout.find(opt + " ")
        check(i >= 0 and default in out.stdout[i:i + 400], "--help: %s with %r" % (opt, default))
    tmp = tempfile.mkdtemp(prefix="rr-opt-")
    TEMP_DIRS.append(tmp)
    afile = os.path.join(tmp, "file")
    open(afile, "w").close()
    for args in (["--upload-max", "abc"], ["--upload-max", "-1"], ["--upload-max", "1k"],
                 ["--session-timeout-ms", "0"], ["--session-timeout-ms", "x"],
                 ["--session-timeout-ms", "99999999999"], ["--header-timeout-ms", "0"],
                 ["--header-timeout-ms", "1s"], ["--sd", ""],
                 ["--sd", os.path.join(tmp, "no", "such")], ["--sd", afile],
                 ["--slots", "0"], ["--bogus"]):
        r = subprocess.run([b, "--listen", "127.0.0.1:1", "--root", w] + args,
                           capture_output=True, text=True, timeout=10)
        check(r.returncode == 2 and r.stderr.strip() != "",
              "%s: exit 2 with a message (%d: %s)" % (" ".join(args), r.returncode,
                                                      r.stderr.strip()[:80]))


def case_status(b, w):
    srv = Server(b, w)
    try:
        srv.upload("0:/gcodes/s.g", b"12345")
        st = srv.status()
        c = st["counters"]
        check(isinstance(c["longest_close_us"], int) and isinstance(c["longest_poll_us"], int),
              "/status: longest_close_us and longest_poll_us")
        check(len(st["poll_hist"]) == 10 and st["poll_hist"][-1]["le_us"] is None and
              sum(h["passes"] for h in st["poll_hist"]) > 0, "/status: poll_hist")
        check(st["requests"] >= 2 and st["uploads_ok"] == 1 and st["uploads_failed"] == 0 and
              st["upload_bytes"] == 5 and st["uploads_active"] == 0 and
              isinstance(st["longest_upload_finish_us"], int),
              "/status: requests and upload figures")
        loop = st["loop"]
        turns = loop["turn_hist"]
        check(isinstance(loop["longest_turn_us"], int) and loop["longest_turn_us"] > 0,
              "/status: loop.longest_turn_us")
        check([t["le_us"] for t in turns] == [h["le_us"] for h in st["poll_hist"]] and
              sum(t["turns"] for t in turns) > 0,
              "/status: loop.turn_hist, on the poll histogram's bounds")
    finally:
        srv.stop()


def case_reserved(b, w):
    """Names the server keeps for itself: an upload, a move or a mkdir may not name
    another upload's temp file ("*.part"), and paths go at most 16 folders
    deep, so no request can make the loop walk thousands of levels."""
    srv = Server(b, w)
    try:
        st, body = srv.upload("0:/gcodes/a.g.part", b"B" * 100)
        check(st == 200 and json.loads(body) == {"err": 1}, "upload onto a .part name: err 1")
        check(not os.path.exists(srv.path("gcodes", "a.g.part")), "nothing written")
        st, body = srv.upload("0:/gcodes/a.g", b"A" * 100)
        check(json.loads(body) == {"err": 0}, "a normal upload still works")
        r = srv.json("rr_move", old="0:/gcodes/a.g", new="0:/gcodes/b.g.part", deleteexisting="yes")
        check(r["err"] == 1 and os.path.exists(srv.path("gcodes", "a.g")), "move onto a .part: err 1")
        # found by fuzz_http: a folder named like a temp file blocked its upload for good
        r = srv.json("rr_mkdir", dir="0:/gcodes/x.g.part")
        check(r["err"] == 1 and not os.path.exists(srv.path("gcodes", "x.g.part")),
              "mkdir of a .part name: err 1")
        st, body = srv.upload("0:/gcodes/x.g", b"G1 X1\n")
        check(json.loads(body) == {"err": 0}, "so the upload it would have blocked lands")
        deep16 = "0:/" + "/".join(["d"] * 15) + "/x.g"
        deep17 = "0:/" + "/".join(["d"] * 16) + "/x.g"
        st, body = srv.upload(deep16, b"x")
        check(json.loads(body) == {"err": 0}, "16 levels deep: accepted")
        st, body = srv.upload(deep17, b"x")
        check(json.loads(body) == {"err": 1}, "17 levels deep: err 1")
        check(not os.path.exists(srv.path(*(["d"] * 16))), "nothing made for the refused one")
        r = srv.json("rr_delete", name="0:/d", recursive="yes")
        check(r["err"] == 0 and not os.path.exists(srv.path("d")), "the deepest allowed tree deletes")
    finally:
        srv.stop()


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "list":
        print("\n".join(CASES))
        return 0
    if len(sys.argv) < 4 or sys.argv[3] not in CASES:
        print("usage: test_rr.py BIN WWW CASE [SERVER-OPTION...] (CASE: %s)" % ", ".join(CASES),
              file=sys.stderr)
        return 2
    binary, www, case = sys.argv[1:4]
    EXTRA_ARGS.extend(sys.argv[4:])
    if not os.access(binary, os.X_OK):
        print("SKIP: %s not built" % binary)
        return 77
    try:
        CASES[case](binary, www)
    except Fail as e:
        print("FAIL  " + str(e))
        return 1
    finally:
        for d in TEMP_DIRS:  # rmtree never follows the planted symlinks
            shutil.rmtree(d, ignore_errors=True)
    print("# %s: all passed" % case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
