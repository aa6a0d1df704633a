#!/usr/bin/env python3
"""Traffic ends for the link emulator tests, run inside a namespace with
`ip netns exec`. Every mode prints one JSON line on stdout when done (servers
print {"ready": true} once listening). Times are time.monotonic_ns(),
CLOCK_MONOTONIC, which every namespace shares with the emulator's t0.

  tcp-server PORT                 ECHO: echo bytes back; GET N: send N bytes, close
  tcp-rtt HOST PORT N             N one-byte ping-pongs (TCP_NODELAY)
  tcp-get HOST PORT BYTES         download BYTES, with the arrival timeline
  udp-sink PORT SECONDS           record every datagram for SECONDS
  udp-source HOST PORT COUNT INTERVAL_US SIZE   numbered, timestamped datagrams
"""
import json
import signal
import socket
import struct
import sys
import threading
import time

HDR = struct.Struct("!IQ")  # sequence number, send time (ns)


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def serve_conn(c):
    with c:
        line = b""
        while not line.endswith(b"\n"):  # bytewise: nothing past the line is consumed
            b = c.recv(1)
            if not b:
                return
            line += b
        line = line.split()
        if line[:1] == [b"ECHO"]:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                d = c.recv(4096)
                if not d:
                    return
                c.sendall(d)
        elif line[:1] == [b"GET"]:
            left = int(line[1])
            chunk = b"x" * 65536
            while left > 0:
                n = min(left, len(chunk))
                c.sendall(chunk[:n])
                left -= n


def tcp_server(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(16)
    out({"ready": True})
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve_conn, args=(c,), daemon=True).start()


def connect(host, port):
    t = time.monotonic_ns()
    c = socket.create_connection((host, int(port)), timeout=20)
    return c, (time.monotonic_ns() - t) / 1e6


def tcp_rtt(host, port, n):
    c, cms = connect(host, port)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sendall(b"ECHO\n")
    rtts = []
    for _ in range(int(n)):
        t = time.monotonic_ns()
        c.sendall(b"x")
        if c.recv(1) != b"x":
            raise SystemExit("echo broke")
        rtts.append((time.monotonic_ns() - t) / 1e6)
    c.close()
    out({"connect_ms": cms, "rtts_ms": rtts})


def tcp_get(host, port, nbytes):
    c, cms = connect(host, port)
    c.sendall(b"GET %d\n" % int(nbytes))
    got, timeline = 0, []
    while True:
        d = c.recv(65536)
        if not d:
            break
        got += len(d)
        timeline.append((time.monotonic_ns(), got))
    out({"connect_ms": cms, "bytes": got, "timeline": timeline})


def udp_sink(port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", int(port)))
    out({"ready": True})
    end = time.monotonic() + float(seconds)
    got = []
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        seq, sent = HDR.unpack_from(d)
        got.append((seq, sent, time.monotonic_ns(), len(d)))
    out({"got": got})


def udp_source(host, port, count, interval_us, size):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pad = b"p" * max(0, int(size) - HDR.size)
    t0 = time.monotonic_ns()
    step = int(interval_us) * 1000
    sent = []
    for i in range(int(count)):
        due = t0 + i * step
        while True:  # paced to an absolute schedule: no drift
            now = time.monotonic_ns()
            if now >= due:
                break
            time.sleep(min((due - now) / 1e9, 0.005))
        now = time.monotonic_ns()
        s.sendto(HDR.pack(i, now) + pad, (host, int(port)))
        sent.append(now)
    out({"sent": sent})


MODES = {"tcp-server": tcp_server, "tcp-rtt": tcp_rtt, "tcp-get": tcp_get,
         "udp-sink": udp_sink, "udp-source": udp_source}

if __name__ == "__main__":
    signal.alarm(120)  # never outlive a killed test for long
    MODES[sys.argv[1]](*sys.argv[2:])
