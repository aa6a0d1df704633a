#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Deterministic: running it again gives the same files. Each file starts with
the harness's control bytes (see the comment at the top of each harness).
Run from anywhere: python3 fuzz/make-corpus.py
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- fuzz_link_decoder: frames of docs/link-protocol.md ------------------

SYNC0, SYNC_REQ, SYNC_REP, VERSION = 0xA5, 0x3C, 0xC3, 1
CMDS = {"null": 0, "abort": 1, "close": 2, "create": 3, "read": 4, "write": 5,
        "status": 6, "listen": 7, "net_status": 9, "diag": 32, "stats": 33}


def crc_frame(body):
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def request(cmd, slot=0xFF, flags=0, space=0, param=0, data=b"", version=VERSION, length=None,
            seq=0):
    """Header byte 3: flags in bits 0-1, seq (0..63) in bits 2-7."""
    n = len(data) if length is None else length
    hdr = struct.pack("<BBBBHHI", version, cmd, slot, (flags & 3) | (seq << 2), n, space, param)
    return crc_frame(bytes([SYNC0, SYNC_REQ]) + hdr + data)


def reply(cmd, slot=0xFF, status=1, response=0, data=b"", version=VERSION, reserved=0,
          length=None, seq=0):
    """Header byte 10: seq echoed; byte 11 reserved."""
    n = len(data) if length is None else length
    hdr = struct.pack("<BBBBiHBB", version, status, cmd, slot, response, n, seq, reserved)
    return crc_frame(bytes([SYNC0, SYNC_REP]) + hdr + data)


def args(addr, port, proto=0, max_conns=0):
    return bytes(addr) + struct.pack("<HBB", port, proto, max_conns)


ATTENTION = b"\x21"


def slot_status(state=2, slot=0):
    """20 bytes: the seed's layout."""
    return struct.pack("<BBBbHH4sHHHH", state, slot, 6, 0, 80, 50000, bytes([10, 1, 0, 1]),
                       1200, 5840, 0x1, 0x0)


def net_status(slots=8, reserved=0):
    """20 bytes, then a u32 handle per slot."""
    head = struct.pack("<BBHHHHHHHHH", slots, reserved, 2048, 1, 4, 0x3, 0x1, 0x2, 0x1, 0x1, 0)
    return head + b"".join(struct.pack("<I", (g << 8) | i if i < 2 else 0)
                           for i, g in zip(range(slots), range(1, slots + 1)))


def stats():
    return b"".join(struct.pack("<I", i * 3) for i in range(34))


