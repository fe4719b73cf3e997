"""A notebook's setup and closing in one call each: `nb = start(globals(), STEM)` ... `nb.finish()`.

`start` checks the parameters papermill injected (a typo or a wrong type is an error naming it, before anything
loads), sets torch's CPU threads, opens the notebook's results folder and turns the notebook's runtime parameters
into the `Runtime` and `Checkpointing` every arm, control and transport of the notebook shares. `finish` writes
`run_info.json` (parameters, commit, packages, device, wall time).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import RESULT_NEUTRAL

if TYPE_CHECKING:
    from .experiments import Checkpointing
    from .runtime import Runtime


@dataclass(frozen=True)
class Session:
    """What a notebook's cells share: its parameters, results folder, runtime and checkpointing, start time."""

    stem: str
    params: dict
    out: Path
    runtime: Runtime
    checkpointing: Checkpointing
    started: float

    @property
    def device(self) -> str:
        return self.runtime.device

    @property
    def dtype(self) -> str:
        return self.runtime.dtype

    def finish(self) -> Path:
        """Write `run_info.json` into the results folder (parameters, commit, packages, device, kernels, wall time)."""
        from .models import linear_attention_kernels
        from .results import write_run_info

        return write_run_info(
            self.out,
            self.params,
            self.started,
            device=self.device,
            dtype=self.dtype,
            linear_attention_kernels=linear_attention_kernels(),
        )


def start(namespace: dict, stem: str) -> Session:
    """Check the notebook's parameters in `namespace` (its `globals()`), then build what its cells share.

    The results folder is `results/<stem>` (`results/<stem>.<results_tag>` with a tag), under `$ART_RESULTS_ROOT`
    when set.
    """
    import torch

    from .experiments import Checkpointing
    from .plan import check_parameters
    from .results import results_dir
    from .runtime import Runtime

    p = check_parameters(namespace, stem)
    torch.set_num_threads(p["cpu_threads"])
    started = time.time()
    out = results_dir(
        stem + (f".{p['results_tag']}" if p["results_tag"] else ""), root=os.environ.get("ART_RESULTS_ROOT")
    )
    runtime = Runtime(
        device=p["device"],
        dtype=p["dtype"],
        data_dir=p["data_dir"],
        eval_batch_size=p["eval_batch_size"],
        rollout_engine=p["rollout_engine"],
        eval_engine=p["eval_engine"],
        vllm_memory_fraction=p["vllm_memory_fraction"],
        memory={k: p[k] for k in RESULT_NEUTRAL},  # each notebook declares them
        progress=p["progress"],
    )
    checkpointing = Checkpointing(out, every=p["checkpoint_every"], resume=p["resume"])
    print("results ->", f"{out.parent.name}/{out.name}", "|", runtime.device, runtime.dtype)
    return Session(stem, p, out, runtime, checkpointing, started)
