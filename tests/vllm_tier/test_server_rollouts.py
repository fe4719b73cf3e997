"""RL rollouts from running vLLM servers (`generation.ServerGenerator`): the servers tokenise the kit's own prompts,
sample what the offline engine samples, share the requests, serve each new LoRA version under a new name, and a toy
DAPO run with server rollouts learns as Table 2's does with HF rollouts."""

import torch
from toy_tier import ART, MODEL, benchmark

from art_lib.toy.benchmarks import max_new_tokens

MAX_NEW_TOKENS = max_new_tokens("add")


def _urls(servers) -> list[str]:
    return [s.base_url for s in servers]


def _kit_prompt_ids(processor, texts: list[str], image: dict | None) -> list[list[int]]:
    from art_lib.preprocess import image_tokens
    from art_lib.prompting import encode

    pb = encode(processor, texts, num_image_tokens=image_tokens(image, processor.image_processor))
    return [pb.input_ids[i][pb.attention_mask[i].bool()].tolist() for i in range(len(texts))]


def test_server_prompt_ids_equal_the_kits_encoding(rollout_servers, hf, examples):
    """With the artwork (image tokens expanded) and without it (LoRA's prompts), tool task included (system prompt
    and tools in the template): the ids each server reports are the kit's encoding of the same rendered prompt."""
    from art_lib.generation import Sampling, ServerGenerator
    from art_lib.methods import make_method
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.prompting import example_text

    model, processor = hf
    gen = ServerGenerator(_urls(rollout_servers))
    m = make_method("art", model, processor, artwork=PixelPrompt.from_icon("math", 64))
    _, image, _ = m.policy(grad=False)
    exs = examples["add"][:2] + examples["tool"][:2]
    for with_image in (True, False):
        texts = [example_text(processor, ex, image=with_image) for ex in exs]
        outs = gen.generate(
            texts, image=m.artwork.to_pil() if with_image else None, sampling=Sampling(n=2, max_new_tokens=4, seed=0)
        )
        want = _kit_prompt_ids(processor, texts, image if with_image else None)
        assert [o[0].prompt_token_ids for o in outs] == want
        assert all(len(o) == 2 and o[0].prompt_token_ids == o[1].prompt_token_ids for o in outs)


def test_server_samples_what_the_offline_engine_samples(rollout_servers, engine, hf, examples):
    """Same 8-bit image, prompts, settings and seeds (temperature 2, top_p 0.9: the toy model is too sure at 1):
    the server's sampled token ids are the offline engine's, so a request leaves nothing to the server's defaults
    (top_k, penalties)."""
    from art_lib.generation import Sampling, ServerGenerator
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.prompting import example_text, vision_token_ids

    model, processor = hf
    pil = PixelPrompt.from_icon("math", 64).to_pil()
    texts = [example_text(processor, ex) for ex in examples["add"][:4]]
    sampling = Sampling(
        n=4,
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=2.0,
        top_p=0.9,
        seed=123,
        logprobs=True,
        suppress_token_ids=tuple(vision_token_ids(model, processor)),
    )
    served = ServerGenerator(_urls(rollout_servers)).generate(texts, image=pil, sampling=sampling)
    offline = engine.as_generator().generate(texts, image=pil, sampling=sampling)
    ids = lambda outs: [[c.token_ids for c in per] for per in outs]  # noqa: E731
    assert len({tuple(t) for per in ids(served) for t in per}) > 1  # sampled, not one repeated answer
    assert ids(served) == ids(offline)
    gap = max(
        abs(a - b) for s, o in zip(served, offline) for cs, co in zip(s, o) for a, b in zip(cs.logprobs, co.logprobs)
    )
    assert gap < 1e-3


