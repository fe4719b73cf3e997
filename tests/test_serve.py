"""Tests of art_lib.client against a real `python -m art_lib.serve` process on loopback, and of the server."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
import torch

from art_lib.client import ChatClient, evaluate_server, image_data_url, openai_messages
from art_lib.data import load_benchmark
from art_lib.evaluate import evaluate
from art_lib.models import save_checkpoint, tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.rewards import completion_text
from art_lib.scoring import EvalResult, score_completions
from art_lib.serve import ServerLimits, make_server

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 180
FAST = dict(max_new_tokens=8, progress=False)


def varied_tiny_model():
    """The tiny random model with x4 weights: its greedy outputs then depend on prompt and image."""
    model, processor = tiny_model(seed=0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.mul_(4.0)
    return model, processor


@pytest.fixture(scope="module")
def tiny():
    return varied_tiny_model()


@pytest.fixture(scope="module")
def checkpoint(tiny, tmp_path_factory) -> Path:
    return save_checkpoint(*tiny, tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    return PixelPrompt.from_noise(256, seed=3).save_png(tmp_path_factory.mktemp("art") / "artwork.png")


@contextlib.contextmanager
def served_process(model: str, log: Path, *extra: str):
    """`python -m art_lib.serve --model MODEL` on 127.0.0.1, a free port picked by the OS; yields its /v1 URL.

    Always terminated afterwards (killed if it does not stop within 10 s)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "art_lib.serve", "--model", model, "--host", "127.0.0.1", "--port", "0"]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*cmd, "--threads", "1", *extra], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        url = None
        while url is None:
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+/v1)", log.read_text())
            if match:
                url = match.group(1)
            elif proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            elif time.monotonic() > deadline:
                pytest.fail(f"server not up after {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
            else:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with served_process(str(checkpoint), log, "--served-model-name", "tiny-art") as url:
        yield url


@pytest.fixture(scope="module")
def client(server) -> ChatClient:
    return ChatClient(server, "tiny-art", timeout=120)


def _gsm8k(n: int) -> list[dict]:
    return load_benchmark("gsm8k", source=DATA / "gsm8k", limit=n)


# --------------------------------------------------------------------------- against the real server


def test_served_answers_equal_in_process(tiny, client, png):
    model, processor = tiny
    examples = _gsm8k(3)
    served = evaluate_server(client, examples, "gsm8k", image=png, max_tokens=8, progress=False)
    local = evaluate(model, processor, examples, image=png, benchmark="gsm8k", **FAST)
    assert isinstance(served, EvalResult) and served.n == 3
    assert list(served.rows["completion"]) == list(local.rows["completion"])
    assert list(served.rows["completion_tokens"]) == list(local.rows["completion_tokens"])
    assert list(served.rows["finish_reason"]) == list(local.rows["finish_reason"])
    assert (served.accuracy, served.ci_low, served.ci_high) == (local.accuracy, local.ci_low, local.ci_high)
    assert len(set(local.rows["completion"])) > 1  # the model is not constant: equality means something
    # The single-prompt call gives the same text.
    assert client.chat(examples[0]["prompt"], png, max_tokens=8) == local.rows["completion"][0]


def test_served_text_only_and_tools_equal_in_process(tiny, client):
    model, processor = tiny
    # Row 12 of the fixture has a system prompt and an earlier tool call + tool result in its history.
    toolmind = load_benchmark("toolmind", source=DATA / "toolmind", split="all")
    examples = [toolmind[12], toolmind[0]]
    assert any(m.get("tool_calls") for m in examples[0]["meta"]["messages"])
    served = evaluate_server(client, examples, "toolmind", image=None, max_tokens=8, progress=False, concurrency=2)
    local = evaluate(model, processor, examples, image=None, benchmark="toolmind", **FAST)
    assert list(served.rows["completion"]) == list(local.rows["completion"])
    assert list(served.rows["id"]) == [ex["id"] for ex in examples]


def test_server_endpoints_and_errors(client, tmp_path):
    assert client.models() == ["tiny-art"]
    with pytest.raises(RuntimeError, match="HTTP 400"):
        client.complete([], max_tokens=4)
    with pytest.raises(RuntimeError, match="HTTP 400"):
        client.complete(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}],
            max_tokens=4,
        )
    jpeg = tmp_path / "a.jpg"
    PixelPrompt.from_noise(32, 0).to_pil().save(jpeg)
    with pytest.raises(ValueError, match="not a PNG"):
        client.chat("hi", jpeg)


