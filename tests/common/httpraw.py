"""Raw HTTP/1.1 over a socket, for tests that need what http.client hides:
pipelining, half-sent requests, connections the server cuts."""


def read_response(s, buf=b"", is_head=False):
    """One response from socket s (needs Content-Length): (status, headers,
    body, rest), rest being whatever of the next response came with it."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed before a response header: %r" % buf)
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = 0 if is_head else int(headers.get("content-length", "0"))
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed mid-body")
        buf += chunk
    return status, headers, buf[:n], buf[n:]
