#!/usr/bin/env python3
"""The slow-link scenarios (issue 5): slotnet-web behind slotnet-link's 2G
profile, driven by slotnet-load from namespaces of its own.

  run_slow.py --scenario FILE --backend posix|lwip --web BIN --load BIN --link BIN
              [--scale F] [--out DIR] [--check] [--ratio-limit R]
              [--reset-tolerance-ms 500] [--tag NAME]
  run_slow.py --table DIR        the comparison table of the runs in DIR

Topology (one bridge in the server namespace, one emulator per path):

  slw-c-ID  slc0 10.94.0.1 ─fd─ slotnet-link (2g) ─fd─ sp0 ┐
  slw-b-ID  slc0 10.94.0.3 ─fd─ slotnet-link (2g, --usr1 both) ─fd─ sp1 ┤ br0  slw-s-ID
                                                                        │
     posix: br0 is 10.94.0.2 (the kernel, slotnet-web on it)            │
     lwip:  sls0 (TAP, lwIP's fd, 10.94.0.2) is a port of br0, and ─────┘
            br0 is 10.94.0.4: the monitor's way in, off the emulated link

slotnet-load runs in slw-c-ID; the blackhole group's sockets are made in
slw-b-ID (--netns), so that client alone crosses the second emulator, which
it cuts with SIGUSR1 (--blackhole-pid) once the reply has started; the
/status monitor's sockets are made in slw-s-ID (--status-netns), so it
neither loads the 2G link nor sees the server a second late.

Outputs in --out (default: a temporary folder, removed): TAG.json (the
report), TAG.txt, TAG.png/.svg/.csv/.gp (the plot), TAG.link.json (the
emulators' statistics), TAG.server.log, and TAG.summary.json (one row of
the table). With --check, asserts on the report: every browser served,
each body's CRC that of its file, the upload's CRC verified, no slot
stuck, the ratio to the bound (bytes that had to move; the waste apart)
reported and within the limit (the scenario's 1.2 at full size,
CI_RATIO_LIMIT below scale 1, or --ratio-limit); blackhole: the link cut
mid-reply, the close reset within close_timeout_ms +- --reset-tolerance-ms
and counted as a timeout, the others served while it was silent, and a
control client (same request, same path, uncut, afterwards) served in full
and closed gracefully (closed_graceful up, no timeout or reset). The link
rate and delay given to slotnet-load are the emulator's ("ready" event).

Exit status: 0 pass, 1 fail, 77 skipped (no root, /dev/net/tun, ip,
namespaces or bridges; lwip: slotnet-web without --backend lwip or
without lwIP in this build).
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
# Full size (scale 1): the scenario's max_served_ratio (1.2, the target).
# At the CI scale (0.04) the fixed round trips and slow start dominate the
# bound's few seconds (measured 1.45-1.50 against the old moved-bytes bound,
# 1.36-1.59 against the needed-bytes one): a looser limit, there only.
CI_RATIO_LIMIT = 1.8
SERVER_IP = "10.94.0.2"
PORT = 80


SKIP_WHY = []


def skip(why):
    SKIP_WHY.append(why)
    print("SKIP:", why, flush=True)
    sys.exit(SKIP)


def sh(*args, check=True):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(args), r.stderr.strip()))
    return r


class Topology:
    """Namespaces, bridge, TAPs and emulators; close() removes all of it."""

    def __init__(self, link_bin, backend, blackhole_path, limit_s, out, tag):
        self.id = str(os.getpid())
        self.s, self.c, self.b = ("slw-%s-%s" % (k, self.id) for k in "scb")
        self.backend = backend
        self.emus = []
        self.events = {}
        self.made = []
        self.out, self.tag = out, tag
        try:
            self._build(link_bin, blackhole_path, limit_s)
        except Exception:
            self.close()
            raise

    def _ns(self, name):
        sh("ip", "netns", "add", name)
        self.made.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        # no router solicitations, MLD or DAD on the link
        sh("ip", "netns", "exec", name, "sh", "-c",
           "for f in all default; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done",
           check=False)

    def _tap(self, ns, name, mac=None, addr=None):
        sh("ip", "-n", ns, "tuntap", "add", "dev", name, "mode", "tap")
        if mac:
            sh("ip", "-n", ns, "link", "set", name, "address", mac)
        if addr:
            sh("ip", "-n", ns, "addr", "add", addr, "dev", name)
        sh("ip", "-n", ns, "link", "set", name, "up")

    def _emu(self, link_bin, args, limit_s, name):
        p = subprocess.Popen([link_bin] + args + ["--duration", str(int(limit_s * 1000))],
                             stdout=subprocess.PIPE, text=True)
        ev = {"ready": None, "lines": [], "cond": threading.Condition()}
        self.events[name] = ev

        def reader():
            for line in p.stdout:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                with ev["cond"]:
                    ev["lines"].append(e)
                    if e.get("event") == "ready":
                        ev["ready"] = e
                    ev["cond"].notify_all()

        threading.Thread(target=reader, daemon=True).start()
        self.emus.append((name, p))
        with ev["cond"]:
            ev["cond"].wait_for(lambda: ev["ready"] or p.poll() is not None, timeout=10)
        if not ev["ready"]:
            raise RuntimeError("slotnet-link (%s) did not start (exit %s)" % (name, p.poll()))
        return p

    def _build(self, link_bin, blackhole_path, limit_s):
        for ns in (self.s, self.c) + ((self.b,) if blackhole_path else ()):
            self._ns(ns)
        s = self.s
        sh("ip", "-n", s, "link", "add", "br0", "type", "bridge", "forward_delay", "0",
           "stp_state", "0")
        sh("ip", "-n", s, "link", "set", "br0", "address", "02:94:00:00:00:02")
        ports = ["sp0"] + (["sp1"] if blackhole_path else [])
        if self.backend == "lwip":
            ports.append("sls0")  # lwIP attaches to it (--tap sls0) and owns its fd
        for p in ports:
            self._tap(s, p)
            sh("ip", "-n", s, "link", "set", p, "master", "br0")
        sh("ip", "-n", s, "addr", "add",
           (SERVER_IP if self.backend == "posix" else "10.94.0.4") + "/24", "dev", "br0")
        sh("ip", "-n", s, "link", "set", "br0", "up")
        self._tap(self.c, "slc0", "02:94:00:00:00:01", "10.94.0.1/24")
        if blackhole_path:
            self._tap(self.b, "slc0", "02:94:00:00:00:03", "10.94.0.3/24")
        if self.backend == "posix":
            # No ARP across the link: every frame is the test's (lwIP picks its own MAC)
            for ns in (self.c,) + ((self.b,) if blackhole_path else ()):
                sh("ip", "-n", ns, "neigh", "replace", SERVER_IP, "lladdr",
                   "02:94:00:00:00:02", "dev", "slc0", "nud", "permanent")
            sh("ip", "-n", s, "neigh", "replace", "10.94.0.1", "lladdr", "02:94:00:00:00:01",
               "dev", "br0", "nud", "permanent")
            sh("ip", "-n", s, "neigh", "replace", "10.94.0.3", "lladdr", "02:94:00:00:00:03",
               "dev", "br0", "nud", "permanent")
        self.emu0 = self._emu(link_bin, ["--a", "tap:slc0@" + self.c, "--b", "tap:sp0@" + s,
                                         "--profile", "2g"], limit_s, "main")
        self.emu1 = None
        if blackhole_path:
            self.emu1 = self._emu(link_bin, ["--a", "tap:slc0@" + self.b, "--b",
                                             "tap:sp1@" + s, "--profile", "2g", "--usr1",
                                             "both"], limit_s, "blackhole")

    def stats(self):
        """Every emulator's final statistics and blackhole events."""
        out = {}
        for name, p in self.emus:
            ev = self.events[name]
            if p.poll() is None:
                n = len(ev["lines"])
                p.send_signal(signal.SIGUSR2)
                with ev["cond"]:
                    ev["cond"].wait_for(lambda: any(e.get("event") == "stats"
                                                    for e in ev["lines"][n:]), timeout=5)
            st = [e for e in ev["lines"] if e.get("event") == "stats"]
            out[name] = {"ready": ev["ready"], "stats": st[-1] if st else None,
                         "blackhole": [e for e in ev["lines"] if e.get("event") == "blackhole"]}
        return out

    def close(self):
        for name, p in self.emus:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.emus = []
        for ns in self.made:
            kill_ns_procs(ns)
            sh("ip", "netns", "del", ns, check=False)
        self.made = []