def _finished_requests(server) -> float:
    """The server's count of finished requests (its Prometheus `/metrics`)."""
    import urllib.request

    text = urllib.request.urlopen(server.base_url.removesuffix("/v1") + "/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("vllm:request_success_total{")
    )


def test_requests_spread_round_robin_over_the_servers(rollout_servers, hf, examples):
    """Six prompts of three samples, two servers: each server finishes three prompts' nine samples (vLLM counts each
    sample of a request as a finished request)."""
    from art_lib.generation import Sampling, ServerGenerator
    from art_lib.prompting import example_text

    _, processor = hf
    gen = ServerGenerator(_urls(rollout_servers))
    before = [_finished_requests(s) for s in rollout_servers]
    texts = [example_text(processor, ex, image=False) for ex in examples["add"][:6]]
    gen.generate(texts, sampling=Sampling(n=3, max_new_tokens=2, seed=1))
    after = [_finished_requests(s) for s in rollout_servers]
    assert [a - b for a, b in zip(after, before)] == [9.0, 9.0]


def test_lora_versions_are_served_under_new_names(rollout_servers, checkpoint, loras, examples):
    """LoRA: the trained toy_add adapter, then the same adapter zeroed, then trained again: each version is loaded
    into both servers under a new name (the old one unloaded) and the servers' greedy answers follow it."""
    from art_lib.generation import Sampling, ServerGenerator, method_inputs
    from art_lib.methods import make_method
    from art_lib.models import load_frozen
    from art_lib.prompting import example_text
    from art_lib.rewards import get_scorer

    trained = {n: p.detach().clone() for n, p in loras["add"][0].named_parameters() if p.requires_grad}
    model, processor = load_frozen(checkpoint)
    m = make_method("lora", model, processor, lora_rank=8)
    gen = ServerGenerator(_urls(rollout_servers))
    exs = examples["add"][:8]
    texts = [example_text(processor, ex, image=False) for ex in exs]
    score = get_scorer(benchmark("add"))

    def served_accuracy(state: dict) -> tuple[float, str]:
        m.load_state_dict(state)
        _, folder = method_inputs(m, gen.adapters)
        outs = gen.generate(texts, adapter=folder, sampling=Sampling(max_new_tokens=MAX_NEW_TOKENS, greedy=True))
        name = gen._adapter[1]
        for client in gen.clients:  # only the current version is loaded
            assert [n for n in client.models() if n.startswith("art-lora-")][-1:] == [name]
        rewards = [score(o[0].text, ex) for o, ex in zip(outs, exs)]
        return sum(rewards) / len(rewards), name

    zero = {n: torch.zeros_like(p) if "lora_B" in n else p for n, p in trained.items()}
    (a1, n1), (a0, n0), (a2, n2) = served_accuracy(trained), served_accuracy(zero), served_accuracy(trained)
    print(f"served LoRA accuracy: trained {a1}, zeroed {a0}, trained again {a2}")
    assert len({n1, n0, n2}) == 3
    assert a1 >= 0.9 and a2 == a1 and a0 <= 0.1
    gen.close()
    assert not any(n.startswith(n2) for n in gen.clients[0].models())


def test_lora_grpo_step_with_server_rollouts(rollout_servers, checkpoint, loras, examples):
    """train(method="lora", rollout_engine=<two URLs>) from the trained adapter: the steps' rollouts come from the
    servers with the adapter the trainer holds (the base model alone earns no reward on toy_add)."""
    from art_lib.client import ChatClient
    from art_lib.models import load_frozen
    from art_lib.train import train

    trained = {n: p.detach().clone() for n, p in loras["add"][0].named_parameters() if p.requires_grad}
    model, processor = load_frozen(checkpoint)
    served = lambda: [sorted(ChatClient(url, "any").models()) for url in _urls(rollout_servers)]  # noqa: E731
    before = served()
    res = train(
        model,
        processor,
        examples["add"][:4],
        method="lora",
        objective="grpo",
        steps=2,
        batch_size=2,
        num_generations=4,
        max_completion_length=MAX_NEW_TOKENS,
        lr=0.005,
        init_state=trained,
        benchmark=benchmark("add"),
        rollout_engine=_urls(rollout_servers),
        progress=False,
    )
    # The trained adapter answers greedily 1.00 and earns 0.75-1.00 per step at temperature 1; the base model 0.
    assert res.history["reward"].min() >= 0.5
    assert served() == before  # the run unloaded the adapter versions it loaded into the servers


def test_dapo_with_server_rollouts_reaches_the_hf_band(rollout_servers, checkpoint, tmp_path):
    """Table 2's toy recipe through run_arm with rollouts from two servers: ART SFT warm start (7 steps, lr 0.05,
    batch 16, math icon) scores 0.00 alone (as with HF); 15 DAPO steps (8 prompts x 8, temperature 1.0) reach 1.00
    with HF rollouts. 40/40's 95% Wilson interval starts at 0.91: server rollouts must land in that band."""
    from art_lib.experiments import Arm, Checkpointing, Runtime, run_arm

    common = dict(n_test=40, seed_icon="math", model_label=MODEL)
    warm = dict(steps=7, lr=ART["lr"], batch_size=ART["batch_size"])
    ck = Checkpointing(tmp_path)
    warm_arm = Arm(str(checkpoint), "toy_add", "art", objective="sft", label="art-warm7", train=warm, **common)
    warm_row, _ = run_arm(warm_arm, Runtime(device="cpu", dtype="float32"), ck)
    arm = Arm(
        str(checkpoint),
        "toy_add",
        "art",
        objective="dapo",
        train=dict(steps=15, batch_size=8, num_generations=8, temperature=1.0, lr=ART["lr"]),
        warm_start=warm,
        **common,
    )
    row, _ = run_arm(arm, Runtime(device="cpu", dtype="float32", rollout_engine=_urls(rollout_servers)), ck)
    print(f"toy_add: warm start {warm_row['accuracy']}, DAPO with server rollouts {row['accuracy']}")
    assert row["rollout_engine"] == ",".join(_urls(rollout_servers))
    assert warm_row["accuracy"] <= 0.1
    assert row["accuracy"] >= 0.9
