#!/usr/bin/env python3
"""slotnet-link end to end: two namespaces (apps/slotnet-link/netns.sh), the
emulator between them, traffic from tests/emu/peer.py on both sides.

  emu_test.py CASE LINK_BINARY NETNS_SH [LWIP_PEER]
  CASE: rate_delay | blackhole | loss | profile_2g | lwip_smoke (needs LWIP_PEER)

Exit 0 pass, 1 fail, 77 skipped (no root, /dev/net/tun, ip, or namespaces).
The namespaces (sl-c-PID, sl-s-PID) and every process in them are removed
on the way out, also on failure or SIGTERM; namespaces a killed earlier run
left behind (their PID gone) are removed at start.
"""
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "peer.py")
SKIP = 77


def skip(why):
    print("SKIP:", why)
    sys.exit(SKIP)


def fail(why):
    raise AssertionError(why)


def check(cond, why):
    if not cond:
        fail(why)
    print("ok:", why)


class Net:
    """Namespaces + emulator + helper processes, torn down by close()."""

    def __init__(self, link, netns_sh, link_args, mode="posix", static_arp=True):
        self.link, self.sh = link, netns_sh
        self.id = str(os.getpid())
        self.procs, self.events = [], []
        self.emu = None
        self.up = False
        args = [self.sh, "up", self.id, mode] + (["static-arp"] if static_arp else [])
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            fail("netns.sh up: " + r.stderr.strip())
        self.up = True
        env = dict(re.findall(r"^(\w+)='?(.*?)'?$", r.stdout, re.M))
        self.c, self.s = env["SL_CLIENT_NS"], env["SL_SERVER_NS"]
        # --duration: should this script be killed outright, the emulator
        # still ends (it is outside the namespaces, holding their TAPs).
        self.emu = subprocess.Popen([self.link] + env["SL_LINK_ARGS"].split() + link_args +
                                    ["--duration", "120000"],
                                    stdout=subprocess.PIPE, text=True)
        self.cond = threading.Condition()
        threading.Thread(target=self._read_events, daemon=True).start()
        ready = self.wait_event(lambda e: e["event"] == "ready", 5)
        self.t0 = ready["t0_mono_ns"]

    def _read_events(self):
        for line in self.emu.stdout:
            with self.cond:
                self.events.append(json.loads(line))
                self.cond.notify_all()

    def wait_event(self, pred, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = end - time.monotonic()
                if left <= 0:
                    fail("emulator: no expected event (exit %s)" % self.emu.poll())
                self.cond.wait(min(left, 0.2))

    def stats(self):
        """Current statistics (SIGUSR2)."""
        n = len(self.events)
        self.emu.send_signal(signal.SIGUSR2)
        return self.wait_event(lambda e: e["event"] == "stats" and
                               self.events.index(e) >= n, 5)

    def start(self, ns, *args, exe=None):
        cmd = [exe] if exe else [sys.executable, PEER]
        p = subprocess.Popen(["ip", "netns", "exec", ns] + cmd + list(map(str, args)),
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def server(self, ns, *args, exe=None):
        p = self.start(ns, *args, exe=exe)
        if not select.select([p.stdout], [], [], 10)[0] or "ready" not in p.stdout.readline():
            fail("%s did not start" % args[0])
        return p

    def result(self, p, timeout=60):
        try:
            o, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            fail("peer timed out")
        if p.returncode != 0:
            fail("peer exit %d" % p.returncode)
        return json.loads(o.strip().splitlines()[-1])

    def close(self):
        # SIGTERM: lwip_peer has to let go of its TAP before the namespace goes
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.emu and self.emu.poll() is None:
            self.emu.terminate()
            try:
                self.emu.wait(5)
            except subprocess.TimeoutExpired:
                self.emu.kill()
                self.emu.wait()
        if self.up:
            subprocess.run([self.sh, "down", self.id])
            self.up = False


def rel_ms(net, t_ns):
    return (t_ns - net.t0) / 1e6


FRAME_OVERHEAD = 14 + 20 + 8  # Ethernet, IPv4, UDP headers


def udp_rate(net, src_ns, dst_ip, port, count, interval_us, frame, sink_s):
    """Offers `count` frames of `frame` bytes; returns (sent, got, measured rate B/s)."""
    sink = net.server(net.s if src_ns == net.c else net.c, "udp-sink", port, sink_s)
    src = net.start(src_ns, "udp-source", dst_ip, port, count, interval_us, frame - FRAME_OVERHEAD)
    sent = net.result(src)["sent"]
    got = net.result(sink)["got"]
    if len(got) < 10:
        fail("only %d datagrams arrived" % len(got))
    span = (got[-1][2] - got[0][2]) / 1e9
    return sent, got, (len(got) - 1) * frame / span


def case_rate_delay(link, sh):
    rate, delay, queue = 200000, 25, 32000
    net = Net(link, sh, ["--rate", str(rate), "--delay", str(delay), "--queue", str(queue)])
    try:
        # The shaper alone: UDP offered at 2.5x the rate for 2 s.
        sent, got, r = udp_rate(net, net.c, "10.94.0.2", 9000, 1000, 2000, 1000, 4)
        st = net.stats()["a2b"]
        print("udp: offered %d, delivered %d at %.0f B/s; emulator %s" % (len(sent), len(got), r, st))
        # exact when idle (199,999-200,000); the slack is for scheduling delays at the ends
        check(abs(r - rate) <= 0.08 * rate, "UDP arrives at %.0f B/s, rate %d +-8%%" % (r, rate))
        check(st["frames"] == len(got) and st["queue_drops"] == len(sent) - len(got),
              "every frame is delivered or counted as a queue drop")
        check(st["max_queue_bytes"] <= queue, "queue stays within %d bytes" % queue)
        check(max(st["max_wait_ms"], 0) <= queue / rate * 1000 + 1,
              "longest queue wait %.1f ms" % st["max_wait_ms"])

        net.server(net.s, "tcp-server", 8000)
        rt = net.result(net.start(net.c, "tcp-rtt", "10.94.0.2", 8000, 20))
        med = statistics.median(rt["rtts_ms"])
        print("rtt ms:", ["%.1f" % x for x in rt["rtts_ms"]])
        check(2 * delay <= med <= 2 * delay + 10, "RTT median %.1f ms ~ 2 x %d ms" % (med, delay))

        n = 600000
        g = net.result(net.start(net.c, "tcp-get", "10.94.0.2", 8000, n))
        tl = g["timeline"]
        check(g["bytes"] == n, "TCP transfer of %d bytes complete" % n)
        secs = (tl[-1][0] - tl[0][0]) / 1e9
        goodput = (tl[-1][1] - tl[0][1]) / secs
        # TCP payload per full frame: 1448 of 1514 bytes (timestamps on).
        expect = rate * 1448 / 1514
        print("tcp: %d bytes in %.2f s: %.0f B/s (payload at full line rate %.0f)" %
              (n, secs, goodput, expect))
        check(abs(goodput - expect) <= 0.15 * expect,
              "TCP goodput %.0f B/s within 15%% of %.0f" % (goodput, expect))
    finally:
        net.close()


def case_profile_2g(link, sh):
    net = Net(link, sh, ["--profile", "2g"])
    try:
        sent, got, r = udp_rate(net, net.s, "10.94.0.1", 9000, 200, 10000, 1000, 5)
        print("udp b2a: offered %d, delivered %d at %.0f B/s" % (len(sent), len(got), r))
        check(abs(r - 50000) <= 0.08 * 50000, "2g: UDP at %.0f B/s ~ 50 KB/s" % r)
        # the first datagram: 20 ms of line time for 1000 bytes, then 500 ms
        one_way = (got[0][2] - got[0][1]) / 1e6
        check(520 <= one_way <= 560, "2g: the first datagram takes %.1f ms one way" % one_way)

        net.server(net.s, "tcp-server", 8000)
        rt = net.result(net.start(net.c, "tcp-rtt", "10.94.0.2", 8000, 3))
        med = statistics.median(rt["rtts_ms"])
        print("connect %.0f ms, rtt ms %s" % (rt["connect_ms"], rt["rtts_ms"]))
        check(1000 <= med <= 1030, "2g: RTT %.0f ms ~ 1 s" % med)

        n = 200000
        g = net.result(net.start(net.c, "tcp-get", "10.94.0.2", 8000, n))
        tl = g["timeline"]
        secs = (tl[-1][0] - tl[0][0]) / 1e9
        # Past slow start: the second half of the transfer.
        half = next(x for x in tl if x[1] >= n // 2)
        steady = (tl[-1][1] - half[1]) / ((tl[-1][0] - half[0]) / 1e9)
        print("tcp: %d bytes, first to last byte %.2f s (%.0f B/s), second half %.0f B/s" %
              (n, secs, n / secs, steady))
        check(g["bytes"] == n and abs(steady - 47800) <= 0.15 * 47800,
              "2g: TCP goodput past slow start %.0f B/s ~ 47.8 KB/s" % steady)
    finally:
        net.close()


def case_blackhole(link, sh):
    # a2b cut from 1.5 s to 3 s by the schedule; b2a cut by SIGUSR1 at ~3.5 s.
    delay = 10
    net = Net(link, sh, ["--delay", str(delay), "--blackhole", "a2b@1500-3000", "--usr1", "b2a"])
    try:
        sinks = [net.server(net.s, "udp-sink", 9000, 6.5), net.server(net.c, "udp-sink", 9001, 6.5)]
        srcs = [net.start(net.c, "udp-source", "10.94.0.2", 9000, 450, 10000, 100),
                net.start(net.s, "udp-source", "10.94.0.1", 9001, 450, 10000, 100)]
        while time.monotonic_ns() < net.t0 + 3_500_000_000:
            time.sleep(0.01)
        net.emu.send_signal(signal.SIGUSR1)
        sent = [net.result(p)["sent"] for p in srcs]
        got = [{g[0] for g in net.result(p)["got"]} for p in sinks]
        st = net.stats()
        ev = [(e["dir"], e["on"], e["t_ms"]) for e in net.events if e["event"] == "blackhole"]
        print("blackhole events:", ev)
        on = {(d, o): t for d, o, t in ev}
        check(1500 <= on[("a2b", True)] < 1520 and 3000 <= on[("a2b", False)] < 3020,
              "a2b blackhole reported on at 1.5 s, off at 3 s")
        usr1 = on[("b2a", True)]
        check(3490 <= usr1 < 3600, "SIGUSR1 turned b2a off at %.0f ms" % usr1)

        # ms of slack around each edge: from send to the emulator's read is
        # under a ms when idle, but a loaded machine (other builds, ASan) can
        # hold a niced emulator off the CPU for tens of ms.
        m = 100
        # per direction: (sent at t must arrive, sent at t must not arrive)
        rules = ((lambda t: t < 1500 - delay - m or t >= 3000 + m,
                  lambda t: 1500 <= t < 3000 - delay - m),
                 (lambda t: t < usr1 - delay - m,
                  lambda t: t >= usr1 + m))
        for d, (must, mustnt) in enumerate(rules):
            name = ("a2b", "b2a")[d]
            rel = [rel_ms(net, t) for t in sent[d]]
            missing = [i for i, t in enumerate(rel) if must(t) and i not in got[d]]
            leaked = [i for i, t in enumerate(rel) if mustnt(t) and i in got[d]]
            if missing or leaked:
                print(name, "missing (seq, sent ms):", [(i, round(rel[i], 1)) for i in missing][:20],
                      "leaked:", [(i, round(rel[i], 1)) for i in leaked][:20])
            check(not missing, "%s: everything sent outside the cut arrived (%d of %d arrived)" %
                  (name, len(got[d]), len(sent[d])))
            check(not leaked, "%s: nothing sent inside the cut arrived" % name)
        check(st["a2b"]["blackholed"] == len(sent[0]) - len(got[0]) and
              st["b2a"]["blackholed"] == len(sent[1]) - len(got[1]),
              "emulator counts each missing datagram as blackholed (%d, %d)" %
              (st["a2b"]["blackholed"], st["b2a"]["blackholed"]))
    finally:
        net.close()


def loss_run(link, sh, seed, pct, count):
    net = Net(link, sh, ["--loss", str(pct), "--seed", str(seed)])
    try:
        sinks = [net.server(net.s, "udp-sink", 9000, 3), net.server(net.c, "udp-sink", 9001, 3)]
        srcs = [net.start(net.c, "udp-source", "10.94.0.2", 9000, count, 500, 200),
                net.start(net.s, "udp-source", "10.94.0.1", 9001, count, 500, 200)]
        for p in srcs:
            net.result(p)
        got = [{g[0] for g in net.result(p)["got"]} for p in sinks]
        st = net.stats()
        return [set(range(count)) - g for g in got], st
    finally:
        net.close()


def case_loss(link, sh):
    pct, count, seed = 10, 2000, 7
    lost1, st = loss_run(link, sh, seed, pct, count)
    p = pct / 100
    sd = (count * p * (1 - p)) ** 0.5
    for d, name in enumerate(("a2b", "b2a")):
        s = st[name]
        print(name, "lost %d of %d; emulator %s" % (len(lost1[d]), count, s))
        check(s["frames_in"] == count and s["lost"] == len(lost1[d]) and
              s["frames"] == count - len(lost1[d]),
              "%s: the emulator's counts match the datagrams exactly" % name)
        check(abs(len(lost1[d]) - count * p) <= 4 * sd,
              "%s: %.1f%% lost, configured %d%% (+-4 sd = %.1f%%)" %
              (name, 100 * len(lost1[d]) / count, pct, 400 * sd / count))
    lost2, _ = loss_run(link, sh, seed, pct, count)
    check(lost1 == lost2, "the same seed loses the same datagrams")


def case_lwip_smoke(link, sh, peer):
    # Real ARP (lwIP's MAC is its own business), a queue that holds lwIP's
    # 64 KB window (a smaller one costs it dearly: no SACK).
    rate, delay = 200000, 25
    net = Net(link, sh, ["--rate", str(rate), "--delay", str(delay), "--queue", "100k"],
              mode="lwip", static_arp=False)
    try:
        net.server(net.s, "sls0", "10.94.0.2", 8000, exe=peer)
        n = 200000
        g = net.result(net.start(net.c, "tcp-get", "10.94.0.2", 8000, n))
        tl = g["timeline"]
        secs = (tl[-1][0] - tl[0][0]) / 1e9
        st = net.stats()
        print("lwip: connect %.0f ms, %d bytes in %.2f s (%.0f B/s); emulator a2b %s b2a %s" %
              (g["connect_ms"], g["bytes"], secs, g["bytes"] / secs, st["a2b"], st["b2a"]))
        check(g["bytes"] == n, "a %d-byte download from lwIP crosses the link" % n)
        # ARP and the handshake: two round trips
        check(4 * delay <= g["connect_ms"] <= 4 * delay + 50, "connect %.0f ms" % g["connect_ms"])
        check(st["b2a"]["bytes"] >= n and st["b2a"]["csum_partial"] == 0 and
              st["a2b"]["csum_partial"] == 0, "lwIP's frames went through the emulator, whole")
        check(g["bytes"] / secs >= 0.5 * rate * 1448 / 1514,
              "throughput %.0f B/s at least half the line rate (slow start included)" %
              (g["bytes"] / secs))
    finally:
        net.close()


CASES = {"rate_delay": case_rate_delay, "blackhole": case_blackhole, "loss": case_loss,
         "profile_2g": case_profile_2g, "lwip_smoke": case_lwip_smoke}


def remove_stale(sh):
    """Namespaces of earlier runs that were killed (their PID is gone)."""
    try:
        names = os.listdir("/var/run/netns")
    except OSError:
        return
    for n in names:
        m = re.fullmatch(r"sl-[cs]-(\d+)", n)
        if m and not os.path.exists("/proc/" + m.group(1)):
            # only this script's helpers live in these namespaces
            pids = subprocess.run(["ip", "netns", "pids", n], capture_output=True, text=True)
            for pid in pids.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            subprocess.run([sh, "down", m.group(1)])


def main():
    if len(sys.argv) not in (4, 5) or sys.argv[1] not in CASES or \
            (sys.argv[1] == "lwip_smoke") != (len(sys.argv) == 5):
        print(__doc__)
        return 2
    case, link, sh = sys.argv[1:4]
    extra = sys.argv[4:]
    if os.geteuid() != 0:
        skip("needs root (network namespaces, TAP)")
    if not os.path.exists("/dev/net/tun"):
        skip("no /dev/net/tun")
    if not shutil.which("ip"):
        skip("no ip (iproute2)")
    probe = "sl-probe-%d" % os.getpid()
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        skip("cannot create a network namespace here")
    subprocess.run(["ip", "netns", "del", probe])
    remove_stale(sh)
    # SIGTERM/SIGHUP (ctest, a shell) unwind through the finally blocks.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    try:
        CASES[case](link, sh, *extra)
    except AssertionError as e:
        print("FAIL:", e)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