def kill_ns_procs(ns):
    r = sh("ip", "netns", "pids", ns, check=False)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def remove_stale():
    """Namespaces of earlier runs that were killed (their PID is gone)."""
    try:
        names = os.listdir("/var/run/netns")
    except OSError:
        return
    for n in names:
        m = re.fullmatch(r"slw-[scb]-(\d+)", n)
        if m and not os.path.exists("/proc/" + m.group(1)):
            kill_ns_procs(n)
            sh("ip", "netns", "del", n, check=False)


def preflight(args):
    if os.geteuid() != 0:
        skip("needs root (network namespaces, TAP, setns)")
    if not os.path.exists("/dev/net/tun"):
        skip("no /dev/net/tun")
    if not shutil.which("ip"):
        skip("no ip (iproute2)")
    for b in (args.web, args.load, args.link):
        if not os.access(b, os.X_OK):
            skip("%s not built" % b)
    probe = "slw-probe-%d" % os.getpid()
    if sh("ip", "netns", "add", probe, check=False).returncode != 0:
        skip("cannot create a network namespace here")
    ok = sh("ip", "-n", probe, "link", "add", "br0", "type", "bridge", check=False).returncode == 0
    sh("ip", "netns", "del", probe, check=False)
    if not ok:
        skip("cannot create a bridge in a namespace")
    if args.backend == "lwip":
        help_text = sh(args.web, "--help", check=False).stdout
        if "--backend" not in help_text or "lwip" not in help_text:
            skip("slotnet-web has no --backend lwip yet")


