"""The vLLM tier's fixtures: the shipped `toy:base`, an artwork and a LoRA adapter learned on every
picture-taught toy task, one server serving the base model and the four adapters, one offline engine.

These tests run in the vLLM venv (`bash scripts/test_vllm.sh`, which sets `ART_VLLM_TIER=1`). Whenever the tier
is asked for (that variable, or a path inside tests/vllm_tier on the command line) a missing or broken vLLM is a
failure of every tier test, never a skip. A run that did not ask for it (`pytest tests` in the main venv, which has
no vLLM) deselects the tier's tests when vLLM cannot be imported, and says so in the terminal summary.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Small KV cache (GiB) for the tiny model; the offline engine in this process, so its weights can be read.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from toy_tier import ART, LORA, MODEL, SERVED_NAME, SFT_STEPS, TASKS, adapter_name, benchmark  # noqa: E402

TIER = Path(__file__).parent.resolve()
_left_out: list[str] = []


def vllm_problem() -> str | None:
    """Why vLLM cannot be used here (`import vllm` or its offline API failing), or None."""
    try:
        import vllm

        vllm.LLM, vllm.SamplingParams  # noqa: B018  (a half-installed package can import but lack these)
    except Exception as err:  # a broken install raises anything from ImportError to OSError
        return f"{type(err).__name__}: {err}"
    return None


def tier_requested(config) -> bool:
    """True under scripts/test_vllm.sh (ART_VLLM_TIER=1) or when a path inside this folder was named."""
    if os.environ.get("ART_VLLM_TIER") == "1":
        return True
    for arg in config.args:
        path = (Path(config.invocation_params.dir) / str(arg).split("::")[0]).resolve()
        if path == TIER or TIER in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config, items):
    """Outside a tier run, without a usable vLLM: deselect the tier's tests (listed in the summary)."""
    mine = [item for item in items if TIER in Path(item.path).resolve().parents]
    if not mine or tier_requested(config):
        return
    problem = vllm_problem()
    if problem is None:
        return
    config.hook.pytest_deselected(items=mine)
    items[:] = [item for item in items if item not in mine]
    _left_out.append(f"{len(mine)} vLLM-tier tests deselected ({problem}); they run in bash scripts/test_vllm.sh")


def pytest_terminal_summary(terminalreporter):
    for line in _left_out:
        terminalreporter.write_line(line, yellow=True)


