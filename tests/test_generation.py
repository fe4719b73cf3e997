"""The generation interface without vLLM: server requests, URL spreading, adapter versions, the shared rollout builder
and the errors raised before training. Servers' behaviour is tested on real vLLM servers in tests/vllm_tier."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from art_lib.generation import (
    PASSTHROUGH_TEMPLATE,
    AdapterFolders,
    Completion,
    ImageInputs,
    Sampling,
    ServerGenerator,
    chat_request,
    engine_image,
    method_inputs,
    parse_choices,
    png_data_url,
    server_urls,
    spread,
)
from art_lib.hf_generator import HFGenerator
from art_lib.methods import make_method
from art_lib.models import tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.prompting import chat_text
from art_lib.rollout import completions_rollout, row_token_ids, sample_rollout
from art_lib.vllm_engine import free_port


def test_spread_is_round_robin_per_prompt_and_continues_across_calls():
    assert spread(5, 2) == [0, 1, 0, 1, 0]
    assert spread(4, 3, start=2) == [2, 0, 1, 2]
    assert spread(3, 1) == [0, 0, 0]


def test_server_urls_accept_a_url_a_comma_list_or_a_list_and_nothing_else():
    a, b = "http://127.0.0.1:8000/v1", "http://10.0.0.2:8001/v1"
    assert server_urls(a) == [a]
    assert server_urls(f"{a}, {b}") == [a, b]
    assert server_urls([a, b]) == [a, b]
    for other in ("hf", "vllm", "auto", [], [a, "vllm"], ["hf"], None, 3):
        assert server_urls(other) is None


def test_png_data_url_holds_the_8bit_artwork_losslessly():
    art = PixelPrompt.from_noise(64, seed=3)
    url = png_data_url(art.to_pil())
    assert url.startswith("data:image/png;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
    assert np.array_equal(back, art.to_uint8())


def test_chat_request_sends_the_rendered_prompt_image_first_with_every_sampling_field_set():
    s = Sampling(n=8, max_new_tokens=32, temperature=0.7, top_p=0.9, logprobs=True, suppress_token_ids=(5, 9))
    body = chat_request("PROMPT", "data:image/png;base64,AAAA", "m", s, seed=11)
    content = body["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image_url", "text"] and content[1]["text"] == "PROMPT"
    assert body["chat_template"] == PASSTHROUGH_TEMPLATE and body["return_token_ids"] is True
    assert (body["n"], body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (8, 32, 0.7, 0.9, 11)
    # the server's generation-config defaults must not apply: the offline engine and HF use none of them
    assert (body["top_k"], body["min_p"], body["repetition_penalty"]) == (0, 0.0, 1.0)
    assert body["presence_penalty"] == body["frequency_penalty"] == 0.0
    assert body["logit_bias"] == {"5": -100.0, "9": -100.0} and body["logprobs"] is True
    text_only = chat_request("PROMPT", None, "m", Sampling(greedy=True, temperature=1.5, top_p=0.5), seed=None)
    assert text_only["messages"][0]["content"] == "PROMPT" and "seed" not in text_only
    assert (text_only["temperature"], text_only["top_p"]) == (0.0, 1.0) and "logprobs" not in text_only


def test_passthrough_template_renders_the_kits_prompt_unchanged():
    _, proc = tiny_model()
    text = chat_text(proc, "3 and 7", system="Add.")
    rendered = proc.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], chat_template=PASSTHROUGH_TEMPLATE, tokenize=False
    )
    assert rendered == text


def test_parse_choices_keeps_sample_order_ids_and_logprobs():
    response = {
        "prompt_token_ids": [1, 2, 3],
        "choices": [
            {"index": 1, "message": {"content": "b"}, "finish_reason": "length", "token_ids": [7, 8], "logprobs": None},
            {
                "index": 0,
                "message": {"content": "a"},
                "finish_reason": "stop",
                "token_ids": [5, 6],
                "logprobs": {"content": [{"logprob": -0.5}, {"logprob": -0.25}]},
            },
        ],
    }
    first, second = parse_choices(response)
    assert (first.token_ids, first.text, first.finish_reason, first.logprobs) == ([5, 6], "a", "stop", [-0.5, -0.25])
    assert (second.token_ids, second.finish_reason, second.logprobs) == ([7, 8], "length", None)
    assert first.prompt_token_ids == second.prompt_token_ids == [1, 2, 3]
    with pytest.raises(RuntimeError, match="no token ids"):
        parse_choices({"choices": [{"index": 0, "message": {"content": "a"}}]})


def test_adapter_folder_is_saved_again_only_when_the_weights_changed(tmp_path):
    model, proc = tiny_model(seed=0)
    m = make_method("lora", model, proc, lora_rank=4)
    folders = AdapterFolders()
    first = method_inputs(m, folders)
    assert first[0] is None and (first[1] / "adapter_config.json").is_file()
    assert method_inputs(m, folders)[1] == first[1]  # unchanged: the same folder, nothing saved
    with torch.no_grad():
        next(p for n, p in m.model.named_parameters() if "lora_B" in n).add_(0.1)
    second = method_inputs(m, folders)[1]
    assert second != first[1] and (second / "adapter_config.json").is_file()
    assert not first[1].exists()  # the old version is gone: no engine asks for it again
    folders.close()
    assert not second.exists()


def test_art_sends_its_8bit_artwork_and_a_soft_prompt_cannot_be_sent():
    model, proc = tiny_model(seed=0)
    art = PixelPrompt.from_noise(256, seed=1)
    pil, adapter = method_inputs(make_method("art", model, proc, artwork=art), AdapterFolders())
    assert adapter is None and np.array_equal(np.asarray(pil), art.to_uint8())
    with pytest.raises(ValueError, match="soft prompt cannot be served"):
        method_inputs(make_method("soft_prompt", model, proc, artwork=art), AdapterFolders())


def _train_kw():
    exs = [{"id": "1", "prompt": "1 + 1?", "answer": "2", "meta": {}}]
    return exs, dict(objective="grpo", steps=1, batch_size=1, num_generations=2, benchmark="gsm8k", progress=False)


def test_unreachable_server_fails_before_training_naming_the_url():
    from art_lib.train import train

    model, proc = tiny_model()
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    exs, kw = _train_kw()
    with pytest.raises(ConnectionError, match=url.replace(".", r"\.")):
        train(model, proc, exs, method="art", rollout_engine=url, **kw)
    with pytest.raises(ConnectionError, match="no vLLM server answers"):
        ServerGenerator([url])


def test_soft_prompt_with_a_server_is_a_clear_error():
    from art_lib.train import train

    model, proc = tiny_model()
    exs, kw = _train_kw()
    with pytest.raises(ValueError, match="soft prompt cannot be served"):
        train(model, proc, exs, method="soft_prompt", rollout_engine="http://127.0.0.1:1/v1", **kw)


def test_resolve_engine_passes_server_urls_through():
    from art_lib.runtime import resolve_engine

    assert resolve_engine(["http://a:1/v1", "http://b:2/v1"], "cpu") == "http://a:1/v1,http://b:2/v1"
    assert resolve_engine("http://a:1/v1", "cuda") == "http://a:1/v1"
    assert resolve_engine("auto", "cpu") == "hf"
    with pytest.raises(ValueError, match="did you mean 'vllm'"):
        resolve_engine("vlm", "cpu")


@pytest.fixture(scope="module")
def hf_rollout():
    """An HF rollout on the tiny model (ragged, some rows truncated) and what it was sampled from."""
    model, proc = tiny_model(seed=0)
    bias = torch.zeros(model.config.text_config.vocab_size)
    bias[proc.tokenizer.convert_tokens_to_ids("<|im_end|>")] = 6.0  # some rows end early, some run to the limit
    model.lm_head.register_forward_hook(lambda mod, args, out: out + bias.to(out))
    m = make_method("art", model, proc, artwork=PixelPrompt.from_icon("math", 256))
    _, image, embeds = m.policy(grad=False)
    prompts = [chat_text(proc, "1 + 1?"), chat_text(proc, "Name a colour, please.")]
    exs = [{"id": str(i)} for i in range(2)]
    torch.manual_seed(0)
    kw = dict(num_generations=3, image=image, image_embeds=embeds, max_new_tokens=6, temperature=1.3)
    return model, proc, prompts, exs, kw, sample_rollout(HFGenerator(model, proc), model, proc, prompts, exs, **kw)


def _as_completions(rollout, G: int, prompt_ids=None) -> list[list[Completion]]:
    rows = [row_token_ids(rollout.batch, j) for j in range(len(rollout.batch))]
    per = [Completion(token_ids=c, text="", finish_reason="stop", prompt_token_ids=prompt_ids or p) for p, c in rows]
    return [per[i : i + G] for i in range(0, len(per), G)]


def test_rollout_from_completions_equals_the_hf_rollout_of_the_same_tokens(hf_rollout):
    """An engine's completions of an HF rollout's tokens (with the prompt ids it reports) give that rollout back:
    every rollout has one layout, whichever backend sampled it."""
    model, proc, prompts, exs, kw, ref = hf_rollout
    assert bool(ref.batch.truncated.any()) and not bool(ref.batch.truncated.all())  # both kinds of rows
    got = completions_rollout(
        model, proc, prompts, exs, _as_completions(ref, 3), image=kw["image"], image_embeds=kw["image_embeds"],
        temperature=kw["temperature"],
    )  # fmt: skip
    for name in ("input_ids", "attention_mask", "mm_token_type_ids", "completion_mask", "truncated"):
        assert torch.equal(getattr(got.batch, name), getattr(ref.batch, name)), name
    assert got.completions == ref.completions and got.examples == ref.examples
    assert torch.allclose(got.old_logps, ref.old_logps, atol=1e-5)


def test_engine_prompt_ids_that_differ_from_the_kits_stop_the_rollout(hf_rollout):
    """An engine that tokenised another prompt (other template, checkpoint or image size) would have the trainer
    score tokens it never sampled: refused."""
    model, proc, prompts, exs, kw, ref = hf_rollout
    with pytest.raises(RuntimeError, match="tokenised prompt 0 differently"):
        completions_rollout(model, proc, prompts, exs, _as_completions(ref, 3, prompt_ids=[1, 2, 3]), image=kw["image"])


def test_hf_generator_samples_the_hf_rollouts_tokens_from_the_same_seed(hf_rollout):
    """`Sampling.seed` seeds `HFGenerator` as `torch.manual_seed` does for an HF rollout (`seed=None`, torch's
    current state): the same token ids and stop/length ends."""
    model, proc, prompts, exs, kw, ref = hf_rollout
    sampling = Sampling(n=3, max_new_tokens=6, temperature=1.3, seed=0)
    outs = HFGenerator(model, proc).generate(
        prompts, image=ImageInputs(kw["image"], kw["image_embeds"]), sampling=sampling
    )
    rows = [o for per in outs for o in per]
    assert [o.token_ids for o in rows] == [row_token_ids(ref.batch, j)[1] for j in range(len(ref.batch))]
    assert [o.finish_reason == "length" for o in rows] == ref.batch.truncated.tolist()
    assert [o.text for o in rows] == ref.completions


def test_engines_refuse_image_tensors_naming_the_hf_backend():
    """Float pixels or embeddings go to the HF backend only; a soft prompt's embeddings get the soft-prompt message."""
    from art_lib.vllm_engine import EngineGenerator

    pixels = ImageInputs({"pixel_values": torch.zeros(4, 8), "image_grid_thw": torch.tensor([[1, 2, 2]])})
    soft = ImageInputs({"pixel_values": None, "image_grid_thw": torch.tensor([[1, 2, 2]])}, torch.zeros(1, 8))
    with pytest.raises(ValueError, match="HFGenerator"):
        EngineGenerator(engine=None).generate(["x"], image=pixels, sampling=Sampling())
    with pytest.raises(ValueError, match="soft prompt cannot be served"):
        engine_image(soft)
