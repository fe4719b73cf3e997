"""A real vLLM OpenAI-compatible server, queried as a user would, agrees with the in-process evaluation on every
picture-taught toy task: the learned PNG (data URL, image first) to the base model, and each LoRA adapter."""

import pytest
from toy_tier import SERVED_NAME, TASKS, adapter_name, benchmark, same_fraction

from art_lib.toy.benchmarks import max_new_tokens


def test_server_binds_loopback_only(server):
    assert server.host == "127.0.0.1"
    assert server.command[server.command.index("--host") + 1] == "127.0.0.1"


def test_png_request_is_data_url_image_first(artworks, examples):
    from art_lib.client import _image_part, openai_messages

    content = openai_messages(examples["add"][0], _image_part(artworks["add"]))[-1]["content"]
    assert [p["type"] for p in content] == ["image_url", "text"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("task", TASKS)
def test_server_png_matches_in_process(server, hf, artworks, examples, task):
    from art_lib.client import ChatClient, evaluate_server
    from art_lib.evaluate import evaluate

    model, processor = hf
    exs, b, png = examples[task], benchmark(task), artworks[task]
    ref = evaluate(model, processor, exs, image=png, benchmark=b, max_new_tokens=max_new_tokens(task), progress=False)
    client = ChatClient(server.base_url, SERVED_NAME)
    got = evaluate_server(client, exs, b, image=png, max_tokens=max_new_tokens(task), concurrency=8, progress=False)
    same = same_fraction(ref, got)
    print(f"server PNG {b}: {same:.3f} identical greedy completions; accuracy {got.accuracy} vs {ref.accuracy}")
    assert ref.accuracy >= 0.9  # the artwork was learned: the comparison is about right answers
    assert same >= 0.95
    assert got.accuracy == ref.accuracy
    # The task came from the image: the same prompts without it are not answered.
    text_only = evaluate_server(client, exs, b, max_tokens=max_new_tokens(task), concurrency=8, progress=False)
    assert text_only.accuracy < 0.5


@pytest.mark.parametrize("task", TASKS)
def test_server_lora_matches_in_process(server, loras, examples, task):
    from art_lib.client import ChatClient, evaluate_server
    from art_lib.evaluate import evaluate

    peft_model, processor, _ = loras[task]
    exs, b = examples[task], benchmark(task)
    ref = evaluate(peft_model, processor, exs, benchmark=b, max_new_tokens=max_new_tokens(task), progress=False)
    client = ChatClient(server.base_url, adapter_name(task))
    assert adapter_name(task) in client.models()
    got = evaluate_server(client, exs, b, max_tokens=max_new_tokens(task), concurrency=8, progress=False)
    same = same_fraction(ref, got)
    print(f"server LoRA {b}: {same:.3f} identical greedy completions; accuracy {got.accuracy} vs {ref.accuracy}")
    assert ref.accuracy >= 0.9
    assert same >= 0.95
    assert got.accuracy == ref.accuracy