def start_server(args, topo, root, sd, log, close_timeout_ms):
    cmd = ["ip", "netns", "exec", topo.s, args.web, "--listen", "0.0.0.0:%d" % PORT,
           "--slots", "8", "--root", root, "--sd", sd,
           "--close-timeout-ms", str(close_timeout_ms)]
    if args.backend == "lwip":
        cmd += ["--backend", "lwip", "--tap", "sls0", "--addr", SERVER_IP + "/24"]
    cmd += args.server_arg
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        log.flush()
        text = open(log.name).read()
        if "serving" in text:
            return p
        if p.poll() is not None:
            if args.backend == "lwip" and re.search(r"lwip|lwIP|not built|no lwIP", text):
                print(text)
                skip("slotnet-web --backend lwip is not available in this build")
            raise RuntimeError("slotnet-web exited %s:\n%s" % (p.returncode, text))
        time.sleep(0.05)
    p.kill()
    p.wait()
    raise RuntimeError("slotnet-web did not start:\n" + open(log.name).read())


def stop_server(p):
    if p.poll() is not None:
        return p.returncode, False
    p.send_signal(signal.SIGINT)
    try:
        return p.wait(10), True
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait(), True


def control_fetch(host, path, timeout_s):
    """(Run inside the blackhole path's namespace.) GET path with
    Connection: close, read to the end; print how it ended as JSON."""
    import socket
    import zlib
    sk = socket.create_connection((host, PORT), timeout=timeout_s)
    local = "%s:%d" % sk.getsockname()[:2]
    sk.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" %
                (path, host)).encode())
    data, end = b"", None
    try:
        while True:
            b = sk.recv(65536)
            if not b:
                end = "fin"
                break
            data += b
    except ConnectionResetError:
        end = "reset"
    except socket.timeout:
        end = "timeout"
    sk.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head.startswith(b"HTTP/") else None
    print(json.dumps({"local": local, "status": status, "body_bytes": len(body),
                      "crc": zlib.crc32(body), "end": end}))