@pytest.fixture(scope="session", autouse=True)
def vllm_installed():
    """Every tier test needs a working vLLM: a missing or broken one is an error of each test, not a skip."""
    problem = vllm_problem()
    if problem is not None:
        pytest.fail(f"the vLLM tier needs a working vLLM, but it is unusable here: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def checkpoint() -> Path:
    from art_lib.experiments import resolve_model

    return Path(resolve_model(MODEL)[0])


@pytest.fixture(scope="session")
def examples() -> dict[str, list[dict]]:
    """Each task's 40 test examples."""
    from art_lib.toy.benchmarks import load_toy

    return {task: load_toy(task, "test") for task in TASKS}


@pytest.fixture(scope="session")
def hf(checkpoint):
    """The in-process reference: the checkpoint in float32 through transformers."""
    from art_lib.models import load_frozen

    return load_frozen(checkpoint)


@pytest.fixture(scope="session")
def artworks(hf, tmp_path_factory) -> dict[str, Path]:
    """Per task, an artwork learned with ART SFT from the math icon, saved as the PNG a user would send."""
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.toy.benchmarks import load_toy
    from art_lib.train import train

    model, processor = hf
    folder = tmp_path_factory.mktemp("art")
    out = {}
    for task in TASKS:
        res = train(
            model,
            processor,
            load_toy(task, "train"),
            steps=SFT_STEPS,
            benchmark=benchmark(task),
            artwork=PixelPrompt.from_icon("math", 64),
            progress=False,
            **ART,
        )
        out[task] = res.artwork.save_png(folder / f"{task}.png", model_id=MODEL, step=SFT_STEPS)
    return out


@pytest.fixture(scope="session")
def loras(checkpoint, tmp_path_factory) -> dict[str, tuple]:
    """Per task, (peft model trained with LoRA SFT, its processor, the saved adapter folder)."""
    from art_lib.models import load_frozen
    from art_lib.toy.benchmarks import load_toy
    from art_lib.train import train

    folder = tmp_path_factory.mktemp("lora")
    out = {}
    for task in TASKS:
        model, processor = load_frozen(checkpoint)  # its own copy: peft wraps the model in place
        res = train(
            model,
            processor,
            load_toy(task, "train"),
            steps=SFT_STEPS,
            benchmark=benchmark(task),
            progress=False,
            **LORA,
        )
        out[task] = (res.method.model, processor, res.method.save(folder / task))
    return out


@pytest.fixture(scope="session")
def server(checkpoint, loras, tmp_path_factory):
    """One vLLM OpenAI-compatible server on 127.0.0.1 serving the base model and every task's adapter."""
    from art_lib.vllm_engine import VLLMServer

    log = tmp_path_factory.mktemp("server") / "vllm_server.log"
    adapters = {adapter_name(task): folder for task, (_, _, folder) in loras.items()}
    with VLLMServer(
        checkpoint,
        served_model_name=SERVED_NAME,
        lora_modules=adapters,
        max_model_len=1024,
        log_path=log,
        extra=["--enforce-eager"],
        env={"VLLM_ENABLE_V1_MULTIPROCESSING": "1"},
    ) as srv:
        yield srv


@pytest.fixture(scope="session")
def engine(checkpoint):
    """One offline engine (LoRA enabled) for evaluation and rollouts."""
    from art_lib.vllm_engine import VLLMEngine

    return VLLMEngine(checkpoint, max_model_len=1024, enable_lora=True, enforce_eager=True)


@pytest.fixture(scope="session")
def rollout_servers(checkpoint, tmp_path_factory):
    """Two vLLM servers on 127.0.0.1 started for RL rollouts (`rollouts=True`: the kit's pass-through chat template,
    adapters loaded at run time), serving only the base model; started side by side."""
    import contextlib
    from concurrent.futures import ThreadPoolExecutor

    from art_lib.vllm_engine import VLLMServer

    folder = tmp_path_factory.mktemp("rollout_servers")
    servers = [
        VLLMServer(
            checkpoint,
            rollouts=True,
            max_model_len=1024,
            log_path=folder / f"server{i}.log",
            extra=["--enforce-eager"],
            env={"VLLM_ENABLE_V1_MULTIPROCESSING": "1"},
        )
        for i in range(2)
    ]
    with contextlib.ExitStack() as stack:
        for srv in servers:  # stopped on exit, also when the other one failed to start
            stack.push(srv.__exit__)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(VLLMServer.__enter__, servers))
        yield servers


@pytest.fixture(scope="session")
def one_and_two_processes(rollout_servers):
    """`run(method, folder) -> (one, [rank0, rank1])`: the records (`<prefix>.rank<r>.pt`) of
    tests/scripts/ddp_rollouts.py training `method` (art or lora) in one process, then in two (`accelerate launch`,
    gloo on CPU), both against the `rollout_servers`."""
    import shutil
    import subprocess

    import torch

    root = TIER.parents[1]
    script = root / "tests" / "scripts" / "ddp_rollouts.py"
    urls = ",".join(s.base_url for s in rollout_servers)
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate is a dependency of the kit: its launcher must sit next to this Python"
    # --multi_gpu picks torch.distributed's launcher; the script's Accelerator(cpu=True) then joins a gloo group.
    launch = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no"]

    def run(method: str, folder: Path) -> tuple[dict, list[dict]]:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
        for command, prefix in (([sys.executable], "one"), (launch, "two")):
            done = subprocess.run(
                [*command, str(script), method, str(folder / prefix), urls],
                env=env,
                timeout=300,
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stderr[-3000:]
        one = torch.load(folder / "one.rank0.pt")
        two = [torch.load(folder / f"two.rank{r}.pt") for r in (0, 1)]
        assert (one["processes"], [t["processes"] for t in two]) == (1, [2, 2])
        return one, two

    return run
