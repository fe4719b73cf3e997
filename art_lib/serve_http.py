"""The connection side of `art_lib.serve`: reading a request's bytes within limits, and knowing when its client left.

* `DeadlineReader`: every read of a request's headers (then of its body) shares one deadline, so a
  client dripping one byte at a time cannot hold a thread past `ServerLimits.timeout` (slowloris).
* `body_length` / `read_body`: the body's framing is decided from the headers alone (a malformed or
  duplicated `Content-Length`: 400; past the limit: 413; `Transfer-Encoding: chunked` decoded under
  the same limit; other transfer codings: 501), so nothing is buffered before it is known to fit.
* `PeerWatch`: a client that half-closes after its request (shuts its write side) still gets its
  answer; one that closed the connection stops the generation.
* `linger_close` / `refuse_connection`: an answer sent without reading the request's body (401, 413,
  503) is followed by a bounded drain, so the client reads the answer instead of a connection reset.
"""

from __future__ import annotations

import io
import json
import re
import select
import socket
import time
from email.message import Message

from .serve_request import RequestError, error_payload

__all__ = ["DeadlineReader", "body_length", "read_body", "PeerWatch", "linger_close", "refuse_connection"]

CHUNKED = -1  # `body_length` of a chunked body
MAX_HEADER_BYTES = 64 * 2**10  # a request line and header block (http.server alone allows 100 x 64 KiB)


class DeadlineReader(io.RawIOBase):
    """Socket reads against one deadline (`arm(seconds)` sets it): past it, reads raise `TimeoutError`.

    `eof` records that the client's input ended (a request whose header block ends there was cut short);
    past `arm`'s `max_bytes` reads end too, with `over` set.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.deadline, self.eof, self.over, self.left = sock, time.monotonic(), False, False, None

    def arm(self, seconds: float, max_bytes: int | None = None) -> None:
        self.deadline, self.left = time.monotonic() + seconds, max_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not received in time")
        if self.left is not None and self.left <= 0:
            self.over = True
            return 0
        self.sock.settimeout(left)  # each recv waits at most what is left of the whole read
        view = memoryview(buffer)
        n = self.sock.recv_into(view if self.left is None else view[: self.left])
        self.eof = self.eof or n == 0
        self.left = None if self.left is None else self.left - n
        return n


def body_length(headers: Message, limit: int) -> int:
    """The body's size from the headers (`CHUNKED` for a chunked body); malformed or too big: `RequestError`."""
    codings = [c.strip().lower() for value in headers.get_all("Transfer-Encoding") or [] for c in value.split(",")]
    lengths = headers.get_all("Content-Length") or []
    if codings:
        if lengths:  # both framings: the classic request-smuggling ambiguity
            raise RequestError("a request may not carry both Transfer-Encoding and Content-Length")
        if codings != ["chunked"]:
            raise RequestError(f"Transfer-Encoding {', '.join(codings)!r} is not supported; send chunked", 501)
        return CHUNKED
    if not lengths:
        return 0
    value = lengths[0].strip()
    if len(lengths) > 1 or not re.fullmatch(r"[0-9]+", value, re.ASCII):
        raise RequestError(f"invalid Content-Length {', '.join(lengths)[:40]!r}: one decimal number expected")
    if len(value) > 18 or int(value) > limit:
        raise RequestError(
            f"request body of {value[:20]}{'...' if len(value) > 20 else ''} bytes is larger than this server's "
            f"limit of {limit}",
            413,
        )
    return int(value)


def read_body(rfile, length: int, limit: int) -> bytes:
    """The body of `length` bytes, or the decoded chunks of a chunked one (at most `limit` bytes in all)."""
    if length != CHUNKED:
        raw = rfile.read(length)
        if len(raw) < length:
            raise RequestError("request body shorter than its Content-Length")
        return raw
    parts, total = [], 0
    while True:
        line = rfile.readline(1024)
        size = re.fullmatch(rb"([0-9A-Fa-f]{1,8})[ \t]*(;[^\r\n]*)?\r?\n", line)
        if size is None:
            raise RequestError(f"invalid chunk size line {line[:40]!r}")
        n = int(size.group(1), 16)
        if n == 0:
            break
        total += n
        if total > limit:
            raise RequestError(f"chunked request body is larger than this server's limit of {limit} bytes", 413)
        data = rfile.read(n)
        if len(data) < n or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise RequestError("chunked request body cut short or a chunk not followed by CRLF")
        parts.append(data)
    for _ in range(64):  # trailer fields, ignored; an empty line ends the body
        line = rfile.readline(8192)
        if line in (b"\r\n", b"\n"):
            return b"".join(parts)
        if not line.endswith(b"\n"):
            break
    raise RequestError("chunked request body without its final empty line")


class PeerWatch:
    """Whether the client of a request in progress has gone.

    End of input alone does not tell: a client that closed and one that only shut its write side
    (half-close, still reading) look alike. At the first end of input an HTTP/1.1 client is sent an
    interim `100 Continue` (which HTTP/1.1 clients must skip before the final answer): a closed socket
    answers it with a reset, which the next look reads as a socket error (reads still say end of
    input). HTTP/1.0 gets no interim answers, so there end of input means gone.
    """

    def __init__(self, sock: socket.socket, http11: bool) -> None:
        self.sock, self.http11, self.probed, self.reset = sock, http11, False, False

    def gone(self) -> bool:
        if self.probed:  # SO_ERROR is cleared once read: remember it
            self.reset = self.reset or self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0
            return self.reset
        try:
            if not select.select([self.sock], [], [], 0)[0]:
                return False
            if self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b"":
                return False  # a pipelined next request, not an end
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True
        if not self.http11:
            return True
        self.probed = True
        try:
            self.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n", socket.MSG_DONTWAIT)
        except OSError:
            self.reset = True
        return self.reset


def linger_close(sock: socket.socket, seconds: float = 2.0, max_bytes: int = 2**26) -> None:
    """Send our side's end, then read and drop what the client still sends (bounded), so it reads our answer."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline, drained = time.monotonic() + seconds, 0
        while drained < max_bytes and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                return
            drained += len(data)
    except OSError:
        pass


def refuse_connection(sock: socket.socket, max_connections: int) -> None:
    """Answer a connection past `max_connections` with 503 without reading its request, then close it."""
    body = json.dumps(
        error_payload(503, f"server busy: {max_connections} connections open; retry later", "server_busy")
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    try:
        sock.settimeout(2.0)
        sock.sendall(head.encode() + body)
        linger_close(sock, seconds=1.0)
    except OSError:
        pass
    finally:
        sock.close()
