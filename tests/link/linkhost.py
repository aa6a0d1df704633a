"""A host side of the slotnet link protocol, written from docs/link-protocol.md
alone (standard library only: zlib.crc32 and struct), for the link.* tests.
It doubles as a check that the document is complete enough for another
language.

    h = LinkHost.unix(path)          # or LinkHost.fds(rfd, wfd)
    rep = h.request(CMD_NULL)        # a Reply: status, command, slot, response, seq, data

Every request carries a new sequence number (1..63, then 1 again; flags byte
bits 2..7), which the reply echoes; h.resend() sends the last frame again,
byte for byte, as a host does after a lost reply.
"""
import os
import select
import socket
import struct
import time
import zlib

VERSION = 1
SYNC0, SYNC_REQ, SYNC_REP = 0xA5, 0x3C, 0xC3
HDR_LEN, DATA_MAX = 12, 2048
ATTENTION = 0x21
GAP_S = 0.100

CMD_NULL, CMD_ABORT, CMD_CLOSE, CMD_CREATE, CMD_READ, CMD_WRITE = 0, 1, 2, 3, 4, 5
CMD_STATUS, CMD_LISTEN, CMD_NET_STATUS, CMD_DIAG, CMD_STATS = 6, 7, 9, 32, 33
SLOT_NONE = 0xFF
F_CLOSE_AFTER, F_PUSH = 0x01, 0x02
F_MASK, SEQ_MAX = 0x03, 63
ST_UP, ST_ATTENTION = 0x01, 0x02

E_UNKNOWN_CMD, E_STALE, E_STATE, E_AGAIN = -1, -2, -3, -4
E_CONNRESET, E_CONNREFUSED, E_BUSY, E_PARAM, E_CLOSED = -6, -7, -8, -11, -12
E_BLOCKED, E_ADDRINUSE, E_NOENT, E_VERSION = -13, -14, -15, -19

STATES = {0: "free", 1: "connecting", 2: "connected", 3: "other-end-closed", 4: "aborted",
          5: "close-pending", 7: "allocated"}

STATS_FIELDS = ["accepted", "rejected", "closed_graceful", "closed_peer", "closed_timeout",
                "reset_by_peer", "peer_closed", "idle_timeouts", "terminated", "aborted",
                "connects", "connect_retries", "connect_failures", "releases",
                "releases_forced", "emfile_events", "accept_errors", "write_retryable",
                "poll_passes", "longest_poll_us", "longest_close_us", "backlog_now",
                "backlog_peak"] + ["poll_hist%d" % i for i in range(10)] + ["longest_turn_us"]


class LinkError(Exception):
    pass


class Timeout(LinkError):
    pass


def request_frame(command, slot=SLOT_NONE, flags=0, data=b"", space=DATA_MAX, param=0,
                  version=VERSION, length=None, seq=0):
    """One request frame; length overrides the header's len (to forge bad frames).
    seq (0..63) goes in the flags byte's bits 2..7; 0 is "no sequence"."""
    n = len(data) if length is None else length
    fs = (flags & F_MASK) | ((seq & SEQ_MAX) << 2)
    head = struct.pack("<BBBBHHI", version, command, slot, fs, n, space, param & 0xFFFFFFFF)
    body = bytes([SYNC0, SYNC_REQ]) + head + data
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def args(addr, port, protocol=0, max_conns=0):
    """Create/listen data: 4 address octets in dotted order, u16 port, protocol, max."""
    return socket.inet_aton(addr) + struct.pack("<HBB", port, protocol, max_conns)


class Reply:
    def __init__(self, version, status, command, slot, response, data, seq=0, raw=b""):
        self.version, self.status, self.command, self.slot = version, status, command, slot
        self.response, self.data, self.seq, self.raw = response, data, seq, raw

    def __repr__(self):
        return "Reply(cmd=%d slot=%d resp=%d status=%#x len=%d seq=%d)" % (
            self.command, self.slot, self.response, self.status, len(self.data), self.seq)


class SlotStatus:
    def __init__(self, d):
        if len(d) != 20:
            raise LinkError("slot status is %d bytes, not 20" % len(d))
        (self.state, self.slot, self.protocol, self.last_error, self.local_port,
         self.remote_port) = struct.unpack("<BBBbHH", d[:8])
        self.remote_addr = socket.inet_ntoa(d[8:12])
        (self.readable, self.write_space, self.connected,
         self.closed) = struct.unpack("<HHHH", d[12:20])

    @property
    def state_name(self):
        return STATES.get(self.state, "invalid")