def control_watch(host, path, bns, timeout_s):
    """(Run inside the server's namespace.) The control client: the /status
    counters over one keep-alive connection, the fetch from namespace bns,
    then the control's slot watched until it is free. Prints JSON."""
    import http.client
    st = {"reconnects": 0, "conn": None}

    def status():
        for _ in range(3):
            if st["conn"] is None:
                st["conn"] = http.client.HTTPConnection(host, PORT, timeout=5)
                st["reconnects"] += 1
            try:
                st["conn"].request("GET", "/status")
                r = st["conn"].getresponse()
                j = json.loads(r.read())
                if r.getheader("Connection", "").lower() == "close":
                    st["conn"].close()
                    st["conn"] = None
                return j
            except (OSError, http.client.HTTPException, ValueError):
                st["conn"].close()
                st["conn"] = None
        raise RuntimeError("no /status")

    s0 = status()
    t0 = time.monotonic()
    r = subprocess.run(["ip", "netns", "exec", bns, sys.executable, os.path.abspath(__file__),
                        "--control-fetch", host, path, str(timeout_s)],
                       capture_output=True, text=True, timeout=timeout_s + 10)
    fetch = json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else \
        {"error": r.stderr.strip()}
    t_fetched = time.monotonic()
    free_after_s, states = None, set()
    while time.monotonic() < t0 + timeout_s:
        j = status()
        mine = [x.get("state") for x in j.get("slots", []) if x.get("remote") == fetch.get("local")]
        states.update(mine)
        if not mine:
            free_after_s = time.monotonic() - t_fetched
            break
        time.sleep(0.1)
    s1 = status()
    c0, c1 = s0.get("counters", {}), s1.get("counters", {})
    delta = {k: c1.get(k, 0) - c0.get(k, 0) for k in
             ("closed_graceful", "closed_peer", "closed_timeout", "reset_by_peer", "aborted",
              "terminated")}
    print(json.dumps({"fetch": fetch, "fetch_s": t_fetched - t0, "free_after_s": free_after_s,
                      "states": sorted(s for s in states if s), "delta": delta,
                      "status_reconnects": st["reconnects"] - 1}))


def summarize(tag, backend, scenario, rep, rc, server_rc, stats):
    pages = rep.get("pages") or {}
    bh = rep.get("blackhole") or {}
    srv = rep.get("server") or {}
    up = rep.get("upload") or {}
    bound = pages.get("bound") or {}
    stuck = None
    if srv.get("slots_at_end"):
        stuck = sum(v for k, v in srv["slots_at_end"].items() if k != "free")
    return {
        "tag": tag, "backend": backend, "scenario": scenario, "exit": rc,
        "server_exit": server_rc, "pass": rep.get("pass"),
        "browsers": pages.get("browsers"), "served": pages.get("served"),
        "all_served_s": pages.get("all_served_s"), "bound_s": bound.get("bound_s"),
        "line_s": bound.get("line_s"), "ratio": pages.get("ratio"),
        "retries": pages.get("retries"), "scale": pages.get("scale"),
        "waste": pages.get("waste"), "content_mismatch": pages.get("content_mismatch"),
        "upload_crc": up.get("crc_verified") if up else None,
        "slots_free_at_end": srv.get("slots_free_at_end"), "stuck_slots": stuck,
        "bh_cut": bh.get("cut"), "close_to_reset_ms": bh.get("close_to_reset_ms"),
        "close_timeout_ms": bh.get("close_timeout_ms"),
        "close_window_ms": [bh.get("close_to_reset_min_ms"), bh.get("close_to_reset_max_ms")],
        "closed_timeout_counted": bh.get("closed_timeout_counted"),
        "others_ok": bh.get("others_ok"), "others_failed": bh.get("others_failed"),
        "others_max_ms": bh.get("others_max_ms"),
        "failed": (rep.get("requests") or {}).get("failed"),
        "link_drops": {k: {d: (v["stats"] or {}).get(d, {}).get("queue_drops")
                           for d in ("a2b", "b2a")} for k, v in stats.items()},
    }


