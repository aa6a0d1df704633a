#!/usr/bin/env python3
"""slotnetd on the lwIP backend: a link round trip with kernel peers.

Usage (inside tests/lwip/lwip_ns.sh, which exports SN_LWIP_TAP and
SN_LWIP_ADDR and gives the kernel side of the TAP 10.93.0.1):

    link_lwip.py SLOTNETD

slotnetd --backend lwip runs on a UNIX socket in a temporary folder; the
host is tests/link/linkhost.py. Asserted:
- the daemon answers the link promptly while nothing happens on the network
  (its wait covers the link: sn_lwip_set_extra_fds), 50 requests in < 1 s;
- listen on lwIP's address; a kernel client connects; the host reads what
  it sent and writes an answer it receives; then 256 KiB each way, intact;
  the host's close gives the client EOF and frees the slot;
- an outgoing connect from lwIP to a kernel listener at 10.93.0.1: data both
  ways; the peer's FIN shows as other-end-closed;
- the daemon's statistics agree (accepted, connects), and SIGINT stops it
  with exit status 0 (a sanitizer report would make it non-zero).
Exit 0 pass, 1 fail, 77 skipped.
"""
import os
import socket
import sys
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "link"))
import linkhost as L  # noqa: E402
import test_link as T  # noqa: E402
from test_link import check  # noqa: E402

PORT = 8080
KERNEL_ADDR = "10.93.0.1"


def blob(n, seed):
    out, x = bytearray(), seed
    while len(out) < n:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out += x.to_bytes(4, "little")
    return bytes(out[:n])


def host_send_all(h, slot, handle, data, timeout=20.0):
    off, deadline = 0, time.monotonic() + timeout
    while off < len(data) and time.monotonic() < deadline:
        r = h.write(slot, data[off:off + L.DATA_MAX], handle, flags=L.F_PUSH)
        if r < 0:
            raise T.Fail("write: %d" % r)
        if r == 0:
            time.sleep(0.002)
        off += r
    return off


def run(binary, tap, addr):
    host_ip = addr.split("/")[0]
    d = T.Daemon(binary, "--backend", "lwip", "--tap", tap, "--addr", addr, "--slots", "4",
                 "--close-timeout-ms", "2000")
    check("lwip" in d.log_text(), "slotnetd says it serves on lwip")
    h = d.host()

    t0 = time.monotonic()
    for _ in range(50):
        if h.null() != 0:
            raise T.Fail("null request failed")
    dt = time.monotonic() - t0
    check(dt < 1.0, "50 link round trips with the network idle in %.0f ms (< 1 s)" % (dt * 1e3))

    # ---- incoming: listen on lwIP's address, a kernel client --------------
    check(h.listen(PORT, max_conns=4, addr=host_ip) == 0, "listen on %s:%d" % (host_ip, PORT))
    c = socket.create_connection((host_ip, PORT), timeout=5)
    c.sendall(b"ping")
    slot, handle = T.wait_slot_of(h, c, 4, timeout=5)
    check(slot is not None, "the kernel client's connection got a slot (%s)" % slot)
    st = h.status(slot)
    check(st.remote_addr == KERNEL_ADDR and st.local_port == PORT,
          "slot status: remote %s, local port %d" % (st.remote_addr, st.local_port))
    check(h.read_all(slot, handle, 4, timeout=5) == b"ping", "the host reads the client's bytes")
    check(h.write(slot, b"pong", handle, flags=L.F_PUSH) == 4, "the host writes an answer")
    check(T.recv_exact(c, 4) == b"pong", "the client receives it")

    up, down = blob(256 * 1024, 1), blob(256 * 1024, 2)
    c.sendall(up)
    got = h.read_all(slot, handle, len(up), timeout=20)
    check(zlib.crc32(got) == zlib.crc32(up) and len(got) == len(up),
          "256 KiB up through lwIP, intact (%d bytes)" % len(got))
    res = {}
    reader = threading.Thread(target=lambda: res.update(got=T.recv_exact(c, len(down), 20)))
    reader.start()  # the client reads while the host writes: more than the buffers hold
    check(host_send_all(h, slot, handle, down) == len(down), "256 KiB handed to the link")
    reader.join(25)
    got = res.get("got", b"")
    check(got == down, "256 KiB down through lwIP, intact (%d bytes)" % len(got))

    check(h.close_slot(slot, handle) == 0, "the host closes the slot")
    check(T.peer_end(c) == "eof", "the client sees EOF (FIN, not RST)")
    c.close()
    ns = h.wait_net(lambda n: n.in_use == 0, timeout=5)
    check(ns.in_use == 0, "every slot free after the close (%d in use)" % ns.in_use)

    # ---- outgoing: lwIP connects to a kernel listener ----------------------
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((KERNEL_ADDR, 0))
    srv.listen(4)
    srv.settimeout(5)
    r, slot, handle = h.create(KERNEL_ADDR, srv.getsockname()[1])
    check(r == 0, "connect to the kernel listener started (%d)" % r)
    peer, _ = srv.accept()
    ok = T.wait_for(lambda: h.status(slot).state == 2, 5)
    check(ok, "the outgoing connection is connected")
    check(h.write(slot, b"hello kernel", handle, flags=L.F_PUSH) == 12, "the host writes")
    check(T.recv_exact(peer, 12) == b"hello kernel", "the kernel peer receives it")
    peer.sendall(b"hello lwip")
    check(h.read_all(slot, handle, 10, timeout=5) == b"hello lwip", "the host reads the answer")
    peer.shutdown(socket.SHUT_WR)
    ok = T.wait_for(lambda: h.status(slot).state == 3, 5)
    check(ok, "the peer's FIN: other-end-closed")
    check(h.close_slot(slot, handle) == 0, "the host closes it")
    check(T.peer_end(peer) == "eof", "the kernel peer sees EOF")
    peer.close()
    srv.close()
    ns = h.wait_net(lambda n: n.in_use == 0, timeout=5)
    check(ns.in_use == 0, "every slot free at the end (%d in use)" % ns.in_use)

    s = h.stats()
    check(s["accepted"] == 1 and s["connects"] == 1,
          "statistics: 1 accepted, 1 connect (%d, %d)" % (s["accepted"], s["connects"]))
    h.close()
    d.stop()


def main():
    if len(sys.argv) != 2:
        print("usage: link_lwip.py SLOTNETD (inside tests/lwip/lwip_ns.sh)", file=sys.stderr)
        return 2
    binary = sys.argv[1]
    tap, addr = os.environ.get("SN_LWIP_TAP"), os.environ.get("SN_LWIP_ADDR")
    if not tap or not addr:
        print("usage: run under tests/lwip/lwip_ns.sh (SN_LWIP_TAP, SN_LWIP_ADDR)",
              file=sys.stderr)
        return 2
    if not os.access(binary, os.X_OK):
        print("SKIP: %s not built" % binary)
        return 77
    try:
        run(binary, tap, addr)
    except (T.Fail, L.LinkError, OSError) as e:
        print("FAIL  %s: %s" % (type(e).__name__, e))
        for dm in T.DAEMONS:
            print("---- slotnetd log ----\n" + dm.log_text())
        return 1
    finally:
        for dm in T.DAEMONS:
            dm.kill()
        for t in T.TEMP_DIRS:
            T.shutil.rmtree(t, ignore_errors=True)
    print("# link.lwip: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
