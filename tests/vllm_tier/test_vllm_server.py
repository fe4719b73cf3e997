"""A real vLLM OpenAI-compatible server, queried as a user would, agrees with the in-process evaluation."""

import pytest

pytest.importorskip("vllm")

from servable import ADAPTER_NAME, MAX_NEW_TOKENS, SERVED_NAME, same_fraction  # noqa: E402


def test_server_binds_loopback_only(server):
    assert server.host == "127.0.0.1"
    assert server.command[server.command.index("--host") + 1] == "127.0.0.1"


def test_png_request_is_data_url_image_first(artwork_png, examples):
    from art_lib.serve import _image_part, openai_messages

    content = openai_messages(examples[0], _image_part(artwork_png))[-1]["content"]
    assert [p["type"] for p in content] == ["image_url", "text"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_server_png_matches_in_process(server, hf, artwork_png, examples):
    from art_lib.evaluate import evaluate
    from art_lib.serve import ChatClient, evaluate_server

    model, processor = hf
    ref = evaluate(model, processor, examples, image=artwork_png, benchmark="gsm8k", max_new_tokens=MAX_NEW_TOKENS,
                   progress=False)
    got = evaluate_server(ChatClient(server.base_url, SERVED_NAME), examples, "gsm8k", image=artwork_png,
                          max_tokens=MAX_NEW_TOKENS, concurrency=8, progress=False)
    same = same_fraction(ref, got)
    print(f"server PNG: {same:.3f} identical greedy completions; accuracy {got.accuracy} vs {ref.accuracy}")
    assert same >= 0.95
    assert got.accuracy == ref.accuracy
    # The image reached the model: the same prompts without it give other completions.
    text_only = evaluate_server(ChatClient(server.base_url, SERVED_NAME), examples[:8], "gsm8k",
                                max_tokens=MAX_NEW_TOKENS, progress=False)
    assert text_only.rows["completion"].tolist() != got.rows["completion"][:8].tolist()


def test_server_lora_matches_in_process(server, lora, examples):
    from art_lib.evaluate import evaluate
    from art_lib.serve import ChatClient, evaluate_server

    peft_model, processor, _ = lora
    ref = evaluate(peft_model, processor, examples, benchmark="gsm8k", max_new_tokens=MAX_NEW_TOKENS, progress=False)
    client = ChatClient(server.base_url, ADAPTER_NAME)
    assert ADAPTER_NAME in client.models()
    got = evaluate_server(client, examples, "gsm8k", max_tokens=MAX_NEW_TOKENS, concurrency=8, progress=False)
    same = same_fraction(ref, got)
    print(f"server LoRA: {same:.3f} identical greedy completions; accuracy {got.accuracy} vs {ref.accuracy}")
    assert same >= 0.95
    assert got.accuracy == ref.accuracy
    base = evaluate_server(ChatClient(server.base_url, SERVED_NAME), examples[:8], "gsm8k",
                           max_tokens=MAX_NEW_TOKENS, progress=False)
    assert base.rows["completion"].tolist() != got.rows["completion"][:8].tolist()  # the adapter was applied

