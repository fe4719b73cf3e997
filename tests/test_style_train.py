"""Style terms and EOT inside the trainer: off by default, measurable when on."""

import pytest
import torch

from art_lib.models import tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.style import box_mask, ssim
from art_lib.train import train
from art_lib.transforms import EOT, RandomEOT, resize_to
from art_lib.vllm_engine import Quantize8bit

EXAMPLES = [
    {"id": str(i), "prompt": f"What is {i} plus {i + 3}?", "answer": str(2 * i + 3), "meta": {}} for i in range(6)
]


def _run(**kw):
    model, proc = tiny_model(seed=0)
    art = PixelPrompt.from_icon("reasoning", 256)
    res = train(model, proc, EXAMPLES, method="art", artwork=art, steps=4, batch_size=3, lr=0.05, progress=False, **kw)
    return res, PixelPrompt.from_icon("reasoning", 256).pixels()


def test_zero_style_weights_reproduce_the_unregularised_run_exactly():
    plain, _ = _run()
    zero, _ = _run(style_l2=0.0, style_tv=0.0, style_ssim=0.0, eot=RandomEOT(None))
    assert torch.equal(plain.artwork.raw, zero.artwork.raw)
    cols = [c for c in plain.history.columns if c != "seconds"]
    assert plain.history[cols].equals(zero.history[cols])


def test_style_weight_keeps_the_artwork_closer_to_its_seed():
    plain, seed = _run()
    styled, _ = _run(style_ssim=5.0, style_l2=5.0)
    s_plain, s_styled = float(ssim(plain.artwork.pixels(), seed)), float(ssim(styled.artwork.pixels(), seed))
    assert s_styled > s_plain, (s_styled, s_plain)
    assert {"style_ssim_loss", "style_l2"} <= set(styled.history.columns)


def test_freeze_mask_keeps_the_region_bit_identical():
    mask = box_mask((256, 256), (0, 0, 128, 256))
    res, seed = _run(freeze_mask=mask)
    px = res.artwork.pixels()
    assert torch.equal(px[:, :128], seed[:, :128])
    assert not torch.equal(px[:, 128:], seed[:, 128:])


def test_eot_training_runs_and_reaches_the_pixels():
    res, seed = _run(eot=RandomEOT(["jpeg", "resize", "jitter", "shift"], p=1.0, seed=0))
    assert not torch.equal(res.artwork.pixels(), seed)
    assert not res.history["skipped"].any()


def test_style_on_other_methods_is_rejected():
    model, proc = tiny_model(seed=0)
    with pytest.raises(ValueError, match="art"):
        train(model, proc, EXAMPLES, method="soft_prompt", style_l2=1.0, steps=1, progress=False)


def test_the_kits_transformations_satisfy_the_eot_protocol_and_a_bare_function_does_not():
    for eot in (RandomEOT(None), RandomEOT(["jpeg"], p=0.5), resize_to((256, 256)), Quantize8bit(RandomEOT(["jpeg"]))):
        assert isinstance(eot, EOT), eot
        eot.load_state_dict(eot.state_dict())  # what the checkpointer does on resume
    assert not isinstance(lambda pixels, generator=None: pixels, EOT)
