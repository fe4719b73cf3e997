"""Attacks on `art_lib.serve` from a hostile review, each reproduced against a real server on 127.0.0.1.

In-process servers (`make_server` in a thread, always shut down) for the request and connection
defects; a `python -m art_lib.serve` process for the `toy:` model names. Raw sockets where the attack
lives below what an HTTP client library would send. Every loop is bounded in count and time.
"""

from __future__ import annotations

import base64
import io
import json
import resource
import select
import socket
import time

import numpy as np
import pytest
from PIL import Image
from test_serve import _ask, _image, _post, _serving, served_process, varied_tiny_model

from art_lib.client import ChatClient
from art_lib.serve import ServerLimits

PATH = b"/v1/chat/completions"


@pytest.fixture(scope="module")
def tiny():
    return varied_tiny_model()


def _request(body: bytes, headers: bytes = b"") -> bytes:
    """A raw POST with `Content-Length` unless `headers` brings its own framing."""
    framing = b"" if b"Content-Length" in headers or b"Transfer-Encoding" in headers else b"Content-Length: %d\r\n"
    head = b"POST " + PATH + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + headers
    return head + (framing % len(body) if framing else b"") + b"\r\n" + body


def _read_response(sock: socket.socket, timeout: float = 30) -> tuple[int, dict]:
    """(status, JSON body) of one response read from `sock`; (0, {}) when closed with no answer."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100 "):  # an interim answer: the final one follows
        data = rest
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split()[1]), json.loads(rest[:length])


def _raw(addr, data: bytes, shut_write: bool = False, timeout: float = 30) -> tuple[int, dict]:
    with socket.create_connection(addr, timeout=timeout) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        return _read_response(sock, timeout)


def _openai_error(body: dict) -> dict:
    """The OpenAI error object of a 4xx answer (asserts its shape)."""
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["message"]
    return err


def _png_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


# --------------------------------------------------------------------------- S1: request-supplied templates


def test_s1_a_request_supplied_chat_template_is_refused_unless_the_operator_trusts_them(tiny):
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    with _serving(tiny) as addr:
        for body in (
            _ask("hi") | {"chat_template_kwargs": {"chat_template": loop}},
            _ask("hi") | {"chat_template": loop},
            _ask("hi") | {"chat_template_kwargs": {"tokenize": True}},  # apply_chat_template's own arguments
            _ask("hi") | {"chat_template_kwargs": {"enable_thinking": False, "tools": []}},
        ):
            t0 = time.monotonic()
            status, answer = _post(addr, body, timeout=20)
            assert status == 400 and time.monotonic() - t0 < 5
            assert _openai_error(answer)["param"] in ("chat_template", "chat_template_kwargs")
        assert (
            "--trust-request-chat-template" in _post(addr, _ask("hi") | {"chat_template": "x"})[1]["error"]["message"]
        )
        status, default = _post(addr, _ask("hi") | {"chat_template_kwargs": {"enable_thinking": False}})
        assert status == 200
    with _serving(tiny, limits=ServerLimits(trust_request_chat_template=True)) as addr:
        status, custom = _post(addr, _ask("hi") | {"chat_template": "{{ messages[0]['content'] }}"})
        assert status == 200 and custom["usage"]["prompt_tokens"] < default["usage"]["prompt_tokens"]


# --------------------------------------------------------------------------- S2: limits before buffering


def test_s2_the_api_key_is_checked_from_the_headers_before_the_body_is_read(tiny):
    with _serving(tiny, api_key="secret", limits=ServerLimits(timeout=5)) as addr:
        with socket.create_connection(addr, timeout=10) as sock:
            t0 = time.monotonic()  # declares 1 MB, sends none of it, with the wrong key
            sock.sendall(_request(b"", b"Authorization: Bearer wrong\r\nContent-Length: 1000000\r\n"))
            status, answer = _read_response(sock, timeout=10)
            assert status == 401 and time.monotonic() - t0 < 2 and _openai_error(answer)["code"] == 401
        with socket.create_connection(addr, timeout=10) as sock:  # `Expect: 100-continue`: no 100 before the 401
            sock.sendall(_request(b"", b"Expect: 100-continue\r\nContent-Length: 1000000\r\n"))
            assert sock.recv(100).startswith(b"HTTP/1.1 401")


def test_s2_a_body_is_read_only_inside_a_request_slot(tiny):
    with _serving(tiny, limits=ServerLimits(max_concurrency=1, timeout=5)) as addr:
        with socket.create_connection(addr, timeout=10) as slow:  # 10 of 1000 bytes, then stalls
            slow.sendall(_request(b"", b"Content-Length: 1000\r\n") + b'{"messages"')
            time.sleep(0.5)
            t0 = time.monotonic()
            status, answer = _post(addr, _ask("hi"), timeout=10)
            assert status == 503 and time.monotonic() - t0 < 2 and _openai_error(answer)["type"] == "server_busy"
        time.sleep(0.5)  # the stalled body is abandoned: its slot is free again
        assert _post(addr, _ask("hi"))[0] == 200


def test_s2_connections_past_the_bound_are_answered_503_at_once(tiny):
    with _serving(tiny, limits=ServerLimits(max_connections=3, timeout=3)) as addr:
        held = [socket.create_connection(addr, timeout=10) for _ in range(3)]
        try:
            for sock in held:
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHo")  # slow headers
            time.sleep(0.3)
            t0 = time.monotonic()
            status, answer = _raw(addr, _request(json.dumps(_ask("hi")).encode()), timeout=10)
            assert status == 503 and time.monotonic() - t0 < 2 and _openai_error(answer)
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.5)
        assert _post(addr, _ask("hi"))[0] == 200


def test_s2_a_header_dripped_byte_by_byte_is_cut_at_the_timeout(tiny):
    with _serving(tiny, limits=ServerLimits(timeout=1.5)) as addr:
        with socket.create_connection(addr, timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nX-Slow: ")
            t0, closed_after = time.monotonic(), None
            while time.monotonic() - t0 < 8 and closed_after is None:  # one byte per 0.2 s, under the timeout
                if select.select([sock], [], [], 0.2)[0]:
                    closed_after = time.monotonic() - t0  # an answer or the close: the server let go
                    break
                try:
                    sock.send(b"a")
                except OSError:
                    closed_after = time.monotonic() - t0
            assert closed_after is not None and closed_after < 3.5


# --------------------------------------------------------------------------- S3: fields are honoured or refused


def test_s3_stop_strings_end_the_completion(tiny):
    with _serving(tiny) as addr:
        status, free = _post(addr, _ask("Which task?", max_tokens=16))
        text = free["choices"][0]["message"]["content"]
        assert status == 200 and len(text) >= 4, text
        stop = text[len(text) // 2 : len(text) // 2 + 2]
        status, stopped = _post(addr, _ask("Which task?", max_tokens=16) | {"stop": [stop, "\x00never"]})
        choice = stopped["choices"][0]
        assert status == 200 and choice["message"]["content"] == text[: text.index(stop)]
        assert choice["finish_reason"] == "stop"
        assert stopped["usage"]["completion_tokens"] <= free["usage"]["completion_tokens"]
        for bad in ([""], ["a"] * 5, [1], {"a": 1}):
            status, answer = _post(addr, _ask("hi") | {"stop": bad})
            assert status == 400 and _openai_error(answer)["param"] == "stop"


def test_s3_model_logprobs_and_unknown_fields_are_not_silently_ignored(tiny):
    with _serving(tiny) as addr:
        status, answer = _post(addr, _ask("hi") | {"model": "gpt-4o"})
        assert status == 404 and _openai_error(answer)["param"] == "model" and "gpt-4o" in answer["error"]["message"]
        for field, value in (("logprobs", True), ("top_logprobs", 2), ("frobnicate", 1), ("presence_penalty", 0.5)):
            status, answer = _post(addr, _ask("hi") | {field: value})
            assert status == 400 and _openai_error(answer)["param"] == field
        # Neutral values of fields this server does not implement are what it does anyway.
        neutral = {"logprobs": False, "presence_penalty": 0, "frequency_penalty": 0.0, "n": 1, "stream": False}
        assert _post(addr, _ask("hi") | neutral)[0] == 200
        body = _ask("hi")
        del body["model"]  # optional, as in vLLM
        assert _post(addr, body)[0] == 200


# --------------------------------------------------------------------------- S4: evaluation's image rule


def test_s4_a_16_bit_png_is_refused_as_evaluation_refuses_it(tiny):
    deep = Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16))
    with _serving(tiny) as addr:
        status, answer = _post(addr, _ask(_image(_png_url(deep))))
        assert status == 400 and "16-bit" in _openai_error(answer)["message"]
        assert _post(addr, _ask(_image(_png_url(Image.new("RGBA", (64, 64), (9, 9, 9, 0))))))[0] == 200


# --------------------------------------------------------------------------- S5: every sampling field validated


def test_s5_malformed_json_and_out_of_range_sampling_fields_are_400(tiny):
    ask = json.dumps(_ask("hi"))[:-1]  # the object without its closing brace, to append raw JSON fields
    bodies = {
        "deep nesting": b"[" * 100000,
        "temperature Infinity": (ask + ', "temperature": Infinity}').encode(),
        "temperature 1e308": (ask + ', "temperature": 1e308}').encode(),
        "temperature string": (ask + ', "temperature": "0.5"}').encode(),
        "seed Infinity": (ask + ', "seed": Infinity}').encode(),
        "seed float": (ask + ', "seed": 1.5}').encode(),
        "seed bool": (ask + ', "seed": true}').encode(),
        "top_p NaN": (ask + ', "top_p": NaN}').encode(),
        "top_p 2": (ask + ', "top_p": 2}').encode(),
        "top_p 0": (ask + ', "top_p": 0}').encode(),
        "max_tokens float": (ask + ', "max_tokens": 2.5}').encode(),
        "not UTF-8": b'{"messages": "\xff"}',
        "not an object": b"[1]",
    }
    with _serving(tiny) as addr:
        answers = {name: _post(addr, raw) for name, raw in bodies.items()}
        assert _post(addr, _ask("still serving") | {"temperature": 0.7, "top_p": 0.9, "seed": 2**40})[0] == 200
    assert {name: status for name, (status, _) in answers.items()} == dict.fromkeys(bodies, 400)
    for _, answer in answers.values():
        _openai_error(answer)
    assert answers["temperature 1e308"][1]["error"]["param"] == "temperature"


# --------------------------------------------------------------------------- S6, S7, S8: framing


def test_s6_an_unparseable_or_huge_content_length_is_answered_not_dropped(tiny):
    with _serving(tiny) as addr:
        status, answer = _raw(addr, _request(b"{}", b"Content-Length: \xb2\r\n"))
        assert status == 400 and "Content-Length" in _openai_error(answer)["message"]
        status, answer = _raw(addr, _request(b"{}", b"Content-Length: " + b"9" * 5000 + b"\r\n"))
        assert status == 413 and _openai_error(answer)
        status, answer = _raw(addr, _request(b"{}", b"Content-Length: 2\r\nContent-Length: 3\r\n"))
        assert status == 400 and _openai_error(answer)
        assert _post(addr, _ask("still serving"))[0] == 200


def test_s7_a_client_that_half_closes_after_its_request_gets_its_answer(tiny):
    with _serving(tiny) as addr:
        status, answer = _raw(addr, _request(json.dumps(_ask("hi", max_tokens=4)).encode()), shut_write=True)
        assert status == 200 and answer["choices"][0]["message"]["role"] == "assistant"


def test_s8_chunked_bodies_are_decoded_under_the_same_limit(tiny):
    raw = json.dumps(_ask("hi")).encode()
    chunked = b"%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\n\r\n" % (10, raw[:10], len(raw) - 10, raw[10:])
    te = b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
    with _serving(tiny, limits=ServerLimits(max_body_bytes=4096)) as addr:
        with socket.create_connection(addr, timeout=30) as sock:
            sock.sendall(_request(chunked, te))
            status, answer = _read_response(sock)
            assert status == 200 and answer["object"] == "chat.completion"
            assert sock.recv(100) == b""  # nothing after it: the chunks were not read as a second request
        big = b"%x\r\n%s\r\n0\r\n\r\n" % (5000, b" " * 5000)
        assert _raw(addr, _request(big, te))[0] == 413
        assert _raw(addr, _request(b"0\r\n\r\n", b"Transfer-Encoding: gzip, chunked\r\n"))[0] == 501
        assert _raw(addr, _request(chunked, te + b"Content-Length: 5\r\n"))[0] == 400
        assert _raw(addr, _request(b"zz\r\n", te))[0] == 400
        with socket.create_connection(addr, timeout=30) as sock:  # a GET's body is never read as a next request
            smuggled = b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
            assert _read_response(sock)[0] == 200 and sock.recv(100) == b""


# --------------------------------------------------------------------------- S9: local image files


def test_s9_a_huge_local_image_is_refused_from_its_size_before_it_is_read(tiny, tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(768 * 2**20)  # sparse: no disk used, but 768 MiB if read
    with _serving(tiny, limits=ServerLimits(image_root=str(tmp_path), max_body_bytes=2**20)) as addr:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.monotonic()
        status, answer = _post(addr, _ask(_image("big.png")))
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_kib) / 1024
    assert status == 400 and "larger than" in _openai_error(answer)["message"]
    assert grown_mib < 100 and time.monotonic() - t0 < 5


# --------------------------------------------------------------------------- issue 28: toy: model names


def test_serve_takes_a_toy_model_name(tmp_path):
    with served_process("toy:base", tmp_path / "server.log") as url:
        client = ChatClient(url, "toy:base", timeout=60)
        assert client.models() == ["toy:base"]
        answer = client.complete([{"role": "user", "content": "hi"}], max_tokens=4)
        assert answer["model"] == "toy:base" and answer["usage"]["completion_tokens"] <= 4


def test_errors_raised_by_the_http_layer_are_json_openai_errors_too(tiny):
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(101))  # http.server refuses more than 100 headers
    with _serving(tiny) as addr:
        status, answer = _raw(addr, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert status == 431 and _openai_error(answer)["code"] == 431
        big = b"X-A: " + b"a" * 40000 + b"\r\nX-B: " + b"b" * 40000 + b"\r\n"  # 2 headers, 80 kB in all
        status, answer = _raw(addr, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
        assert status == 431 and "headers larger than" in _openai_error(answer)["message"]
        status, answer = _raw(addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 404 and _openai_error(answer)