class NetStatus:
    def __init__(self, d):
        if len(d) < 20:
            raise LinkError("network status is %d bytes" % len(d))
        n = d[0]
        if len(d) != 20 + 4 * n:
            raise LinkError("network status of %d slots is %d bytes" % (n, len(d)))
        self.slots = n
        self.epoch = d[1]  # +1 each time the device dropped the host's connections and listeners
        (self.data_max, self.backlog_now, self.backlog_peak, self.in_use, self.connected,
         self.closed, self.readable, self.writable, self.aborted) = struct.unpack("<9H", d[2:20])
        self.handles = list(struct.unpack("<%dI" % n, d[20:]))


def parse_stats(d):
    if len(d) != 4 * len(STATS_FIELDS):
        raise LinkError("statistics are %d bytes" % len(d))
    return dict(zip(STATS_FIELDS, struct.unpack("<%dI" % len(STATS_FIELDS), d)))


class LinkHost:
    """Strict request/response over a byte stream (a socket, a pty, pipes)."""

    def __init__(self, rfd, wfd, sock=None):
        self.rfd, self.wfd, self.sock = rfd, wfd, sock
        self.buf = b""
        self.attention = 0     # attention bytes seen between frames
        self.garbage = 0       # other bytes skipped
        self.version_seen = None
        self.read_chunk = 65536
        self.seq = 0           # the last sequence number used
        self.last_frame = None  # the last request frame sent
        self.stale = 0         # replies dropped: not the outstanding request's seq

    @classmethod
    def unix(cls, path, timeout=5.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        s.setblocking(False)
        return cls(s.fileno(), s.fileno(), sock=s)

    @classmethod
    def fds(cls, rfd, wfd):
        os.set_blocking(rfd, False)
        return cls(rfd, wfd)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- raw bytes --

    def send_raw(self, data):
        view = memoryview(data)
        while view:
            select.select([], [self.wfd], [], 5)
            try:
                n = os.write(self.wfd, view)
            except BlockingIOError:
                continue
            view = view[n:]

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([self.rfd], [], [], left)
        if not r:
            return False
        try:
            chunk = os.read(self.rfd, self.read_chunk)
        except BlockingIOError:
            return True
        if not chunk:
            raise LinkError("link closed by the device")
        self.buf += chunk
        return True

    def poll_attention(self, timeout):
        """Reads for up to timeout s outside any request; returns the number of
        attention bytes seen meanwhile (other bytes count as garbage)."""
        deadline = time.monotonic() + timeout
        before = self.attention
        while True:
            self._skip()
            if not self._fill(deadline):
                break
        self._skip()
        return self.attention - before

    def _skip(self):
        """Drops bytes before a possible reply start, counting attention bytes."""
        i = 0
        while i < len(self.buf):
            if self.buf[i] == SYNC0 and (i + 1 == len(self.buf) or self.buf[i + 1] == SYNC_REP):
                break
            if self.buf[i] == ATTENTION:
                self.attention += 1
            else:
                self.garbage += 1
            i += 1
        self.buf = self.buf[i:]

    def read_reply(self, timeout=5.0):
        """The next good reply frame, by the receiver rules (garbage skipped,
        CRC-failed candidates rescanned from the byte after their sync0)."""
        deadline = time.monotonic() + timeout
        while True:
            self._skip()
            if len(self.buf) >= 2 + HDR_LEN:
                ver = self.buf[2]
                if ver != VERSION:
                    self.version_seen = ver
                    raise LinkError("reply of version %d" % ver)
                n = struct.unpack_from("<H", self.buf, 2 + 8)[0]
                if n > DATA_MAX:
                    self.buf = self.buf[1:]
                    continue
                total = 2 + HDR_LEN + n + 4
                if len(self.buf) >= total:
                    body = self.buf[:total - 4]
                    crc = struct.unpack_from("<I", self.buf, total - 4)[0]
                    if zlib.crc32(body) & 0xFFFFFFFF != crc:
                        self.buf = self.buf[1:]
                        continue
                    raw = bytes(self.buf[:total])
                    self.buf = self.buf[total:]
                    ver, status, cmd, slot, resp, _n, seq, _res = struct.unpack_from(
                        "<BBBBiHBB", body, 2)
                    return Reply(ver, status, cmd, slot, resp, bytes(body[2 + HDR_LEN:]), seq, raw)
            if not self._fill(deadline):
                raise Timeout("no reply within %.1f s" % timeout)

    def next_seq(self):
        self.seq = self.seq % SEQ_MAX + 1
        return self.seq

    def request(self, command, slot=SLOT_NONE, flags=0, data=b"", space=DATA_MAX, param=0,
                timeout=5.0, seq=None):
        """Sends a request (a new seq unless one is given) and returns its reply;
        replies with another seq (stale, to an earlier attempt) are dropped."""
        if seq is None:
            seq = self.next_seq()
        self.last_frame = request_frame(command, slot, flags, data, space, param, seq=seq)
        self.send_raw(self.last_frame)
        return self.await_reply(command, slot, seq, timeout)

    def resend(self, timeout=5.0):
        """The last request frame again, byte for byte; its reply."""
        self.send_raw(self.last_frame)
        f = self.last_frame
        return self.await_reply(f[3], f[4], f[5] >> 2, timeout)

    def await_reply(self, command, slot, seq, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            rep = self.read_reply(max(0.0, deadline - time.monotonic()))
            if rep.command == 0 and rep.slot == SLOT_NONE and rep.response == E_VERSION:
                return rep
            if rep.seq != seq:
                self.stale += 1
                continue
            if rep.command != command or (command != CMD_CREATE and rep.slot != slot):
                raise LinkError("reply %r does not echo command %d slot %d" %
                                (rep, command, slot))
            return rep

    # -- commands --

    def null(self):
        return self.request(CMD_NULL).response

    def listen(self, port, max_conns=4, addr="127.0.0.1", protocol=0, idle_ms=0):
        return self.request(CMD_LISTEN, data=args(addr, port, protocol, max_conns),
                            param=idle_ms).response

    def create(self, addr, port, protocol=0, idle_ms=0):
        """(response, slot, handle)"""
        rep = self.request(CMD_CREATE, data=args(addr, port, protocol, 0), param=idle_ms)
        if rep.response < 0:
            return rep.response, None, None
        return rep.response, rep.slot, struct.unpack("<I", rep.data)[0]

    def net_status(self):
        rep = self.request(CMD_NET_STATUS)
        if rep.response != 0:
            raise LinkError("network status: %d" % rep.response)
        return NetStatus(rep.data)

    def status(self, slot):
        rep = self.request(CMD_STATUS, slot=slot, space=20)
        if rep.response != 0:
            raise LinkError("status: %d" % rep.response)
        return SlotStatus(rep.data)

    def read(self, slot, handle=0, space=DATA_MAX):
        rep = self.request(CMD_READ, slot=slot, param=handle, space=space)
        return rep.response, rep.data

    def write(self, slot, data, handle=0, flags=0):
        return self.request(CMD_WRITE, slot=slot, param=handle, data=data, flags=flags).response

    def close_slot(self, slot, handle=0):
        return self.request(CMD_CLOSE, slot=slot, param=handle).response

    def abort(self, slot, handle=0):
        return self.request(CMD_ABORT, slot=slot, param=handle).response

    def stats(self):
        rep = self.request(CMD_STATS, space=4 * len(STATS_FIELDS))
        return parse_stats(rep.data)

    def diagnostics(self, page=2048):
        text, off = b"", 0
        while True:
            rep = self.request(CMD_DIAG, param=off, space=page)
            text += rep.data
            off += len(rep.data)
            if off >= rep.response or not rep.data:
                return text, rep.response

    def wait_net(self, pred, timeout=5.0, step=0.02):
        """Polls network status until pred(ns) holds; returns the last one."""
        deadline = time.monotonic() + timeout
        while True:
            ns = self.net_status()
            if pred(ns) or time.monotonic() > deadline:
                return ns
            time.sleep(step)

    def read_all(self, slot, handle, nbytes, timeout=10.0):
        """Reads until nbytes arrived (or the peer closed)."""
        out = b""
        deadline = time.monotonic() + timeout
        while len(out) < nbytes and time.monotonic() < deadline:
            r, d = self.read(slot, handle)
            if r < 0:
                break
            if r == 0:
                time.sleep(0.002)
            out += d
        return out