# --------------------------------------------------------------------------- request structure


def test_request_payload_structure(png, monkeypatch):
    sent = []
    client = ChatClient("http://127.0.0.1:1", "m")
    monkeypatch.setattr(
        client,
        "request",
        lambda method, path, payload=None: (
            sent.append(payload) or {"choices": [{"message": {"role": "assistant", "content": "Answer: 4"}}]}
        ),
    )
    assert client.chat("What is 2+2?", png, max_tokens=16) == "Answer: 4"
    body = sent[0]
    assert body["chat_template_kwargs"] == {"enable_thinking": False} and body["temperature"] == 0.0
    assert body["max_tokens"] == 16 and body["model"] == "m" and "tools" not in body
    (user,) = body["messages"]
    assert [p["type"] for p in user["content"]] == ["image_url", "text"]  # image first, then text
    url = user["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,") and url == image_data_url(png)
    assert base64.b64decode(url.split(",", 1)[1]) == Path(png).read_bytes()  # the file's bytes, unchanged
    assert ChatClient("http://h:8000/", "m").base_url == "http://h:8000/v1"


def test_openai_messages_tool_history_is_wire_form():
    toolmind = load_benchmark("toolmind", source=DATA / "toolmind", split="all")
    messages = openai_messages(toolmind[12])
    calls = [c for m in messages for c in m.get("tool_calls") or []]
    assert calls and all(isinstance(c["function"]["arguments"], str) for c in calls)
    assert messages[0]["role"] == "system" and messages[-1]["content"] == [
        {"type": "text", "text": toolmind[12]["prompt"]}
    ]
    # The example itself is not modified.
    assert isinstance(toolmind[12]["meta"]["messages"][2]["tool_calls"][0]["function"]["arguments"], dict)


def test_parsed_tool_calls_are_scored(tmp_path):
    example = load_benchmark("bfcl", source=DATA / "bfcl", category="simple", limit=1)[0]
    gold = json.loads(example["answer"])
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}} for c in gold
        ],
    }
    res = score_completions([example], [completion_text(message)], "bfcl_simple")
    assert res.k == 1 and res.accuracy == 1.0


# --------------------------------------------------------------------------- in-process server: auth, routes


def test_api_key_and_routes(tiny):
    srv = make_server(*tiny, host="127.0.0.1", port=0, model_name="x", api_key="secret")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        with pytest.raises(RuntimeError, match="HTTP 401"):
            ChatClient(url, "x", api_key="wrong", timeout=30).models()
        ok = ChatClient(url, "x", api_key="secret", timeout=30)
        assert ok.models() == ["x"]
        with pytest.raises(RuntimeError, match="HTTP 404"):
            ok.request("GET", "/nope")
        resp = ok.complete([{"role": "user", "content": "hi"}], max_tokens=3, stream=False)
        assert resp["usage"]["completion_tokens"] <= 3 and resp["choices"][0]["finish_reason"] in ("stop", "length")
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)


# --------------------------------------------------------------------------- hardening: validation, limits, load


@contextlib.contextmanager
def _serving(tiny, **kw):
    """make_server on 127.0.0.1 (a free port) in a thread; yields (host, port); always shut down."""
    srv = make_server(*tiny, host="127.0.0.1", port=0, model_name="x", **kw)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[:2]
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)


