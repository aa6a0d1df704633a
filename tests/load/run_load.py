#!/usr/bin/env python3
"""Integration test: slotnet-load against slotnet-web on a free loopback port.

Starts slotnet-web over the repository's www/ and a temporary SD folder,
runs one scenario with slotnet-load, and asserts on the tool's exit status
and its JSON report; then stops the server with SIGINT and asserts that it
exits with status 0.

With --daemon, slotnetd runs first on a UNIX socket in the temporary
folder and slotnet-web runs on it with --link: the same expectations hold,
and the server's /status and the tool's report must show the link's round
trips.

With --lwip, slotnet-web runs on the lwIP backend (--backend lwip) on the
TAP and address that tests/lwip/lwip_ns.sh exports (SN_LWIP_TAP,
SN_LWIP_ADDR), and the load goes to that address from the kernel side of
the same namespace: the same expectations hold, and /status must say
backend lwip.

Exit status: 0 pass, 1 fail, 77 skipped (a binary or a server option this
test needs is missing).
"""
import argparse
import json
import os
import urllib.request
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, sd, log):
    """Starts slotnet-web; another process may take the port between
    free_port() and the server's bind, so a few tries."""
    for _ in range(3):
        port = free_port()
        cmd = [args.web, "--listen", f"127.0.0.1:{port}", "--slots", "8",
               "--root", args.www, "--sd", sd] + args.server_arg
        if args.lwip:  # the port on lwIP's own address (its port space is its own)
            cmd += ["--backend", "lwip", "--tap", args.lwip_tap, "--addr", args.lwip_addr]
        log.seek(0)
        log.truncate()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            log.flush()
            with open(log.name) as f:
                if "serving" in f.read():
                    return proc, port
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return None, None


