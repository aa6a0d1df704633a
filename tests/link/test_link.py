#!/usr/bin/env python3
"""slotnetd over the link protocol, case by case.

Usage: test_link.py SLOTNETD CASE [DAEMON-OPTION...]   (CASE "list" prints them)

Each case starts its own slotnetd (UNIX socket in a temporary folder, a
pseudo-terminal, or pipes), drives it with linkhost.py (a host written from
docs/link-protocol.md alone) while real loopback clients and servers talk to
the connections it holds, and stops it with SIGINT, which must give exit
status 0 (so a sanitizer report fails the case). Exit 0 pass, 1 fail, 77
skipped. Standard library only.
"""
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import linkhost as L  # noqa: E402

LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
EXTRA_ARGS = []
TEMP_DIRS = []
DAEMONS = []


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("  ok  " + what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=3.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def client(port, timeout=3.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def refused(port):
    """True when nothing accepts a connection on the port (within 1 s)."""
    try:
        client(port, timeout=1).close()
        return False
    except OSError:
        return True


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    s.close()


def recv_exact(s, n, timeout=5.0):
    s.settimeout(timeout)
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def peer_end(s, timeout=3.0):
    """How the other end finished: 'eof', 'rst' or 'open' (nothing in timeout)."""
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return "eof"
    except ConnectionResetError:
        return "rst"
    except socket.timeout:
        return "open"


class Daemon:
    """One slotnetd; its log and socket in a temporary folder."""

    def __init__(self, binary, *extra, link=None, stdio=False, pass_fds=()):
        self.tmp = tempfile.mkdtemp(prefix="link-test-")
        TEMP_DIRS.append(self.tmp)
        self.path = os.path.join(self.tmp, "d.sock")
        self.link = link or "unix:" + self.path
        self.log = open(os.path.join(self.tmp, "d.log"), "w+")
        cmd = [binary, "--link", self.link] + list(extra) + EXTRA_ARGS
        if stdio:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.log, pass_fds=pass_fds)
        else:
            self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                         pass_fds=pass_fds)
        DAEMONS.append(self)
        if not wait_for(lambda: self.proc.poll() is not None or "serving" in self.log_text(), 10):
            raise Fail("slotnetd did not start:\n" + self.log_text())
        if self.proc.poll() is not None:
            raise Fail("slotnetd exited %d:\n%s" % (self.proc.returncode, self.log_text()))

    def log_text(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def host(self):
        h = L.LinkHost.unix(self.path)
        check(h.null() == 0, "host connects; null answers 0")
        return h

    def stop(self):
        """SIGINT: exit 0 within 5 s, the socket file removed."""
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Fail("slotnetd still running 5 s after SIGINT")
        if rc != 0:
            print(self.log_text())
        check(rc == 0, "SIGINT: slotnetd exits 0 (got %d)" % rc)
        if self.link.startswith("unix:"):
            check(not os.path.exists(self.path), "the socket file is removed")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def slot_of(h, sock, slots):
    """The slot (and handle) holding the daemon's side of client socket sock."""
    port = sock.getsockname()[1]
    for i in range(slots):
        st = h.status(i)
        if st.state != 0 and st.remote_port == port:
            ns = h.net_status()
            return i, ns.handles[i]
    return None, None


def wait_slot_of(h, sock, slots, timeout=3.0):
    res = [(None, None)]

    def found():
        res[0] = slot_of(h, sock, slots)
        return res[0][0] is not None
    wait_for(found, timeout)
    return res[0]


# ---- link.commands ----------------------------------------------------------

def case_commands(b):
    SLOTS = 4
    d = Daemon(b, "--slots", str(SLOTS), "--connect-retries", "1", "--connect-base-ms", "50",
               "--connect-timeout-ms", "1000", "--close-timeout-ms", "1000")
    h = d.host()

    rep = h.request(L.CMD_NULL)
    check(rep.response == 0 and rep.status & L.ST_UP and rep.data == b"",
          "null: response 0, status UP, no data")
    check(rep.version == 1, "reply carries version 1")

    # Unknown commands, data lengths, space
    for cmd in (8, 10, 26, 31, 34, 99, 255):
        check(h.request(cmd).response == L.E_UNKNOWN_CMD, "command %d: -1 unknown" % cmd)
    check(h.request(L.CMD_NULL, data=b"x").response == L.E_PARAM, "null with data: -11")
    check(h.request(L.CMD_READ, slot=0, data=b"xy").response == L.E_PARAM, "read with data: -11")
    check(h.request(L.CMD_LISTEN, data=b"1234567").response == L.E_PARAM,
          "listen with 7 bytes of data: -11")
    check(h.request(L.CMD_CREATE, data=L.args("127.0.0.1", 1) + b"x").response == L.E_PARAM,
          "create with 9 bytes of data: -11")
    check(h.request(L.CMD_NET_STATUS, space=20 + 4 * SLOTS - 1).response == L.E_PARAM,
          "network status with space 20+4n-1: -11")
    rep = h.request(L.CMD_NET_STATUS, space=20 + 4 * SLOTS)
    check(rep.response == 0 and len(rep.data) == 20 + 4 * SLOTS,
          "network status with space 20+4n: exactly 20+4n bytes")
    check(h.request(L.CMD_STATUS, slot=0, space=19).response == L.E_PARAM,
          "get status with space 19: -11")
    check(h.request(L.CMD_STATS, space=135).response == L.E_PARAM, "statistics with space 135: -11")
    rep = h.request(L.CMD_STATS, space=136)
    check(rep.response == 0 and len(rep.data) == 136, "statistics: 136 bytes")
    check(h.request(L.CMD_READ, slot=0, space=0).response == L.E_PARAM, "read with space 0: -11")
    check(h.request(L.CMD_CREATE, data=L.args("127.0.0.1", 9), space=3).response == L.E_PARAM,
          "create with space 3 (no room for the handle): -11")
    check(h.net_status().in_use == 0, "...and nothing was created")

    # Slot range and handles on free slots
    for cmd in (L.CMD_ABORT, L.CMD_CLOSE, L.CMD_READ, L.CMD_WRITE, L.CMD_STATUS):
        check(h.request(cmd, slot=SLOTS).response == L.E_PARAM,
              "command %d on slot %d (out of range): -11" % (cmd, SLOTS))
        check(h.request(cmd, slot=0xFF).response == L.E_PARAM, "command %d on slot 0xFF: -11" % cmd)
    check(h.read(0)[0] == L.E_STALE, "read of a free slot, param 0: -2")

    # Listen: good, update, in use, stop
    port = free_port()
    check(h.listen(port, max_conns=4, idle_ms=0) == 0, "listen on 127.0.0.1:%d: 0" % port)
    check(h.listen(port, max_conns=3, protocol=7) == 0, "listen again on the same port updates: 0")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    check(h.listen(busy.getsockname()[1]) == L.E_ADDRINUSE, "listen on a port in use: -14")
    busy.close()
    check(h.listen(free_port(), max_conns=0) == L.E_NOENT, "stop (max 0) of no listener: -15")

    # Clients arrive and are seen in network status with handles
    c1, c2 = client(port), client(port)
    ns = h.wait_net(lambda n: bin(n.connected).count("1") == 2)
    check(bin(ns.connected).count("1") == 2 and ns.in_use == ns.connected,
          "two loopback clients: two slots connected")
    used = [i for i in range(SLOTS) if ns.in_use >> i & 1]
    check(all(ns.handles[i] != 0 and ns.handles[i] & 0xFF == i for i in used),
          "their handles are set, low 8 bits = slot")
    check(all(ns.handles[i] == 0 for i in range(SLOTS) if i not in used), "free slots: handle 0")
    check(ns.slots == SLOTS and ns.data_max == 2048, "network status: slots %d, data max 2048" % SLOTS)
    check(ns.writable == ns.connected, "both writable")

    s1, h1 = slot_of(h, c1, SLOTS)
    s2, h2 = slot_of(h, c2, SLOTS)
    check(s1 is not None and s2 is not None and s1 != s2, "each client found by its port")

    # Read/write round trip
    c1.sendall(b"hello from client")
    check(wait_for(lambda: h.status(s1).readable == 17), "get status: 17 bytes readable")
    st = h.status(s1)
    check(st.state_name == "connected" and st.slot == s1, "get status: connected, slot echoed")
    check(st.local_port == port and st.remote_port == c1.getsockname()[1] and
          st.remote_addr == "127.0.0.1", "get status: local port, remote port and address")
    check(st.protocol == 7, "get status: the listener's protocol (updated to 7)")
    check(st.connected >> s1 & 1 and st.connected >> s2 & 1 and st.closed == 0,
          "get status: bitmaps (both connected, none closed)")
    check(st.write_space > 0, "get status: write space %d" % st.write_space)
    ns = h.net_status()
    check(ns.readable == 1 << s1, "network status: readable bitmap has only slot %d" % s1)
    rep = h.request(L.CMD_READ, slot=s1, param=h1, space=5)
    check(rep.response == 5 and rep.data == b"hello", "read with space 5: 5 bytes, no more")
    check(rep.status & L.ST_ATTENTION, "reply status ATTENTION while a slot is readable")
    r, data = h.read(s1, h1)
    check(r == 12 and data == b" from client", "read: the rest (12 bytes)")
    r, data = h.read(s1, h1)
    check(r == 0 and data == b"", "read with nothing buffered: 0")
    check(h.write(s1, b"hello from host", h1) == 15, "write: 15 accepted")
    check(recv_exact(c1, 15) == b"hello from host", "client receives the written bytes")
    check(h.write(s1, b"pushed", h1, flags=L.F_PUSH) == 6 and recv_exact(c1, 6) == b"pushed",
          "write with push: delivered")
    big = bytes(range(256)) * 8
    check(h.write(s1, big, h1) == 2048 and recv_exact(c1, 2048) == big, "write of 2048 bytes")

    # Handle checks
    check(h.read(s1, (h1 & ~0xFF) | s2)[0] == L.E_PARAM,
          "handle whose low 8 bits name another slot: -11")
    check(h.read(s1, h1 + 0x100)[0] == L.E_STALE, "handle of another generation: -2 stale")
    check(h.write(s1, b"x", h1 + 0x100) == L.E_STALE, "write with a stale handle: -2")
    check(h.close_slot(s1, h1 + 0x100) == L.E_STALE, "close with a stale handle: -2")
    check(h.abort(s1, h1 + 0x100) == L.E_STALE, "abort with a stale handle: -2")

    # Write with close-after: data then FIN, slot freed
    check(h.write(s1, b"bye", h1, flags=L.F_CLOSE_AFTER | L.F_PUSH) == 3,
          "write with close-after: 3 accepted")
    check(recv_exact(c1, 3) == b"bye" and peer_end(c1) == "eof",
          "client gets the data, then end of file")
    check(wait_for(lambda: h.net_status().handles[s1] == 0), "the slot is freed after the drain")
    check(h.read(s1, h1)[0] == L.E_STALE, "the old handle is stale now")
    c1.close()

    # Close: 0 (close-pending) for a live slot, 1 for a reset one
    c3 = client(port)
    s3, h3 = wait_slot_of(h, c3, SLOTS)
    check(h.close_slot(s3, h3) == 0, "close of a connected slot: 0 (close-pending)")
    check(h.status(s3).state_name in ("close-pending", "free"), "...it drains")
    check(peer_end(c3) == "eof", "client sees end of file")
    c3.close()
    check(wait_for(lambda: h.net_status().handles[s3] == 0), "...then the slot is free")
    rst_close(c2)
    check(wait_for(lambda: h.status(s2).state_name == "other-end-closed"),
          "client resets: slot other-end-closed")
    check(h.read(s2, h2)[0] == L.E_CONNRESET, "read after the reset: -6")
    check(h.close_slot(s2, h2) == 1, "close of a reset slot: 1 (freed at once)")
    check(h.net_status().handles[s2] == 0, "...its handle is 0 at once")

    # Abort: RST to the client
    c4 = client(port)
    s4, h4 = wait_slot_of(h, c4, SLOTS)
    check(h.abort(s4, 0) == 0, "abort with param 0 (whatever occupies the slot): 0")
    check(peer_end(c4) == "rst", "client sees a reset")
    c4.close()
    check(h.abort(s4, h4) == L.E_STALE, "abort again with the old handle: -2")

    # Stop the listener
    check(h.listen(port, max_conns=0) == 0, "listen with max 0 stops it: 0")
    check(refused(port), "connecting to the stopped listener is refused")

    # Create: an outgoing connect to a Python server
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv_port = srv.getsockname()[1]
    r, slot, hnd = h.create("127.0.0.1", srv_port, protocol=5)
    check(r >= 0 and slot == r and hnd & 0xFF == slot, "create: slot %s, handle %#x" % (r, hnd or 0))
    check(wait_for(lambda: h.status(slot).state_name == "connected"), "the connect completes")
    srv.settimeout(3)
    peer, _ = srv.accept()
    st = h.status(slot)
    check(st.remote_port == srv_port and st.protocol == 5, "get status: remote port, protocol 5")
    check(h.write(slot, b"ping", hnd, flags=L.F_PUSH) == 4 and recv_exact(peer, 4) == b"ping",
          "write to the server")
    peer.sendall(b"pong")
    check(h.read_all(slot, hnd, 4) == b"pong", "read the server's answer")
    peer.close()
    check(wait_for(lambda: h.read(slot, hnd)[0] == L.E_CLOSED), "server closes: read gives -12")
    check(h.close_slot(slot, hnd) in (0, 1), "close it")
    srv.close()

    # Create to a closed port: refused, retried once, then aborted
    dead = free_port()
    r, slot, hnd = h.create("127.0.0.1", dead)
    check(r >= 0, "create to a closed port: accepted (slot %d)" % r)
    check(wait_for(lambda: h.status(slot).state_name == "aborted", 5),
          "after the retry the slot is aborted")
    st = h.status(slot)
    check(st.last_error == L.E_CONNREFUSED, "last error -7 (refused), got %d" % st.last_error)
    ns = h.net_status()
    check(ns.aborted >> slot & 1 and ns.closed >> slot & 1, "network status: aborted bit set")
    check(h.create("127.0.0.1", dead)[0] == L.E_BLOCKED, "create to the same peer again: -13 blocked")
    check(h.close_slot(slot, hnd) == 1, "close acknowledges the aborted slot: 1")
    check(h.net_status().in_use == 0, "every slot free")

    # Busy: all slots taken
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    made = [h.create("127.0.0.1", srv.getsockname()[1]) for _ in range(SLOTS)]
    check(all(m[0] >= 0 for m in made), "%d creates fill the table" % SLOTS)
    check(h.create("127.0.0.1", srv.getsockname()[1])[0] == L.E_BUSY, "one more: -8 busy")
    for _, slot, hnd in made:
        h.abort(slot, hnd)
    srv.close()

    # Diagnostics paging
    text, total = h.diagnostics(page=2048)
    check(len(text) == total and total > 0, "diagnostics: one page of %d bytes" % total)
    lines = text.decode("ascii").split("\n")
    check(sum(1 for x in lines if x.startswith("slot ")) == SLOTS, "one line per slot")
    check(any(x.startswith("accepted ") for x in lines), "a line of counters")
    check(any(x.startswith("slotnetd: link ") for x in lines), "slotnetd's own line")
    text2, total2 = h.diagnostics(page=37)
    check(total2 == total and text2[:200] == text[:200] and len(text2) == total2,
          "pages of 37 bytes concatenate to the same report")
    rep = h.request(L.CMD_DIAG, param=total + 10, space=100)
    check(rep.response == total and rep.data == b"", "offset past the end: 0 bytes, total length")
    rep = h.request(L.CMD_DIAG, param=10, space=0)
    check(rep.response == total and rep.data == b"", "space 0: 0 bytes")

    # Statistics move
    s0 = h.stats()
    port2 = free_port()
    h.listen(port2, max_conns=2)
    cs = [client(port2) for _ in range(3)]
    check(wait_for(lambda: h.stats()["accepted"] >= s0["accepted"] + 2),
          "statistics: accepted moves by 2 (a third waits in the backlog)")
    s1_ = h.stats()
    check(s1_["poll_passes"] > s0["poll_passes"], "statistics: poll passes move")
    check(s1_["backlog_now"] == 1 and s1_["backlog_peak"] >= 1, "statistics: one waiting")
    check(s1_["terminated"] >= 1 + SLOTS, "statistics: terminated counts the aborts")
    check(0 < s1_["longest_turn_us"] < 1000000, "statistics: longest loop turn %d us" %
          s1_["longest_turn_us"])
    for c in cs:
        rst_close(c)

    def closed_all():  # what a host does: close what the peers closed
        ns = h.net_status()
        for i in range(SLOTS):
            if ns.closed >> i & 1:
                check(h.close_slot(i, ns.handles[i]) == 1, "close of reset slot %d: 1" % i)
        return ns.in_use == 0 and h.stats()["backlog_now"] == 0
    check(wait_for(closed_all), "all clients reset and closed: every slot free, none waiting")
    h.close()
    d.stop()


# ---- link.frames ------------------------------------------------------------

def case_frames(b):
    d = Daemon(b, "--slots", "4")
    h = d.host()
    null = L.request_frame(L.CMD_NULL)

    h.send_raw(b"garbage\x00\xa5\x00\xa5" + null + b"\xa5\xa5 more \x3c" + null + b"tail")
    r1, r2 = h.read_reply(), h.read_reply()
    check(r1.command == 0 and r1.response == 0 and r2.response == 0,
          "garbage before, between and after two frames: both answered")
    check(h.null() == 0, "the link goes on")

    h.send_raw(null[:9])
    time.sleep(0.2)
    h.send_raw(null)
    t0 = time.monotonic()
    r = h.read_reply()
    check(r.response == 0, "a truncated frame, 200 ms of silence, then a frame: answered")
    try:
        h.read_reply(timeout=0.3)
        extra = True
    except L.Timeout:
        extra = False
    check(not extra, "...exactly once (the truncated one gets no reply)")

    t0 = time.monotonic()
    h.send_raw(null[:9] + null)
    r = h.read_reply(timeout=1.0)
    dt = time.monotonic() - t0
    check(r.response == 0 and dt < 0.09, "a cut-off frame followed at once by a good one: the "
          "good one is found by rescanning, without the gap (%.1f ms)" % (dt * 1000))

    # A run of false starts, each a header announcing 2000 bytes that never
    # come (so each is a partial frame holding the next), then silence: all
    # are stale together, dropped at once rather than 100 ms apiece.
    starts = L.request_frame(L.CMD_WRITE, slot=0, length=2000)[:14] * 30
    h.send_raw(starts)
    time.sleep(0.15)
    t0 = time.monotonic()
    r = h.request(L.CMD_NULL, timeout=5)
    dt = time.monotonic() - t0
    check(r.response == 0 and dt < 0.5, "30 nested partial frames, 150 ms of silence: the next "
          "request is answered in %.0f ms, not after 30 gaps" % (dt * 1000))

    bad = bytearray(L.request_frame(L.CMD_STATS, space=136))
    bad[-1] ^= 0xFF
    h.send_raw(bytes(bad))
    try:
        h.read_reply(timeout=0.4)
        got = True
    except L.Timeout:
        got = False
    check(not got, "bad CRC: no reply")
    check(h.null() == 0, "...and the link continues")

    head = struct.pack("<BBBBHHI", 1, L.CMD_WRITE, 0, 0, 3000, 0, 0)
    t0 = time.monotonic()
    h.send_raw(bytes([0xA5, 0x3C]) + head)
    h.send_raw(null)
    r = h.read_reply(timeout=1.0)
    dt = time.monotonic() - t0
    check(r.command == 0 and r.response == 0 and dt < 0.09,
          "len 3000: rejected at once, the next frame answered in %.1f ms" % (dt * 1000))

    h.send_raw(L.request_frame(L.CMD_STATS, version=2))
    r = h.read_reply()
    check(r.version == 1 and r.command == 0 and r.slot == 0xFF and r.response == L.E_VERSION
          and r.data == b"", "version 2: reply in version 1, command 0, slot 0xFF, -19")
    check(h.null() == 0, "...and the link continues")

    # Attention
    check(h.poll_attention(0.3) == 0, "no attention while nothing happens")
    port = free_port()
    check(h.listen(port) == 0, "listen")
    h.poll_attention(0.1)
    t0 = time.monotonic()
    c = client(port)
    n = h.poll_attention(1.0)
    check(n == 1, "a client connects while the host is idle: one attention byte (got %d)" % n)
    ns = h.net_status()
    check(ns.connected != 0, "network status shows it")
    check(h.poll_attention(1.0) == 0, "nothing changes: no more attention")
    c.sendall(b"data")
    check(h.poll_attention(1.0) == 1, "data arrives: one attention byte")
    check(h.poll_attention(0.5) == 0, "...and only one while the host sends nothing")
    ns = h.net_status()
    check(ns.readable != 0, "network status shows the slot readable")
    for _ in range(5):
        h.null()
        time.sleep(0.1)
    check(h.poll_attention(0.5) == 0 and h.attention == 2,
          "data left unread after network status showed it: no attention storm")
    i = ns.readable.bit_length() - 1
    h.read(i, ns.handles[i])
    c.sendall(b"more")
    check(h.poll_attention(1.0) == 1, "new data after a read that drained it: attention again")
    rst_close(c)
    check(h.poll_attention(0.5) == 0, "client resets: no second attention before a request")
    ns = h.net_status()
    check(h.poll_attention(1.0) <= 1, "...at most one after the next request")
    r = h.read_all(i, ns.handles[i], 100, timeout=2)
    check(h.read(i, ns.handles[i])[0] in (L.E_CONNRESET, L.E_CLOSED), "read: the peer is gone")
    ns = h.net_status()
    check(ns.closed >> i & 1, "network status: other-end-closed")
    h.abort(i, ns.handles[i])
    h.close()
    d.stop()


# ---- link.seq -----------------------------------------------------------------

def listening_daemon(b, *extra):
    """A daemon with a host on it, listening on a free loopback port."""
    d = Daemon(b, *extra)
    h = d.host()
    port = free_port()
    check(h.listen(port) == 0, "listen")
    return d, h, port


def connected_pair(h, port, slots):
    """A loopback client on the host's listener, and the slot and handle it got."""
    c = client(port)
    i, hnd = wait_slot_of(h, c, slots)
    if i is None:
        raise Fail("the client got no slot")
    return c, i, hnd


def no_more(sock, timeout=0.3):
    sock.settimeout(timeout)
    try:
        return sock.recv(65536)
    except socket.timeout:
        return b""


def case_seq(b):
    d, h, port = listening_daemon(b, "--slots", "4")
    c, i, hnd = connected_pair(h, port, 4)
    c.sendall(b"ABCDEFGH")
    check(wait_for(lambda: h.status(i).readable == 8), "8 bytes wait to be read")

    rep = h.request(L.CMD_READ, slot=i, param=hnd, space=4)
    check(rep.response == 4 and rep.data == b"ABCD" and rep.seq == h.seq,
          "read of 4 with seq %d: 'ABCD', the reply echoes the seq" % h.seq)
    again = h.resend()  # as if the first reply had been lost
    check(again.raw == rep.raw, "the identical frame resent: the identical reply, byte for byte")
    check(h.status(i).readable == 4, "...and the bytes were not taken twice (4 left)")
    r, data = h.read(i, hnd, space=4)
    check(r == 4 and data == b"EFGH", "the next read (a new seq) gets 'EFGH': nothing lost")

    # Two copies back to back, the first reply never read before the second is sent.
    frame = L.request_frame(L.CMD_WRITE, slot=i, param=hnd, data=b"once", flags=L.F_PUSH,
                            seq=h.next_seq())
    h.send_raw(frame + frame)
    r1, r2 = h.read_reply(), h.read_reply()
    check(r1.response == 4 and r2.raw == r1.raw, "a write sent twice: two identical replies (4)")
    check(recv_exact(c, 4) == b"once" and no_more(c) == b"", "...the client gets the data once")

    # A version error in between does not clear what is kept for a resend.
    c.sendall(b"12345678")
    check(wait_for(lambda: h.status(i).readable == 8), "8 more bytes")
    rep = h.request(L.CMD_READ, slot=i, param=hnd, space=2)
    check(rep.data == b"12", "read of 2: '12'")
    h.send_raw(L.request_frame(L.CMD_NULL, version=2))
    v = h.read_reply()
    check(v.response == L.E_VERSION, "a version-2 frame at a frame boundary: -19")
    check(h.resend().raw == rep.raw, "the read resent after it: still its own reply")

    # seq 0: no sequence, always carried out.
    zero = L.request_frame(L.CMD_READ, slot=i, param=hnd, space=2, seq=0)
    h.send_raw(zero)
    a = h.read_reply()
    h.send_raw(zero)
    z = h.read_reply()
    check(a.seq == 0 and a.data == b"34" and z.data == b"56", "seq 0 twice: carried out twice "
          "('%s', '%s')" % (a.data.decode(), z.data.decode()))
    # The same seq with another command or slot is a new request.
    s_ = h.next_seq()
    r = h.request(L.CMD_READ, slot=i, param=hnd, space=1, seq=s_)
    r2 = h.request(L.CMD_NULL, seq=s_)
    r3 = h.request(L.CMD_READ, slot=i, param=hnd, space=1, seq=s_)
    check(r.data == b"7" and r2.command == L.CMD_NULL and r2.response == 0 and r3.data == b"8",
          "the same seq with another command between: each carried out")
    check(h.request(L.CMD_READ, slot=i, param=hnd, space=1).response == 0,
          "nothing left: every byte read exactly once")

    # A new host never gets the old host's kept reply.
    c.sendall(b"xy")
    check(wait_for(lambda: h.status(i).readable == 2), "2 more bytes")
    rep = h.request(L.CMD_READ, slot=i, param=hnd, space=1)
    last = h.last_frame
    h.close()
    check(wait_for(lambda: "host gone" in d.log_text()), "the host leaves")
    h = L.LinkHost.unix(d.path)
    h.send_raw(last)
    r = h.read_reply()
    check(r.data == b"y" and r.raw != rep.raw,
          "a new host sending the same seq, command and slot: carried out ('y')")
    text, _ = h.diagnostics()
    check(b" replays 3 " in text, "diagnostics: 3 replays")
    c.close()
    h.close()
    d.stop()


# ---- link.noise ----------------------------------------------------------------

def case_noise(b):
    d, h, port = listening_daemon(b, "--slots", "4")
    c, i, hnd = connected_pair(h, port, 4)
    # A payload holding what looks like the start of a version-2 request.
    payload = b"head" + bytes([0xA5, 0x3C, 0x02]) + bytes(range(40)) + b"tail"
    check(h.write(i, payload, hnd, flags=L.F_PUSH) == len(payload) and
          recv_exact(c, len(payload)) == payload, "a write whose data holds A5 3C 02: accepted")
    good = L.request_frame(L.CMD_WRITE, slot=i, param=hnd, data=payload, flags=L.F_PUSH,
                           seq=h.next_seq())
    # One bit flipped anywhere but the version byte (offset 2): sync, header
    # (command, slot, flags, len up and down, space, param), data, CRC.
    spots = [(0, 0), (1, 0), (3, 2), (4, 0), (5, 1), (6, 0), (6, 4), (7, 0), (9, 3), (13, 7),
             (14, 0), (20, 5), (len(good) - 1, 6)]
    for at, bit in spots:
        bad = bytearray(good)
        bad[at] ^= 1 << bit
        h.send_raw(bytes(bad))
        try:
            r = h.read_reply(timeout=0.3)  # > the 100 ms gap: a longer len is dropped too
            got = "reply %r" % r
        except L.Timeout:
            got = None
        check(got is None, "bit %d of byte %d flipped: no reply, no -19 (%s)" % (bit, at, got))
    check(h.null() == 0, "the link continues")
    rep = h.request(L.CMD_WRITE, slot=i, param=hnd, data=payload, flags=L.F_PUSH)
    check(rep.response == len(payload) and recv_exact(c, len(payload)) == payload and
          no_more(c) == b"", "the write sent again intact: the client gets it exactly once")
    text, _ = h.diagnostics()
    line = [x for x in text.decode().split("\n") if x.startswith("slotnetd: link")][0]
    check(" version 0 " in line and " version-noise 0 " not in line,
          "diagnostics: no version error, the noise counted apart")
    c.close()
    h.close()
    d.stop()


# ---- link.attention --------------------------------------------------------------

def case_attention(b):
    d, h, port = listening_daemon(b, "--slots", "4")
    c1, a, ha = connected_pair(h, port, 4)
    c2, b_, hb = connected_pair(h, port, 4)
    h.net_status()
    h.poll_attention(0.3)
    c2.shutdown(socket.SHUT_WR)  # FIN on slot b
    check(h.poll_attention(1.0) == 1, "FIN on slot %d: one attention byte" % b_)
    st = h.status(a)
    check(st.closed >> b_ & 1, "a get-status on slot %d shows slot %d closed in its bitmap" % (a, b_))
    check(h.poll_attention(1.0) == 1, "...yet slot %d's change is still news: attention again"
          % b_)
    ns = h.net_status()
    check(ns.closed >> b_ & 1, "network status shows it")
    check(h.poll_attention(0.5) == 0, "...and then no more attention")
    rst_close(c1)
    check(h.poll_attention(1.0) == 1, "slot %d reset by its client: one attention byte" % a)
    r, _ = h.read(a, ha)
    check(r == L.E_CONNRESET, "read: -6")
    check(h.poll_attention(0.5) == 0, "the read showed the reset: no further attention")
    check(h.close_slot(a, ha) == 1 and h.close_slot(b_, hb) in (0, 1), "close both")
    h.poll_attention(0.3)
    c2.close()
    h.close()
    d.stop()


# ---- link.host_timeout -------------------------------------------------------------

def pty_daemon(b, *extra):
    """A daemon on a pseudo-terminal (serial:), and a host on its other end."""
    try:
        master, slave = os.openpty()
    except OSError as e:
        raise Skip("no pseudo-terminal: %s" % e)
    d = Daemon(b, *extra, link="serial:%s,115200" % os.ttyname(slave))
    os.close(slave)
    return d, L.LinkHost.fds(master, master), master


def case_host_timeout(b):
    d, h, master = pty_daemon(b, "--host-timeout-ms", "300", "--grace-ms", "500")
    check(h.null() == 0, "null over the pty")
    port = free_port()
    check(h.listen(port) == 0, "listen")
    e0 = h.net_status().epoch
    h.poll_attention(0.1)
    check(wait_for(lambda: "host gone (no request for 300 ms)" in d.log_text()),
          "a quiet host: gone after 300 ms, logged")
    c = client(port)
    check(h.poll_attention(0.4) == 1,
          "a client arrives while the host counts as gone: the attention byte still goes out")
    check(wait_for(lambda: "no host for 500 ms" in d.log_text(), 3),
          "the grace period ends: connections reset, listeners stopped")
    check(peer_end(c) == "rst", "the client sees a reset")
    c.close()
    ns = h.net_status()
    check(ns.epoch == (e0 + 1) % 256 and ns.in_use == 0,
          "the host speaks again: network status shows a new epoch (%d -> %d)" % (e0, ns.epoch))
    check(wait_for(lambda: "host connected (request)" in d.log_text()), "...and it is back")
    check(refused(port), "the listener was stopped")
    check(h.listen(port) == 0, "so the host listens again")
    # Quiet again, nothing open but the listener: the epoch change itself wakes it.
    n = h.poll_attention(3.0)
    check(n == 1, "quiet again: at the next grace reset one attention byte (got %d)" % n)
    ns = h.net_status()
    check(ns.epoch == (e0 + 2) % 256, "...and network status shows the next epoch")
    os.close(master)
    d.stop()


# ---- link.pty and link.stdio -------------------------------------------------

def round_trip(h, what):
    check(h.null() == 0, what + ": null")
    port = free_port()
    check(h.listen(port) == 0, what + ": listen")
    c = client(port)
    ns = h.wait_net(lambda n: n.connected != 0)
    i = ns.connected.bit_length() - 1
    c.sendall(b"x" * 3000)
    got = h.read_all(i, ns.handles[i], 3000)
    check(got == b"x" * 3000, what + ": 3000 bytes read (two frames)")
    data = bytes(range(256)) * 8
    check(h.write(i, data, ns.handles[i], flags=L.F_PUSH) == 2048 and recv_exact(c, 2048) == data,
          what + ": 2048 bytes written")
    text, total = h.diagnostics()
    check(len(text) == total, what + ": diagnostics paged")
    check(h.close_slot(i, ns.handles[i]) == 0 and peer_end(c) == "eof", what + ": close")
    c.close()


def case_pty(b):
    d, h, master = pty_daemon(b)
    round_trip(h, "pty")
    os.close(master)
    check(wait_for(lambda: "host gone" in d.log_text()), "closing the pty: host gone, logged")
    d.stop()


def case_stdio(b):
    d = Daemon(b, link="stdio", stdio=True)
    h = L.LinkHost.fds(d.proc.stdout.fileno(), d.proc.stdin.fileno())
    round_trip(h, "stdio")
    d.proc.stdin.close()
    try:
        rc = d.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise Fail("slotnetd still running 5 s after stdin closed")
    check(rc == 0, "stdin closed: slotnetd exits 0")
    check("stdin closed" in d.log_text(), "...and says why on stderr")


# ---- link.host_gone ---------------------------------------------------------

class Downloader(threading.Thread):
    """A client that reads everything the daemon sends until end of file."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock, self.data, self.end = sock, b"", None

    def run(self):
        self.sock.settimeout(20)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    self.end = "eof"
                    return
                self.data += d
        except ConnectionResetError:
            self.end = "rst"
        except OSError as e:
            self.end = "error %s" % e


def blob(n, seed):
    out, x = bytearray(), seed
    while len(out) < n:
        x = zlib.crc32(struct.pack("<I", x))
        out += struct.pack("<I", x)
    return bytes(out[:n])


def pump(h, down_slot, down_h, up_slot, up_h, down, up_sock, up, state, until_bytes):
    """Moves data both ways through the daemon until `until_bytes` went each way
    (or all of it)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        moved = False
        if state["sent"] < min(len(down), until_bytes):
            n = h.write(down_slot, down[state["sent"]:state["sent"] + 2048], down_h)
            if n > 0:
                state["sent"] += n
                moved = True
        if state["upsent"] < min(len(up), until_bytes):
            up_sock.setblocking(False)
            try:
                state["upsent"] += up_sock.send(up[state["upsent"]:state["upsent"] + 16384])
                moved = True
            except BlockingIOError:
                pass
        r, data = h.read(up_slot, up_h)
        if r > 0:
            state["got"] += data
            moved = True
        if (state["sent"] >= min(len(down), until_bytes) and
                len(state["got"]) >= min(len(up), until_bytes)):
            return
        if not moved:
            time.sleep(0.002)
    raise Fail("transfer stalled: sent %d, got %d" % (state["sent"], len(state["got"])))


def case_host_gone(b):
    N = 300000
    # Run 1: the host leaves mid-transfer and comes back within the grace period.
    d = Daemon(b, "--grace-ms", "3000")
    h = d.host()
    port = free_port()
    check(h.listen(port, max_conns=4) == 0, "listen")
    dl_sock, up_sock = client(port), client(port)
    dl = Downloader(dl_sock)
    dl.start()
    ds, dh = wait_slot_of(h, dl_sock, 8)
    us, uh = wait_slot_of(h, up_sock, 8)
    down, up = blob(N, 1), blob(N, 2)
    state = {"sent": 0, "upsent": 0, "got": b""}
    pump(h, ds, dh, us, uh, down, up_sock, up, state, N // 3)
    check(True, "a third moved each way (%d down, %d up)" % (state["sent"], len(state["got"])))
    handles = h.net_status().handles
    h.close()
    check(wait_for(lambda: "host gone (disconnected)" in d.log_text()), "host gone: logged")
    time.sleep(0.7)
    h = d.host()
    ns = h.net_status()
    check(ns.handles == handles, "host back within the grace period: the same handles")
    check(wait_for(lambda: "within the grace period: 2 connections kept" in d.log_text()),
          "logged: 2 connections kept")
    pump(h, ds, dh, us, uh, down, up_sock, up, state, N)
    check(state["got"] == up, "upload complete and intact (%d bytes)" % len(up))
    check(h.close_slot(ds, dh) == 0, "close the download")
    dl.join(10)
    check(dl.end == "eof" and dl.data == down, "download complete and intact (%d bytes)" % N)
    up_sock.close()
    time.sleep(3.5)
    check("no host for" not in d.log_text(), "no policy action while the host stays")
    h.close()
    d.stop()

    # Run 2: the host leaves and does not return.
    d = Daemon(b, "--grace-ms", "1000")
    h = d.host()
    port = free_port()
    check(h.listen(port, max_conns=4) == 0, "listen")
    dl_sock, up_sock = client(port), client(port)
    dl = Downloader(dl_sock)
    dl.start()
    ds, dh = wait_slot_of(h, dl_sock, 8)
    us, uh = wait_slot_of(h, up_sock, 8)
    state = {"sent": 0, "upsent": 0, "got": b""}
    pump(h, ds, dh, us, uh, down, up_sock, up, state, N // 3)
    h.close()
    t0 = time.monotonic()
    dl.join(5)
    dt = time.monotonic() - t0
    check(dl.end == "rst", "downloading client sees a reset (%s) after %.2f s" % (dl.end, dt))
    check(0.8 < dt < 2.5, "...once the 1 s grace period is over")
    check(peer_end(up_sock) == "rst", "uploading client sees a reset too")
    check(wait_for(lambda: "no host for 1000 ms: reset 2 connections, stopped 1 listeners"
                   in d.log_text()), "logged: reset 2 connections, stopped 1 listener")
    check(refused(port), "the listener is stopped: nothing is accepted without a host")
    h = d.host()
    ns = h.net_status()
    check(ns.in_use == 0 and all(x == 0 for x in ns.handles),
          "a new host finds every slot free")
    st = h.stats()
    check(st["terminated"] == 2, "statistics: 2 terminated")
    check(h.listen(port) == 0, "the new host can listen on the port again")
    h.close()
    d.stop()


# ---- link.slow_host ---------------------------------------------------------

class Churn(threading.Thread):
    """Clients against the daemon's listener: connect, send, then RST (mode
    "rst"), close ("close"), or stay idle until the daemon's idle timeout
    resets them ("idle")."""

    def __init__(self, port, seconds, mode):
        super().__init__(daemon=True)
        self.port, self.seconds, self.mode = port, seconds, mode
        self.connects = self.failures = self.reset_early = 0
        self.idle_waits = []  # seconds until an idle client was reset

    def run(self):
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            try:
                c = client(self.port, timeout=3)
            except ConnectionResetError:
                self.reset_early += 1  # the backlog was full: reset at once, by design
                continue
            except OSError:
                self.failures += 1  # refused or timed out: the daemon stopped accepting
                continue
            self.connects += 1
            try:
                c.sendall(b"GET / HTTP/1.1\r\n\r\n")
                if self.mode == "rst":
                    rst_close(c)
                elif self.mode == "close":
                    c.close()
                else:
                    t0 = time.monotonic()
                    how = peer_end(c, timeout=3)
                    if how != "open":
                        self.idle_waits.append(time.monotonic() - t0)
                    else:
                        self.failures += 1
                    c.close()
            except OSError:
                self.reset_early += 1  # the backlog was full: reset at once, by design
                c.close()
            time.sleep(0.01)


def case_slow_host(b):
    SLOTS, IDLE_MS = 4, 300
    d = Daemon(b, "--slots", str(SLOTS), "--backlog", "8", "--close-timeout-ms", "500")
    h = d.host()
    port, idle_port = free_port(), free_port()
    check(h.listen(port, max_conns=SLOTS - 1, idle_ms=IDLE_MS) == 0,
          "listen for the churn: %d slots, idle timeout 300 ms" % (SLOTS - 1))
    # The idle clients' own listener keeps one slot theirs, so their reset
    # time measures the idle timer, not a wait in the backlog.
    check(h.listen(idle_port, max_conns=1, idle_ms=IDLE_MS) == 0,
          "listen for idle clients: 1 slot, idle timeout 300 ms")

    churns = [Churn(port, 6.0, "rst"), Churn(port, 6.0, "close"), Churn(idle_port, 6.0, "idle")]
    for c in churns:
        c.start()

    def connects():
        return sum(c.connects for c in churns)

    # Phase 1: the host pipelines requests and stops reading for 3 s, so the
    # daemon's replies back up into a full socket.
    sock = h.sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    req = L.request_frame(L.CMD_DIAG, space=2048)
    sent, t_end = 0, time.monotonic() + 3.0
    sock.setblocking(False)
    pending = b""
    while time.monotonic() < t_end:
        if not pending and sent < 2000:
            pending = req
            sent += 1
        if pending:
            try:
                n = sock.send(pending)
                pending = pending[n:]
                continue
            except BlockingIOError:
                pass
        time.sleep(0.01)
    check(sent > 100, "host sent %d requests without reading a reply" % sent)
    mid = connects()
    check(mid > 20, "meanwhile %d clients connected" % mid)

    # Phase 2: read the replies slowly: small reads with pauses.
    h.read_chunk = 512
    got, t0 = 0, time.monotonic()
    while got < sent:
        if pending:  # the frame under way goes out as the daemon takes input again
            try:
                pending = pending[sock.send(pending):]
            except BlockingIOError:
                pass
        r = h.read_reply(timeout=10)
        if r.command != L.CMD_DIAG or r.response <= 0 or len(r.data) != min(2048, r.response):
            raise Fail("bad diagnostics reply %r" % r)
        got += 1
        if got % 50 == 0:
            time.sleep(0.02)
    check(got == sent, "all %d replies arrive, each whole and valid (%.1f s)" %
          (got, time.monotonic() - t0))
    for c in churns:
        c.join(10)
    total = connects()
    check(total > mid, "clients kept connecting while the host read slowly (%d in all)" % total)
    check(churns[2].failures == 0, "no idle client hung (%d)" % churns[2].failures)
    check(churns[0].failures + churns[1].failures == 0,
          "no churn client was refused or timed out (%d reset at once: backlog full)" %
          (churns[0].reset_early + churns[1].reset_early))
    waits = sorted(w for c in churns for w in c.idle_waits)
    check(len(waits) >= 10, "%d idle clients were reset by the daemon" % len(waits))
    worst = waits[-1]
    check(worst < IDLE_MS / 1000.0 + 0.5,
          "idle timeouts fire on time: median %.0f ms, worst %.0f ms (limit %d ms)" %
          (waits[len(waits) // 2] * 1000, worst * 1000, IDLE_MS))

    h.read_chunk = 65536
    st = h.stats()
    tried = total + sum(c.reset_early for c in churns)

    # A client that resets while still in the kernel's accept queue may never
    # reach accept(): allow 1% for the kernel's share.
    def all_taken():
        st.update(h.stats())
        return st["accepted"] + st["rejected"] >= tried * 0.99
    check(wait_for(all_taken, 3) and st["accepted"] > 50,
          "statistics: %d accepted, %d rejected (backlog full or too old) of %d clients" %
          (st["accepted"], st["rejected"], tried))
    check(st["idle_timeouts"] >= len(waits), "statistics: %d idle timeouts" % st["idle_timeouts"])
    check(st["longest_turn_us"] < 200000,
          "the loop never stalled: longest turn %d us, longest poll %d us" %
          (st["longest_turn_us"], st["longest_poll_us"]))
    check(wait_for(lambda: h.net_status().in_use == 0 and h.stats()["backlog_now"] == 0, 3),
          "afterwards every slot is free (no leak)")
    h.close()
    d.stop()


# ---- link.options -----------------------------------------------------------

def case_options(b):
    out = subprocess.run([b, "--help"], capture_output=True, text=True, timeout=10)
    check(out.returncode == 0, "--help exits 0")
    for opt in ("--link", "--slots", "--backlog", "--backlog-timeout-ms", "--close-timeout-ms",
                "--connect-retries", "--connect-base-ms", "--connect-timeout-ms",
                "--peer-block-ms", "--grace-ms", "--host-timeout-ms",
                "--max-requests-per-turn", "--poll"):
        check(opt in out.stdout, "--help lists " + opt)
    for bad in (["--slots", "17"], ["--slots", "0"], ["--slots", "x"], ["--grace-ms", "-1"],
                ["--max-requests-per-turn", "0"], ["--link", "tcp:1"], ["--link", "unix:"],
                ["--link", "serial:/dev/null,12345"], ["--bogus"], ["extra"]):
        out = subprocess.run([b] + bad, capture_output=True, text=True, timeout=10)
        check(out.returncode == 2 and out.stderr.strip(),
              "%s: exit 2 with a message" % " ".join(bad))
    # A regular file at the socket path is never removed; a live daemon's is not taken.
    tmp = tempfile.mkdtemp(prefix="link-test-")
    TEMP_DIRS.append(tmp)
    path = os.path.join(tmp, "f")
    open(path, "w").close()
    out = subprocess.run([b, "--link", "unix:" + path], capture_output=True, text=True, timeout=10)
    check(out.returncode == 1 and os.path.exists(path), "a regular file at the path: exit 1, kept")
    d = Daemon(b)
    mode = os.stat(d.path).st_mode & 0o777
    check(mode == 0o600, "the socket is mode 0600 (got %o)" % mode)
    out = subprocess.run([b, "--link", "unix:" + d.path], capture_output=True, text=True,
                         timeout=10)
    check(out.returncode == 1 and "another daemon" in out.stderr,
          "a second daemon on the same socket: exit 1")
    h = d.host()
    h2 = L.LinkHost.unix(d.path)
    try:
        h2.read_reply(timeout=1)
        second = "answered"
    except L.LinkError as e:
        second = str(e)
    check(second == "link closed by the device", "a second host is closed at once")
    check(wait_for(lambda: "refused a second host" in d.log_text()), "...with a log line")
    check(h.null() == 0, "the first host is unaffected")
    h.close()
    h2.close()
    d.stop()
    # A stale socket file (no daemon behind it) is replaced.
    stale = os.path.join(tmp, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()
    d = Daemon(b, link="unix:" + stale)
    d.path = stale
    d.host().close()
    d.stop()


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "list":
        print("\n".join(CASES))
        return 0
    if len(sys.argv) < 3 or sys.argv[2] not in CASES:
        print("usage: test_link.py SLOTNETD CASE [DAEMON-OPTION...] (CASE: %s)" %
              ", ".join(CASES), file=sys.stderr)
        return 2
    binary, case = sys.argv[1:3]
    EXTRA_ARGS.extend(sys.argv[3:])
    if not os.access(binary, os.X_OK):
        print("SKIP: %s not built" % binary)
        return 77
    try:
        CASES[case](binary)
    except Skip as e:
        print("SKIP: %s" % e)
        return 77
    except (Fail, L.LinkError) as e:
        print("FAIL  %s: %s" % (type(e).__name__, e))
        for dm in DAEMONS:
            print("---- slotnetd log ----\n" + dm.log_text())
        return 1
    finally:
        for dm in DAEMONS:
            dm.kill()
        for t in TEMP_DIRS:
            shutil.rmtree(t, ignore_errors=True)
    print("# %s: all passed" % case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