def link_seeds():
    s = {}
    # Every command, both directions, with the data each carries.
    s["req_null"] = request(CMDS["null"])
    s["req_abort"] = request(CMDS["abort"], slot=2, param=0x0302)
    s["req_close"] = request(CMDS["close"], slot=1, param=0)
    s["req_create"] = request(CMDS["create"], param=30000, data=args([127, 0, 0, 1], 8080))
    s["req_read"] = request(CMDS["read"], slot=0, space=2048, param=0x100)
    s["req_write"] = request(CMDS["write"], slot=0, flags=0x03, param=0x100,
                             data=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s["req_write_max"] = request(CMDS["write"], slot=3, flags=0x02, data=bytes(range(256)) * 8)
    s["req_status"] = request(CMDS["status"], slot=0, space=28)
    s["req_listen"] = request(CMDS["listen"], param=0, data=args([0, 0, 0, 0], 80, 1, 4))
    s["req_listen_stop"] = request(CMDS["listen"], data=args([0, 0, 0, 0], 80, 1, 0))
    s["req_net_status"] = request(CMDS["net_status"], space=20)
    s["req_diag"] = request(CMDS["diag"], space=512, param=100)
    s["req_stats"] = request(CMDS["stats"], space=136)
    s["req_unknown8"] = request(8)
    s["req_unknown99"] = request(99, slot=7, data=b"\x01\x02")
    s["rep_null"] = reply(CMDS["null"])
    s["rep_abort"] = reply(CMDS["abort"], slot=2)
    s["rep_close"] = reply(CMDS["close"], slot=1, status=3)
    s["rep_create"] = reply(CMDS["create"], slot=4, response=4, data=struct.pack("<I", 0x504))
    s["rep_create_busy"] = reply(CMDS["create"], response=-8)
    s["rep_read"] = reply(CMDS["read"], slot=0, status=3, response=17, data=b"HTTP/1.1 200 OK\r\n")
    s["rep_read_closed"] = reply(CMDS["read"], slot=0, response=-12)
    s["rep_write"] = reply(CMDS["write"], slot=0, response=27)
    s["rep_status"] = reply(CMDS["status"], slot=0, data=slot_status())
    s["rep_status_free"] = reply(CMDS["status"], slot=5, data=slot_status(0, 5))
    s["rep_status_bad_state"] = reply(CMDS["status"], slot=5, data=slot_status(6, 5))
    s["rep_listen"] = reply(CMDS["listen"])
    s["rep_net_status"] = reply(CMDS["net_status"], data=net_status())
    s["rep_net_status_1"] = reply(CMDS["net_status"], data=net_status(1, reserved=7))
    s["rep_net_status_16"] = reply(CMDS["net_status"], data=net_status(16))
    s["rep_net_status_short"] = reply(CMDS["net_status"], data=net_status(4)[:-4])
    s["rep_net_status_17"] = reply(CMDS["net_status"], data=net_status(17))
    s["rep_stats"] = reply(CMDS["stats"], data=stats())
    s["rep_diag"] = reply(CMDS["diag"], response=300,
                          data=b"slot 0 connected proto 0 10.0.0.1:80 <- 10.1.0.1:50000\n")
    s["rep_unknown"] = reply(8, response=-1)
    s["rep_version"] = reply(0, response=-19)
    s["rep_reserved"] = reply(CMDS["write"], slot=0, response=5, reserved=0xEF)
    s["rep_seq_high_bits"] = reply(CMDS["write"], slot=0, response=5, seq=0xC5)
    s["req_seq"] = request(CMDS["read"], slot=1, space=512, param=0x201, seq=17)
    s["rep_seq"] = reply(CMDS["read"], slot=1, response=3, data=b"abc", seq=17)
    s["req_write_seq_max"] = request(CMDS["write"], slot=2, flags=3, data=b"x", seq=63)
    s["stream_resend"] = (request(CMDS["write"], slot=0, data=b"hello", seq=5) * 2 +
                          reply(CMDS["write"], slot=0, response=5, seq=5) * 2)
    for code in range(-22, 1):
        s["rep_err%d" % -code] = reply(CMDS["read"], slot=1, response=code)
    # Broken frames.
    good = request(CMDS["status"], slot=0, space=28)
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0xFF
    s["bad_crc"] = bytes(bad_crc)
    s["bad_version"] = request(CMDS["null"], version=2)
    s["bad_version0"] = reply(CMDS["null"], version=0)
    s["oversize_req"] = request(CMDS["write"], length=2049)[:14]
    s["oversize_rep"] = reply(CMDS["read"], length=0xFFFF)[:14]
    s["truncated"] = good[:-3]
    s["truncated_hdr"] = good[:9]
    s["sync_only"] = bytes([SYNC0, SYNC_REQ, SYNC0, SYNC_REP, SYNC0])
    s["garbage"] = bytes((i * 37 + 11) & 0xFF for i in range(200))
    s["zeros"] = bytes(64)
    s["a5s"] = bytes([SYNC0]) * 40
    # Streams: garbage around frames, a good frame behind a false start
    # (found again by the rescan), both directions interleaved (an echo).
    s["stream_mixed"] = (b"noise" + request(CMDS["null"]) + b"\xa5\x3c\x01" +
                         reply(CMDS["null"]) + request(CMDS["read"], slot=0, space=100) +
                         b"\xa5" + reply(CMDS["read"], slot=0, response=2, data=b"hi"))
    s["stream_false_start"] = bytes([SYNC0, SYNC_REQ, VERSION, 0, 0, 0, 0x10]) + good
    s["stream_cut_then_good"] = good[:10] + good
    s["stream_oversize_then_good"] = request(CMDS["write"], length=4000)[:14] + good
    s["stream_bad_crc_then_good"] = bytes(bad_crc) + good + good
    s["stream_many"] = b"".join(request(c, slot=0, space=28) for c in CMDS.values())
    s["stream_replies"] = b"".join(reply(c, slot=1, response=-c) for c in CMDS.values())
    s["stream_echo"] = b"".join(request(c) + reply(c) for c in (0, 4, 6, 9))
    s["stream_attention"] = (reply(CMDS["net_status"], data=net_status(2)) + ATTENTION +
                             request(CMDS["net_status"], space=28) + ATTENTION + ATTENTION +
                             reply(CMDS["read"], slot=0, response=1, data=b"!"))
    inner = bytearray(request(CMDS["write"], slot=0, data=good))
    s["frame_in_frame"] = bytes(inner)
    inner[-1] ^= 1
    s["frame_in_bad_frame"] = bytes(inner)

    # Control bytes: accept mask (both/requests/replies), flushes, chunking.
    out = {}
    for name, data in s.items():
        out[name] = bytes([0x00, 0x00]) + data  # both kinds, one chunk
    variants = [(0x09, 0x01, "bytewise"), (0x15, 0x2A, "req_flush"), (0x22, 0x07, "rep_chunks"),
                (0xFB, 0x99, "chunks"), (0x7C, 0x5C, "flush_chunks")]
    for name in ("stream_mixed", "stream_false_start", "stream_cut_then_good",
                 "stream_bad_crc_then_good", "stream_echo", "frame_in_bad_frame",
                 "req_write_max", "truncated", "stream_attention"):
        for ctl, seed, tag in variants:
            out["%s_%s" % (name, tag)] = bytes([ctl, seed]) + s[name]
    return out


# ---- fuzz_http: requests to slotnet-web ----------------------------------

def http_get(path, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: printer\r\n%s\r\n" % (path, extra)).encode()


def upload(name, body, crc=True, extra="", time=None):
    q = "name=" + name
    if crc:
        q += "&crc32=%08x" % (zlib.crc32(body) & 0xFFFFFFFF)
    if time:
        q += "&time=" + time
    return ("POST /rr_upload?%s HTTP/1.1\r\nHost: printer\r\nContent-Length: %d\r\n%s\r\n"
            % (q, len(body), extra)).encode() + body


def http_seeds():
    g = "0%3A%2Fgcodes%2F"
    s = {}
    s["get_root"] = http_get("/")
    s["get_index"] = http_get("/index.html", "Connection: close\r\n")
    s["head_index"] = b"HEAD /index.html HTTP/1.1\r\nHost: printer\r\n\r\n"
    s["get_sub_redirect"] = http_get("/sub")
    s["get_sub_file"] = http_get("/sub/data.json")
    s["get_missing"] = http_get("/nope.txt")
    s["get_traversal"] = http_get("/../../etc/passwd")
    s["get_traversal_enc"] = http_get("/%2e%2e/%2e%2e/etc/passwd")
    s["get_symlink"] = http_get("/out/hostname")
    s["get_nul"] = http_get("/index.html%00.js")
    s["get_status"] = http_get("/status")
    s["http10"] = b"GET / HTTP/1.0\r\n\r\n"
    s["http10_keepalive"] = b"GET /app.js HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    s["options"] = b"OPTIONS /rr_model HTTP/1.1\r\nHost: printer\r\nOrigin: http://x\r\n\r\n"
    s["options_star"] = b"OPTIONS * HTTP/1.1\r\n\r\n"
    s["rr_connect"] = http_get("/rr_connect?password=&time=2024-01-02T03:04:05")
    s["rr_connect_key"] = http_get("/rr_connect?password=secret&sessionKey=yes")
    s["rr_connect_wrong"] = http_get("/rr_connect?password=wrong")
    s["rr_disconnect"] = http_get("/rr_connect?password=") + http_get("/rr_disconnect")
    s["rr_model"] = http_get("/rr_model?flags=d99fn")
    s["rr_model_key"] = http_get("/rr_model?key=move.axes%5B1%5D.letter&flags=d99vn")
    s["rr_model_keys"] = (http_get("/rr_model?key=seqs") + http_get("/rr_model?key=state&flags=f")
                          + http_get("/rr_model?key=network&flags=a2") +
                          http_get("/rr_model?key=volumes"))
    s["rr_model_bad"] = http_get("/rr_model?key=%zz")
    s["rr_gcode"] = (http_get("/rr_gcode?gcode=M115") + http_get("/rr_reply") +
                     http_get("/rr_gcode?gcode=M117%20%22hello%22") +
                     http_get("/rr_gcode?gcode=M550%20P%22fuzzer%22") + http_get("/rr_reply"))
    s["rr_gcode_many"] = http_get(
        "/rr_gcode?gcode=G28%0AM118%20S%22a%20%22%22b%22%22%22%0AM122%0AM999%0AT0%0AX1%0A"
        "M42%3B%20comment%0A%20%20G1%20X1") + http_get("/rr_reply")
    s["rr_gcode_bad"] = http_get("/rr_gcode?gcode=%") + http_get("/rr_gcode?gcode=" + "M1" * 600)
    body = b"; generated by fuzz\nG1 X1 Y2\n;LAYER:0\nG1 X2\n;LAYER:1\n" * 4
    s["rr_upload"] = upload(g + "new.gcode", body, time="2024-05-06T07:08:09")
    s["rr_upload_nocrc"] = upload(g + "sub%2Fdeeper%2Fnew.g", body, crc=False)
    s["rr_upload_badcrc"] = upload(g + "bad.g", body).replace(b"crc32=", b"crc32=0", 1)
    s["rr_upload_continue"] = upload(g + "cont.g", body, extra="Expect: 100-continue\r\n")
    s["rr_upload_replace"] = upload(g + "part.gcode", b"G1 X9\n")
    s["rr_upload_part"] = upload(g + "x.part", b"G1\n")
    s["rr_upload_short"] = upload(g + "short.g", body)[:-20]
    s["rr_upload_nolen"] = b"POST /rr_upload?name=0:/gcodes/a.g HTTP/1.1\r\nHost: p\r\n\r\nG1\n"
    s["rr_upload_chunked"] = (b"POST /rr_upload?name=0:/gcodes/c.g HTTP/1.1\r\nHost: p\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n3\r\nG1\n\r\n0\r\n\r\n")
    s["rr_upload_huge"] = (b"POST /rr_upload?name=0:/gcodes/h.g HTTP/1.1\r\n"
                           b"Content-Length: 99999999999\r\n\r\nG1\n")
    s["rr_upload_then_get"] = (upload(g + "then.g", b"G1 X1\n") + http_get("/rr_upload") +
                               http_get("/rr_download?name=" + g + "then.g") +
                               http_get("/rr_fileinfo?name=" + g + "then.g"))
    s["rr_upload_get"] = http_get("/rr_upload")
    s["rr_upload_newdir_short"] = upload(g + "n1%2Fn2%2Fn.g", body)[:-7]
    s["rr_upload_newdir_badcrc"] = upload(g + "n1%2Fn.g", body).replace(b"crc32=", b"crc32=1", 1)
    s["rr_upload_disconnect"] = (http_get("/rr_connect?password=") +
                                 upload(g + "d.g", body, extra="X-Session-Key: 0\r\n")[:-30] )
    s["rr_download_big"] = http_get("/rr_download?name=" + g + "big.gcode") + http_get(
        "/rr_fileinfo?name=" + g + "big.gcode")
    s["get_big"] = http_get("/big.txt") + b"HEAD /big.txt HTTP/1.1\r\n\r\n" + http_get("/big.txt")
    s["rr_download"] = http_get("/rr_download?name=" + g + "part.gcode")
    s["rr_download_symlink"] = http_get("/rr_download?name=" + g + "out.g")
    s["rr_download_traversal"] = http_get("/rr_download?name=0%3A%2F..%2F..%2Fetc%2Fpasswd")
    s["rr_filelist"] = http_get("/rr_filelist?dir=0%3A%2Fgcodes&first=0")
    s["rr_filelist_root"] = http_get("/rr_filelist?dir=0%3A%2F") + http_get(
        "/rr_filelist?dir=1%3A%2F") + http_get("/rr_filelist?dir=0%3A%2Fnone&first=3")
    s["rr_fileinfo"] = http_get("/rr_fileinfo?name=" + g + "part.gcode")
    s["rr_fileinfo_none"] = http_get("/rr_fileinfo")
    s["rr_mkdir_move_delete"] = (http_get("/rr_mkdir?dir=" + g + "d1") +
                                 http_get("/rr_move?old=" + g + "part.gcode&new=" + g + "d1%2Fp.g") +
                                 http_get("/rr_move?old=" + g + "d1%2Fp.g&new=0%3A%2Fsys%2Fconfig.g"
                                          "&deleteexisting=yes") +
                                 http_get("/rr_delete?name=" + g + "d1&recursive=yes") +
                                 http_get("/rr_delete?name=0%3A%2Fmacros%2Fhome.g"))
    s["rr_delete_dir"] = http_get("/rr_delete?name=" + g + "sub") + http_get(
        "/rr_delete?name=0%3A%2Fgcodes&recursive=yes")
    s["rr_session_key"] = http_get("/rr_model", "X-Session-Key: 12345\r\n") + http_get(
        "/rr_gcode?gcode=M115", "X-Session-Key: abc\r\n")
    s["rr_unknown"] = http_get("/rr_nope")
    s["rr_post_wrong"] = b"POST /rr_gcode?gcode=M115 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    s["pipelined"] = (http_get("/") + http_get("/status") + http_get("/rr_model?flags=d99fn") +
                      b"HEAD / HTTP/1.1\r\n\r\n" + http_get("/app.js"))
    s["pipelined_close"] = http_get("/style.css", "Connection: close\r\n") + http_get("/")
    s["pipelined_many"] = http_get("/rr_model?key=seqs") * 12
    s["post_root"] = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + http_get("/")
    s["delete_method"] = b"DELETE /index.html HTTP/1.1\r\n\r\n"
    s["unknown_method"] = b"BREW /pot HTTP/1.1\r\n\r\n"
    s["http2"] = b"GET / HTTP/2.0\r\n\r\n"
    s["no_version"] = b"GET /\r\n\r\n"
    s["bad_header"] = b"GET / HTTP/1.1\r\nHost printer\r\n\r\n"
    s["folded_header"] = b"GET / HTTP/1.1\r\nX-A: 1\r\n  2\r\nExpect:\r\n\r\n"
    s["upgrade"] = b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nxx"
    s["binary"] = bytes((i * 73 + 5) & 0xFF for i in range(300))
    s["crlf_only"] = b"\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    s["partial"] = b"GET /index.html HTTP/1.1\r\nHost: pri"
    s["long_url"] = http_get("/" + "a/" * 600)
    s["long_header"] = http_get("/", "X-Long: " + "x" * 3000 + "\r\n")
    s["absolute_uri"] = b"GET http://printer/index.html?x=1#f HTTP/1.1\r\n\r\n"
    s["connect_method"] = b"CONNECT printer:80 HTTP/1.1\r\n\r\n"

    # Control bytes: byte 0 segments/end/slow/password/long gaps, byte 1
    # seed, byte 2 a second client / one slot.
    out = {}
    for name, data in s.items():
        out[name] = bytes([0x00, 0x00, 0x00]) + data
    variants = [(0x03, 0x11, 0x00, "seg4"), (0x0F, 0x22, 0x00, "fin_now"),
                (0x17, 0x33, 0x00, "rst"), (0x1A, 0x44, 0x00, "silent"),
                (0x25, 0x55, 0x00, "slow"), (0x42, 0x66, 0x00, "password"),
                (0x87, 0x77, 0x00, "long_gaps"), (0x01, 0x88, 0x01, "two"),
                (0x02, 0x99, 0x03, "two_one_slot")]
    for name in ("get_root", "rr_upload", "rr_upload_continue", "pipelined", "rr_gcode",
                 "rr_connect_key", "partial", "rr_upload_then_get", "rr_mkdir_move_delete",
                 "rr_upload_newdir_short", "rr_upload_short", "get_big", "rr_download_big"):
        for b0, b1, b2, tag in variants:
            out["%s_%s" % (name, tag)] = bytes([b0, b1, b2]) + s[name]
    return out


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.unlink(os.path.join(d, f))
    total = 0
    for name, data in sorted(seeds.items()):
        assert len(data) < 4096, (target, name, len(data))
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)
        total += len(data)
    print("%s: %d files, %d bytes" % (target, len(seeds), total))


write("fuzz_link_decoder", link_seeds())
write("fuzz_http", http_seeds())
