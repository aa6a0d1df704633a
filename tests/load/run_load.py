#!/usr/bin/env python3
"""Integration test: slotnet-load against slotnet-web on a free loopback port.

Starts slotnet-web over the repository's www/ and a temporary SD folder,
runs one scenario with slotnet-load, and asserts on the tool's exit status
and its JSON report; then stops the server with SIGINT and asserts that it
exits with status 0.

Exit status: 0 pass, 1 fail, 77 skipped (a binary or a server option this
test needs is missing).
"""
import argparse
import json
import os
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
    args = ap.parse_args()

    for b in (args.web, args.load):
        if not os.access(b, os.X_OK):
            print(f"SKIP: {b} not built")
            return 77
    helptext = subprocess.run([args.web, "--help"], capture_output=True, text=True).stdout
    if "--sd" not in helptext:
        print("SKIP: slotnet-web has no --sd (no rr_ API yet)")
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
        with open(os.path.join(tmp, "server.log"), "w+") as log:
            server, port = start_server(args, sd, log)
            if server is None:
                print("FAIL - slotnet-web did not start")
                print(open(log.name).read())
                return 1
            print(f"# slotnet-web pid {server.pid} on 127.0.0.1:{port}")
            try:
                # The tool bounds itself (duration + drain + grace); the
                # timeout here only guards against a bug in it.
                limit = args.duration + 60
                run = subprocess.run(
                    [args.load, "--scenario", args.scenario,
                     "--target", f"127.0.0.1:{port}", "--duration", str(args.duration),
                     "--json", report],
                    timeout=limit)
                rc = run.returncode
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

            alive = server.poll() is None
            check("slotnet-web still running after the load", alive)
            if alive:
                server.send_signal(signal.SIGINT)
                try:
                    code = server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    code = server.wait()
                    check("slotnet-web stopped within 10 s of SIGINT", False)
                check(f"slotnet-web exit status 0 after SIGINT (got {code})", code == 0)
            if fails:
                log.flush()
                print("# server log:")
                print(open(log.name).read())
    if fails:
        print(f"{len(fails)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