def _post(addr, body: dict | bytes, headers: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", raw, {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _ask(content, max_tokens: int = 2) -> dict:
    return {
        "model": "x",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


def _image(url: str) -> list[dict]:
    return [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "hi"}]


def test_local_files_and_file_urls_are_refused_without_revealing_which_exist(tiny, tmp_path, png):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with _serving(tiny) as addr:
        answers = [
            _post(addr, _ask(_image(url)), timeout=20)
            for url in (f"file://{png}", str(png), "/no/such/file.png", str(fifo), f"file://{fifo}")
        ]
    assert {status for status, _ in answers} == {400}
    assert len({body["error"]["message"] for _, body in answers}) == 1  # no existence oracle
    root = png.parent
    os.mkfifo(root / "fifo")
    with _serving(tiny, limits=ServerLimits(image_root=str(root))) as addr:
        assert _post(addr, _ask(_image(png.name)))[0] == 200  # allowed: a file under the folder
        refused = [
            _post(addr, _ask(_image(p)), timeout=20)
            for p in ("../" + png.parent.parent.name, "fifo", "missing.png", str(tmp_path / "x.png"), f"file://{png}")
        ]
    assert {status for status, _ in refused} == {400}
    assert len({body["error"]["message"] for _, body in refused[:4]}) == 1


def test_max_tokens_1e9_is_answered_within_the_cap_and_the_next_request_is_served(tiny):
    with _serving(tiny, limits=ServerLimits(max_tokens=12)) as addr:
        status, body = _post(addr, _ask("hi", max_tokens=10**9))
        assert status == 200 and body["usage"]["completion_tokens"] <= 12
        assert _post(addr, _ask("hello"))[0] == 200
        assert _post(addr, _ask("hello", max_tokens=0))[0] == 400


def test_generation_stops_when_the_client_disconnects(tiny):
    with _serving(tiny) as addr:  # no configured cap: only the model's context (4096) bounds generation
        sock = socket.create_connection(addr, timeout=10)
        # Greedy on this prompt never emits an end token: it would generate until the context is full.
        body = _ask("hello", max_tokens=10**9) | {"chat_template_kwargs": {"enable_thinking": False}}
        raw = json.dumps(body).encode()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(raw)}\r\n\r\n".encode()
            + raw
        )
        time.sleep(1.0)  # generating now, holding the generation lock
        sock.close()
        t0 = time.monotonic()
        status, _ = _post(addr, _ask("hello"), timeout=60)
        # The abandoned generation would run ~4000 tokens (tens of seconds) if it were not stopped.
        assert status == 200 and time.monotonic() - t0 < 8


def test_100_concurrent_requests_are_all_answered_200_or_503(tiny):
    statuses, errors = [], []

    def one():
        try:
            statuses.append(_post(addr, _ask("hi", max_tokens=1), timeout=120)[0])
        except OSError as err:  # a reset or refused connection
            errors.append(repr(err))

    with _serving(tiny) as addr:
        threads = [threading.Thread(target=one) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
    assert errors == [] and len(statuses) == 100
    assert set(statuses) <= {200, 503} and 200 in statuses


def test_bad_lengths_big_bodies_and_many_images_are_refused_before_work(tiny, tmp_path):
    big = tmp_path / "big.png"  # header says 8000x8000, pixel data cut short: decoding would fail differently

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 8000, 8000, 8, 2, 0, 0, 0)
    big.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    with _serving(tiny, limits=ServerLimits(max_body_bytes=2**20)) as addr:
        status, body = _post(addr, b"{}", {"Content-Length": "abc"})
        assert status == 400 and "Content-Length" in body["error"]["message"]
        with socket.create_connection(addr, timeout=10) as sock:  # declares 100 MiB, sends none of it
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 413")
        url = image_data_url(big)
        status, body = _post(addr, _ask(_image(url) + _image(url)[:1] * 4))
        assert status == 400 and "at most 1 image" in body["error"]["message"]
        status, body = _post(addr, _ask(_image(url)))
        assert status == 400 and "larger than this server's limit" in body["error"]["message"]
        assert _post(addr, _ask("still serving"))[0] == 200


def test_a_stalled_request_body_is_dropped_after_the_socket_timeout(tiny):
    with _serving(tiny, limits=ServerLimits(timeout=1.0)) as addr:
        with socket.create_connection(addr, timeout=10) as sock:
            t0 = time.monotonic()
            sock.sendall(b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"mo')
            assert sock.recv(100).startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 5
        assert _post(addr, _ask("hi"))[0] == 200
