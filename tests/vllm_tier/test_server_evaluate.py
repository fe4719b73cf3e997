"""Evaluation on running vLLM servers (`evaluate(engine=<URLs>)`, through `generation.ServerGenerator`): an ART PNG and
a LoRA adapter folder score row for row as on the offline engine, on one server and spread over two."""

import pytest
from test_server_rollouts import _finished_requests
from toy_tier import benchmark

from art_lib.client import ChatClient
from art_lib.evaluate import evaluate
from art_lib.toy.benchmarks import max_new_tokens

N = 8  # examples per evaluation: 4 per server when spread over two


def _served_rows_and_requests(servers, urls: list[str], evaluate_on) -> tuple:
    """The EvalResult rows of `evaluate_on(urls)` and how many requests each server finished during it (the
    generator's start-up probe, one one-token request per server it connects to, included)."""
    before = [_finished_requests(s) for s in servers]
    rows = evaluate_on(urls).rows
    return rows, [a - b for a, b in zip((_finished_requests(s) for s in servers), before)]


def _served(urls: list[str]) -> list[list[str]]:
    """The model names each server lists (its base model and the adapters loaded into it)."""
    return [sorted(ChatClient(url, "any").models()) for url in urls]


@pytest.mark.parametrize("kind", ["art", "lora"])
def test_evaluate_on_servers_equals_the_offline_engine(kind, rollout_servers, engine, hf, artworks, loras, examples):
    """Greedy: the toy_add artwork's PNG (ART) or the toy_max adapter folder (LoRA, text only) scored through
    `evaluate(engine=[url])` and `evaluate(engine=[url1, url2])` gives the offline engine's rows (completions, token
    counts, finish reasons, scores); one URL sends every prompt to that server, two split them evenly."""
    model, processor = hf
    task = "add" if kind == "art" else "max"
    inputs = dict(image=artworks[task]) if kind == "art" else dict(adapter=loras[task][2])
    common = dict(benchmark=benchmark(task), max_new_tokens=max_new_tokens(task), progress=False, **inputs)
    exs = examples[task][:N]
    offline = evaluate(model, processor, exs, engine=engine, **common)
    assert offline.accuracy >= 0.9  # learned: the rows hold right answers, not one repeated failure

    def evaluate_on(urls):
        return evaluate(model, processor, exs, engine=urls, **common)

    urls = [s.base_url for s in rollout_servers]
    served_before = _served(urls)
    one, counts_one = _served_rows_and_requests(rollout_servers, urls[:1], evaluate_on)
    two, counts_two = _served_rows_and_requests(rollout_servers, urls, evaluate_on)
    assert one.equals(offline.rows), (one, offline.rows)
    assert two.equals(offline.rows), (two, offline.rows)
    assert counts_one == [N + 1, 0]
    assert counts_two == [N // 2 + 1, N // 2 + 1]
    assert _served(urls) == served_before  # each call unloaded the adapter it loaded: none is left on a server