def run(args):
    with open(args.scenario) as f:
        scen = json.load(f)
    name = scen.get("name") or os.path.basename(args.scenario).rsplit(".", 1)[0]
    tag = args.tag or "%s-%s" % (name, args.backend)
    bh_groups = [g for g in scen["groups"] if g["type"] == "blackhole"]
    close_timeout_ms = scen.get("close_timeout_ms", 2000)
    limit_s = scen.get("duration_s", 10) + scen.get("drain_ms", 5000) / 1000 + \
        scen.get("final_grace_ms", 3000) / 1000 + 120
    if args.max_duration:
        limit_s = min(limit_s, args.max_duration + 120)

    tmp = tempfile.mkdtemp(prefix="slotnet-slow-")
    out = args.out or tmp
    # The ratio limit: the scenario's (full size) unless --ratio-limit, or
    # CI_RATIO_LIMIT below scale 1; slotnet-load's own expectation follows
    # it (a copy of the scenario), so the two cannot disagree.
    expect = scen.get("expect") or {}
    ratio_limit = args.ratio_limit
    if ratio_limit is None:
        ratio_limit = CI_RATIO_LIMIT if args.scale and args.scale < 1 \
            else expect.get("max_served_ratio")
    scen_path = args.scenario
    if "max_served_ratio" in expect and ratio_limit != expect["max_served_ratio"]:
        expect["max_served_ratio"] = ratio_limit
        scen_path = os.path.join(tmp, os.path.basename(args.scenario))
        with open(scen_path, "w") as f:
            json.dump(scen, f)
    os.makedirs(out, exist_ok=True)
    root, sd = os.path.join(tmp, "www"), os.path.join(tmp, "sd")
    os.mkdir(root)
    os.mkdir(sd)
    topo = server = None
    fails = []

    def check(what, ok):
        print(("ok   - " if ok else "FAIL - ") + what, flush=True)
        if not ok:
            fails.append(what)

    try:
        w = subprocess.run([args.load, "--scenario", scen_path, "--write-assets", root] +
                           (["--scale", str(args.scale)] if args.scale else []),
                           capture_output=True, text=True)
        if w.returncode != 0:
            raise RuntimeError("--write-assets: " + w.stderr)
        print("#", w.stdout.strip())
        topo = Topology(args.link, args.backend, bool(bh_groups), limit_s, out, tag)
        print("# namespaces %s %s%s, emulators pid %d%s" %
              (topo.s, topo.c, " " + topo.b if bh_groups else "", topo.emu0.pid,
               " and %d (blackhole path)" % topo.emu1.pid if topo.emu1 else ""), flush=True)
        log = open(os.path.join(out, tag + ".server.log"), "w+")
        server = start_server(args, topo, root, sd, log, close_timeout_ms)
        print("# slotnet-web (%s) pid %d on %s:%d" % (args.backend, server.pid, SERVER_IP, PORT),
              flush=True)

        # The link as the emulator says it runs it (its "ready" event).
        ready = topo.events["main"]["ready"]
        up, down = ready.get("a2b") or {}, ready.get("b2a") or {}
        if (up.get("rate"), up.get("delay_ms")) != (down.get("rate"), down.get("delay_ms")) \
                or not down.get("rate"):
            raise RuntimeError("emulator link not symmetric or without a rate: %s" % ready)
        print("# link (emulator ready event): %s B/s, %s ms one way" %
              (down["rate"], down["delay_ms"]), flush=True)
        cmd = ["ip", "netns", "exec", topo.c, args.load, "--scenario", scen_path,
               "--target", "%s:%d" % (SERVER_IP, PORT),
               "--json", os.path.join(out, tag + ".json"), "--plot", os.path.join(out, tag),
               "--status-netns", topo.s, "--link-rate", str(down["rate"]),
               "--link-delay", str(down["delay_ms"]),
               "--close-timeout-ms", str(close_timeout_ms)]
        if args.scale:
            cmd += ["--scale", str(args.scale)]
        if args.max_duration:
            cmd += ["--duration", str(args.max_duration)]
        if args.backend == "lwip":
            # lwIP sends no TCP timestamps: 54 header bytes, 1460 of payload
            cmd += ["--link-mss", "1460", "--link-overhead", "54"]
        for g in bh_groups:
            cmd += ["--netns", "%s=%s" % (g["name"], topo.b)]
            if not args.no_cut:
                cmd += ["--blackhole-pid", str(topo.emu1.pid)]
        t0 = time.monotonic()
        try:
            run_ = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=limit_s)
            rc = run_.returncode
            text = run_.stdout
        except subprocess.TimeoutExpired:
            rc, text = None, ""
        print(text, end="", flush=True)
        print("# slotnet-load took %.1f s" % (time.monotonic() - t0))
        with open(os.path.join(out, tag + ".txt"), "w") as f:
            f.write(text)
        control = None
        if bh_groups and args.check:
            # The control: the same kind of client (Connection: close, the same
            # reply) over the same path once the cut is over. It must end in a
            # graceful close within close_timeout_ms, or the blackhole's reset
            # proves nothing about the cut.
            g = bh_groups[0]
            r_ = subprocess.run(["ip", "netns", "exec", topo.s, sys.executable,
                                 os.path.abspath(__file__), "--control-watch", SERVER_IP,
                                 g["path"], topo.b, str(close_timeout_ms / 1000 + 10)],
                                capture_output=True, text=True, timeout=close_timeout_ms / 1000 + 40)
            try:
                control = json.loads(r_.stdout)
            except ValueError:
                control = {"error": r_.stdout + r_.stderr}
            print("# control client:", json.dumps(control), flush=True)
        stats = topo.stats()
        with open(os.path.join(out, tag + ".link.json"), "w") as f:
            json.dump(stats, f, indent=1)
        for k, v in stats.items():
            st = v["stats"] or {}
            print("# emulator %s: a2b %s; b2a %s" % (
                k, {x: st.get("a2b", {}).get(x) for x in ("bytes", "queue_drops", "blackholed")},
                {x: st.get("b2a", {}).get(x) for x in ("bytes", "queue_drops", "blackholed")}))
        server_rc, was_alive = stop_server(server)
        log.flush()
        check("slotnet-load finished by itself (exit %s)" % rc, rc is not None)
        rep = {}
        try:
            with open(os.path.join(out, tag + ".json")) as f:
                rep = json.load(f)
        except (OSError, ValueError) as e:
            check("JSON report readable (%s)" % e, False)
        summary = summarize(tag, args.backend, name, rep, rc, server_rc, stats)
        summary["server_args"] = " ".join(args.server_arg)
        summary["control"] = control
        with open(os.path.join(out, tag + ".summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        check("slotnet-web ran to the end and stopped with 0 on SIGINT (got %s)" % server_rc,
              was_alive and server_rc == 0)

        if args.check and rep:
            srv = rep.get("server") or {}
            check("every slot free at the end (%s)" % srv.get("slots_at_end"),
                  srv.get("slots_free_at_end") is True)
            pages = rep.get("pages")
            if pages:
                check("every browser served (%s of %s; all at %s s)" %
                      (pages["served"], pages["browsers"], pages.get("all_served_s")),
                      pages["served"] == pages["browsers"])
                ratio = pages.get("ratio")
                check("ratio to the physical bound reported (%s; bound %s s)" %
                      (ratio, (pages.get("bound") or {}).get("bound_s")),
                      isinstance(ratio, (int, float)) and ratio > 0)
                check("ratio %s <= %s (scale %s)" % (ratio, ratio_limit, args.scale or 1),
                      ratio_limit is not None and isinstance(ratio, (int, float)) and
                      ratio <= ratio_limit)
                check("every body's CRC matched its file (%s mismatched)" %
                      pages.get("content_mismatch"), pages.get("content_mismatch") == 0)
                wa = pages.get("waste") or {}
                print("# waste beyond the bound: down %s B, up %s B, %s connections" %
                      (wa.get("down_bytes"), wa.get("up_bytes"), wa.get("connections")))
            if rep.get("upload") is not None:
                up = rep["upload"]
                check("upload CRC verified (%s verified, %s mismatched, %s failed)" %
                      (up.get("verified"), up.get("crc_mismatch"), up.get("failed")),
                      up.get("crc_verified") is True)
            bh = rep.get("blackhole")
            if bh:
                check("the blackhole client's link was cut mid-reply (%s of %s bytes in, "
                      "%s after)" % (bh["bytes_before_cut"], bh["reply_bytes"],
                                     bh["bytes_after_cut"]),
                      bh["cut"] and bh["cut_by_signal"] and
                      0 < bh["bytes_before_cut"] < bh["reply_bytes"] and
                      bh["bytes_after_cut"] == 0)
                ms = bh.get("close_to_reset_ms")
                check("its close reset %s ms after close-pending (window %s..%s), configured "
                      "%s +- %s" % (ms, bh.get("close_to_reset_min_ms"),
                                    bh.get("close_to_reset_max_ms"), close_timeout_ms,
                                    args.reset_tolerance_ms),
                      bh["reset_seen"] and ms is not None and
                      abs(ms - close_timeout_ms) <= args.reset_tolerance_ms)
                check("the server counted it as a close timeout",
                      bh.get("closed_timeout_counted") is True)
                check("the others were served while it was silent (%s ok, %s failed, slowest "
                      "%s ms)" % (bh["others_ok"], bh["others_failed"], bh["others_max_ms"]),
                      bh["others_ok"] > 0 and bh["others_failed"] == 0)
            if bh_groups:
                g = bh_groups[0]
                ctl = control or {}
                fe, de = ctl.get("fetch") or {}, ctl.get("delta") or {}
                bh_on = [e for e in (stats.get("blackhole") or {}).get("blackhole", [])]
                check("the blackhole path was whole again for the control (%s)" %
                      [(e.get("dir"), e.get("on")) for e in bh_on],
                      not bh_on or all(not e.get("on") for e in bh_on[-2:]))
                want_crc = file_crc(os.path.join(root, g["path"].lstrip("/")))
                check("control client: same reply in full, ended by FIN (%s, %s of %s bytes, "
                      "crc %s)" % (fe.get("end"), fe.get("body_bytes"), g["size"],
                                   "ok" if fe.get("crc") == want_crc else "BAD"),
                      fe.get("status") == 200 and fe.get("end") == "fin" and
                      fe.get("body_bytes") == g["size"] and fe.get("crc") == want_crc)
                fa = ctl.get("free_after_s")
                check("control's slot free %s s after its reply, well within the close timeout "
                      "(%s ms)" % (None if fa is None else round(fa, 2), close_timeout_ms),
                      fa is not None and fa * 1000 < close_timeout_ms / 2)
                check("control counted as a graceful close, no timeout or reset (%s, %s status "
                      "reconnects)" % (de, ctl.get("status_reconnects")),
                      de.get("closed_graceful", 0) - ctl.get("status_reconnects", 0) >= 1 and
                      de.get("closed_timeout") == 0 and de.get("aborted") == 0 and
                      de.get("reset_by_peer") == 0)
            check("every expectation of the scenario met (exit status %s)" % rc, rc == 0)
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        if topo is not None:
            topo.close()
        if fails and server is not None:
            print("# server log (tail):")
            with open(os.path.join(out, tag + ".server.log")) as f:
                print("".join(f.readlines()[-30:]))
        shutil.rmtree(tmp, ignore_errors=True)
    if fails:
        print("%d check(s) failed" % len(fails))
        return 1
    print("PASS")
    return 0


def file_crc(path):
    import zlib
    with open(path, "rb") as f:
        return zlib.crc32(f.read())


def fmt(v, spec="%.1f"):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    return spec % v if isinstance(v, (int, float)) else str(v)


def table(folder):
    rows = []
    for p in sorted(glob.glob(os.path.join(folder, "*.summary.json"))):
        with open(p) as f:
            rows.append(json.load(f))
    order = {"posix": 0, "lwip": 1}
    rows.sort(key=lambda r: (r["scenario"], order.get(r["backend"], 9)))
    print("| backend | scenario | all served at | bound | ratio | upload CRC | stuck slots "
          "| close → reset (configured) | others during blackhole |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("skipped"):
            print("| %s | %s | SKIP: %s | | | | | | |" % (r["backend"], r["scenario"], r["skipped"]))
            continue
        served = "—"
        if r.get("browsers"):
            served = ("%s s" % fmt(r["all_served_s"])) if r.get("all_served_s") is not None \
                else "%s of %s served" % (r.get("served"), r.get("browsers"))
        close = "—"
        if r.get("bh_cut") is not None:
            close = "%s ms (%s)" % (fmt(r.get("close_to_reset_ms"), "%.0f"),
                                    r.get("close_timeout_ms"))
        others = "—"
        if r.get("others_ok") is not None:
            others = "%s ok, %s failed, slowest %s ms" % (
                r["others_ok"], r["others_failed"], fmt(r.get("others_max_ms"), "%.0f"))
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["backend"], r["scenario"] + (" ×%g" % r["scale"] if r.get("scale") not in
                                           (None, 1) else "") +
            (" (`%s`)" % r["server_args"] if r.get("server_args") else ""),
            served, (fmt(r.get("bound_s")) + " s") if r.get("bound_s") else "—",
            fmt(r.get("ratio"), "%.2f"), fmt(r.get("upload_crc")),
            fmt(r.get("stuck_slots"), "%d"), close, others))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario")
    ap.add_argument("--backend", choices=("posix", "lwip"), default="posix")
    ap.add_argument("--web")
    ap.add_argument("--load")
    ap.add_argument("--link")
    ap.add_argument("--scale", type=float, help="browser asset and upload sizes times this")
    ap.add_argument("--max-duration", type=float, help="cap the scenario's duration (s)")
    ap.add_argument("--out", help="keep the reports and plots here")
    ap.add_argument("--tag", help="file name stem of the outputs (SCENARIO-BACKEND)")
    ap.add_argument("--check", action="store_true", help="assert (the ctest mode)")
    ap.add_argument("--ratio-limit", type=float, default=None,
                    help="default: the scenario's max_served_ratio; %g below scale 1"
                    % CI_RATIO_LIMIT)
    ap.add_argument("--reset-tolerance-ms", type=float, default=500)
    ap.add_argument("--server-arg", action="append", default=[],
                    help="one more slotnet-web option (repeatable)")
    ap.add_argument("--table", metavar="DIR", help="print the table of the runs in DIR")
    ap.add_argument("--skip-note", metavar="WHY",
                    help="with --out: record this run as skipped (for the table)")
    ap.add_argument("--no-cut", action="store_true",
                    help="blackhole: do not pass --blackhole-pid (the path is never cut: "
                    "the checks must then fail)")
    ap.add_argument("--control-fetch", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--control-watch", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.control_fetch:
        control_fetch(args.control_fetch[0], args.control_fetch[1], float(args.control_fetch[2]))
        return 0
    if args.control_watch:
        control_watch(args.control_watch[0], args.control_watch[1], args.control_watch[2],
                      float(args.control_watch[3]))
        return 0
    if args.table:
        table(args.table)
        return 0
    if not (args.scenario and args.web and args.load and args.link):
        ap.error("--scenario, --web, --load and --link are required")
    try:
        preflight(args)
        remove_stale()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, lambda s, f: sys.exit(128 + s))
        return run(args)
    except RuntimeError as e:
        print("FAIL -", e)
        return 1
    except SystemExit as e:
        # a skip still gets its row in the table
        if e.code == SKIP and args.out:
            name = os.path.basename(args.scenario).rsplit(".", 1)[0]
            tag = args.tag or "%s-%s" % (name, args.backend)
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, tag + ".summary.json"), "w") as f:
                json.dump({"tag": tag, "backend": args.backend, "scenario": name,
                           "skipped": SKIP_WHY[0] if SKIP_WHY else "skipped"}, f)
        raise


if __name__ == "__main__":
    sys.exit(main())