def start_daemon(args, tmp, log):
    """Starts slotnetd on a socket in tmp; returns (process, link target)."""
    sock = os.path.join(tmp, "slotnetd.sock")
    cmd = [args.daemon, "--link", f"unix:{sock}", "--slots", "8"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(sock):
            return proc, f"unix:{sock}"
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    return None, None


def stop(proc, name, check):
    """SIGINT, then an exit status 0 within 10 s."""
    alive = proc.poll() is None
    check(f"{name} still running after the load", alive)
    if not alive:
        return
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
        check(f"{name} stopped within 10 s of SIGINT", False)
    check(f"{name} exit status 0 after SIGINT (got {code})", code == 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--web", required=True, help="slotnet-web binary")
    ap.add_argument("--load", required=True, help="slotnet-load binary")
    ap.add_argument("--www", required=True, help="the status page's folder")
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--expect-upload", action="store_true",
                    help="the scenario uploads: assert the CRC was verified")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="one more slotnet-web option (repeatable)")
    ap.add_argument("--daemon", help="slotnetd binary: run slotnet-web on it with --link")
    ap.add_argument("--lwip", action="store_true",
                    help="slotnet-web on the lwIP backend, on the TAP and address in "
                         "SN_LWIP_TAP and SN_LWIP_ADDR (tests/lwip/lwip_ns.sh sets them)")
    args = ap.parse_args()
    host = "127.0.0.1"
    if args.lwip:
        args.lwip_tap = os.environ.get("SN_LWIP_TAP")
        args.lwip_addr = os.environ.get("SN_LWIP_ADDR")
        if not args.lwip_tap or not args.lwip_addr or args.daemon:
            print("usage: --lwip runs under tests/lwip/lwip_ns.sh (SN_LWIP_TAP, SN_LWIP_ADDR), "
                  "without --daemon")
            return 2
        host = args.lwip_addr.split("/")[0]

    for b in (args.web, args.load) + ((args.daemon,) if args.daemon else ()):
        if not os.access(b, os.X_OK):
            print(f"SKIP: {b} not built")
            return 77
    helptext = subprocess.run([args.web, "--help"], capture_output=True, text=True).stdout
    if "--sd" not in helptext:
        print("SKIP: slotnet-web has no --sd (no rr_ API yet)")
        return 77
    if args.daemon and "--link" not in helptext:
        print("SKIP: slotnet-web has no --link")
        return 77
    if args.lwip and "--backend" not in helptext:
        print("SKIP: slotnet-web has no --backend")
        return 77

    fails = []

    def check(what, ok):
        print(("ok   - " if ok else "FAIL - ") + what)
        if not ok:
            fails.append(what)

    with tempfile.TemporaryDirectory(prefix="slotnet-load-") as tmp:
        sd = os.path.join(tmp, "sd")
        os.mkdir(sd)
        report = os.path.join(tmp, "report.json")
        text_report = os.path.join(tmp, "report.txt")
        daemon = None
        dlog = open(os.path.join(tmp, "daemon.log"), "w+")
        if args.daemon:
            daemon, target = start_daemon(args, tmp, dlog)
            if daemon is None:
                print("FAIL - slotnetd did not start")
                print(open(dlog.name).read())
                return 1
            print(f"# slotnetd pid {daemon.pid} on {target}")
            args.server_arg = args.server_arg + ["--link", target]
        with open(os.path.join(tmp, "server.log"), "w+") as log:
            server, port = start_server(args, sd, log)
            if server is None:
                print("FAIL - slotnet-web did not start")
                print(open(log.name).read())
                if daemon is not None:
                    daemon.kill()
                    daemon.wait()
                return 1
            print(f"# slotnet-web pid {server.pid} on {host}:{port}")
            try:
                # The tool bounds itself (duration + drain + grace); the
                # timeout here only guards against a bug in it.
                limit = args.duration + 60
                run = subprocess.run(
                    [args.load, "--scenario", args.scenario,
                     "--target", f"{host}:{port}", "--duration", str(args.duration),
                     "--json", report],
                    timeout=limit, stdout=subprocess.PIPE, text=True)
                rc = run.returncode
                print(run.stdout, end="")
                with open(text_report, "w") as f:
                    f.write(run.stdout)
            except subprocess.TimeoutExpired:
                rc = None
            check(f"slotnet-load finished by itself (exit status {rc})", rc is not None)
            check("every expectation of the scenario met (exit status 0)", rc == 0)

            try:
                with open(report) as f:
                    r = json.load(f)
            except (OSError, ValueError) as e:
                r = None
                check(f"JSON report readable ({e})", False)
            if r is not None:
                check(f"zero failed polls (got {r['requests']['failed_polls']})",
                      r["requests"]["failed_polls"] == 0)
                check("polls were made", r["requests"]["ok"] > 0)
                srv = r["server"]
                check("the server's /status answered", srv["status_available"] is True)
                check(f"every slot free at the end (slots at the end: {srv.get('slots_at_end')})",
                      srv["slots_free_at_end"] is True)
                check(f"the server's longest loop turn reported ({srv.get('longest_turn_us')} us)",
                      isinstance(srv.get("longest_turn_us"), (int, float)))
                if args.expect_upload:
                    up = r["upload"] or {}
                    check(f"upload CRC verified ({up.get('verified', 0)} verified, "
                          f"{up.get('crc_mismatch', 0)} mismatched, {up.get('failed', 0)} failed)",
                          up.get("crc_verified") is True)
                if args.daemon:
                    link = srv.get("link") or {}
                    check(f"the report shows the link's round trips ({link})",
                          all(isinstance(link.get(k), (int, float)) and link[k] > 0
                              for k in ("rtt_p50_us", "rtt_p99_us", "rtt_max_us")))
                    check("the text report has the link round trip line",
                          "link round trip p50" in open(text_report).read())
                elif r is not None:
                    check("no link figures for an in-process server",
                          r["server"].get("link") is None)

            if args.daemon and server.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status",
                                                timeout=5) as resp:
                        st = json.load(resp)
                except (OSError, ValueError) as e:
                    st = {}
                    check(f"/status readable ({e})", False)
                link = st.get("link") or {}
                check(f"/status says mode link (got {st.get('mode')})", st.get("mode") == "link")
                check("/status has the link object with its figures",
                      all(isinstance(link.get(k), (int, float)) for k in
                          ("requests", "timeouts", "resends", "rtt_p50_us", "rtt_p99_us",
                           "rtt_max_us", "attention")))
                check(f"/status link: requests made, none failed ({link.get('requests')} "
                      f"requests, {link.get('failed')} failed)",
                      link.get("requests", 0) > 0 and link.get("failed") == 0)
                check(f"/status link: attention bytes seen ({link.get('attention')})",
                      link.get("attention", 0) > 0)
                check(f"/status shows the daemon's {len(st.get('slots', []))} slots",
                      len(st.get("slots", [])) == 8)

            if args.lwip and server.poll() is None:
                direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with direct.open(f"http://{host}:{port}/status", timeout=5) as resp:
                        st = json.load(resp)
                except (OSError, ValueError) as e:
                    st = {}
                    check(f"/status readable ({e})", False)
                check(f"/status says backend lwip (got {st.get('backend')})",
                      st.get("backend") == "lwip")

            stop(server, "slotnet-web", check)
            if daemon is not None:
                stop(daemon, "slotnetd", check)
            if fails:
                log.flush()
                print("# server log:")
                print(open(log.name).read())
                if daemon is not None:
                    dlog.flush()
                    print("# slotnetd log:")
                    print(open(dlog.name).read())
        dlog.close()
    if fails:
        print(f"{len(fails)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
