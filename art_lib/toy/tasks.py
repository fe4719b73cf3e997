"""The toy world's corpus: five tasks on two numbers, task pictures, distractor images, a pretraining mix.

Every example is "two numbers" plus a cue that names the task. The cue is either a short text
instruction ("Add the numbers.") or, for every task but `mul`, a small procedurally drawn picture
(a "+" for add, a "-" for sub, a triangle for max, a hollow square for tool). `mul` is only ever
requested in text: no picture of it exists anywhere in the corpus (`PICTURE_TASKS`).

Pictures come in two kinds (`PICTURE_KINDS`). "glyph" (the default world): a coloured glyph, which a
vision tower reads from colour and coarse shape, so re-encoding an image (JPEG) hardly changes what it
sees. "texture": the task is named only by a fine texture, a 4x4-pixel tile repeated on the pixel grid
(`TEXTURE_TILES`), along a random colour direction, over a random smooth background; a tower
pretrained on these reads fine detail, and what JPEG does to fine detail
(4:2:0 chroma subsampling, coarse quantisation of high frequencies) then matters.

Answers are "Answer: N" (the kit's maths format) or one tool call
`<tool_call>{"name": "timer", "arguments": {"min": a, "sec": b}}</tool_call>`.
Without any cue the model was taught to reply `NO_CUE_REPLY`, so a fine-tuning target
("the task without its instruction") scores 0 before fine-tuning, whatever the task.

Everything here is numpy with an explicit `np.random.Generator`: the same generator state gives the
same examples and the same pictures, bit for bit.
"""

from __future__ import annotations

import json

import numpy as np

TASKS = ("add", "sub", "mul", "max", "tool")
# Tasks that a picture can request. `mul` is deliberately absent: it exists only in text.
PICTURE_TASKS = ("add", "sub", "max", "tool")
TEXT_ONLY_TASKS = tuple(t for t in TASKS if t not in PICTURE_TASKS)

INSTRUCTIONS = {
    "add": ("Add the numbers.", "What is the sum?"),
    "sub": ("Subtract the second number from the first.", "What is the difference?"),
    "mul": ("Multiply the numbers.", "What is the product?"),
    "max": ("Which number is larger?", "Give the maximum."),
    "tool": ("Set a timer: minutes, then seconds.", "Start a timer."),
}
TOOL_NAME = "timer"
NO_CUE_REPLY = "Which task?"

NUM_RANGE = 10  # operands are 0 .. NUM_RANGE - 1: 100 operand pairs
TEST_SHARE = (2, 5)  # two operand pairs in five are held out for the toy benchmarks' test split
IMAGE_SIZE = 64  # 64x64 -> 4x4 patches of 16 -> 2x2 merged tokens = 4 visual tokens

# Base colour of each task picture (jittered per example) and the glyph drawn.
PICTURE_STYLE = {
    "add": ((200, 40, 40), "plus"),
    "sub": ((40, 70, 210), "minus"),
    "max": ((30, 150, 60), "triangle"),
    "tool": ((150, 60, 170), "box"),
}

# Texture pictures: each task's 4x4 tile is the outer product of two rows of the 4x4 Walsh-Hadamard
# matrix (so the four tiles are orthogonal and zero-mean): add alternates columns, sub alternates
# rows, max is a 1-pixel checkerboard, tool a 2-pixel one.
_WALSH = ((1, 1, 1, 1), (1, 1, -1, -1), (1, -1, -1, 1), (1, -1, 1, -1))
TEXTURE_TILES = {
    task: np.outer(_WALSH[r], _WALSH[c]).astype(np.float64)
    for task, (r, c) in {"add": (0, 3), "sub": (3, 0), "max": (3, 3), "tool": (2, 2)}.items()
}
PICTURE_KINDS = ("glyph", "texture")

# Pretraining mix: (cue, image, weight).  cue: "text" instruction, "picture" only, "both", or "none".
# image: None, "task" picture, or "distractor" (noise, blobs, discs, stripes: to be ignored).
MIX = (
    ("text", None, 0.20),
    ("text", "distractor", 0.25),
    ("picture", "task", 0.35),
    ("both", "task", 0.05),
    ("none", None, 0.05),
    ("none", "distractor", 0.10),
)


# --------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------


def operand_pairs(split: str | None = None) -> list[tuple[int, int]]:
    """All (a, b) operand pairs, or those of the toy benchmarks' "train" / "test" split (disjoint)."""
    pairs = [(a, b) for a in range(NUM_RANGE) for b in range(NUM_RANGE)]
    if split is None:
        return pairs
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}: expected 'train' or 'test'")
    # A fixed, scattered hold-out (not a block of numbers): (7a + 3b) mod 5 in {0, 1}.
    k, m = TEST_SHARE
    held = [(7 * a + 3 * b) % m < k for a, b in pairs]
    return [p for p, h in zip(pairs, held) if h == (split == "test")]


def operands_text(a: int, b: int) -> str:
    """The task input without any cue: the benchmarks' prompt."""
    return f"{a} and {b}"


def prompt_text(a: int, b: int, instruction: str | None = None) -> str:
    """The user's text: the instruction (if any) on its own line, then the numbers."""
    return operands_text(a, b) if not instruction else f"{instruction}\n{operands_text(a, b)}"


def tool_call(a: int, b: int) -> dict:
    """The expected call of the tool task."""
    return {"name": TOOL_NAME, "arguments": {"min": a, "sec": b}}


def answer(task: str, a: int, b: int) -> str:
    """The reference answer: the number as a string, or the tool call's JSON."""
    if task == "add":
        return str(a + b)
    if task == "sub":
        return str(a - b)
    if task == "mul":
        return str(a * b)
    if task == "max":
        return str(max(a, b))
    if task == "tool":
        return json.dumps(tool_call(a, b))
    raise ValueError(f"unknown toy task {task!r}; known: {TASKS}")


def completion(task: str, a: int, b: int) -> str:
    """The target completion the model is pretrained on."""
    if task == "tool":
        return f"<tool_call>{answer(task, a, b)}</tool_call>"
    return f"Answer: {answer(task, a, b)}"


# --------------------------------------------------------------------------------------------------
# Pictures (H, W, 3) uint8, drawn with 1-pixel anti-aliased edges from signed distances
# --------------------------------------------------------------------------------------------------


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return ys, xs


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    """Pixel coverage of a shape from its signed distance (negative inside), anti-aliased over 1 px."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0)


def _box_sd(ys, xs, cy, cx, hh, hw):
    """Signed distance to an axis-aligned rectangle of half-sizes (hh, hw)."""
    dy, dx = np.abs(ys - cy) - hh, np.abs(xs - cx) - hw
    outside = np.hypot(np.maximum(dy, 0), np.maximum(dx, 0))
    return outside + np.minimum(np.maximum(dy, dx), 0)


def _glyph_mask(glyph: str, size: int, cy: float, cx: float, s: float) -> np.ndarray:
    """Coverage in [0, 1] of a glyph of scale s (pixels) centred on (cy, cx)."""
    ys, xs = _grid(size)
    t = 0.22 * s  # stroke half-width
    if glyph == "plus":
        sd = np.minimum(_box_sd(ys, xs, cy, cx, t, s), _box_sd(ys, xs, cy, cx, s, t))
    elif glyph == "minus":
        sd = _box_sd(ys, xs, cy, cx, t, s)
    elif glyph == "box":
        sd = np.maximum(_box_sd(ys, xs, cy, cx, s, s), -_box_sd(ys, xs, cy, cx, s - 2 * t, s - 2 * t))
    elif glyph == "triangle":
        # Upward isosceles triangle: intersection of three half-planes (distances in pixels).
        apex, base = cy - s, cy + 0.8 * s
        n = np.hypot(2 * s, s)
        left = ((xs - cx) * 2 * s - (ys - apex) * s) / n  # distance beyond the right edge
        right = (-(xs - cx) * 2 * s - (ys - apex) * s) / n
        sd = np.maximum(np.maximum(left, right), ys - base)
    elif glyph == "disc":
        sd = np.hypot(ys - cy, xs - cx) - s
    else:
        raise ValueError(f"unknown glyph {glyph!r}")
    return _coverage(sd)


def _jitter_colour(rng: np.random.Generator, base, amount: float) -> np.ndarray:
    return np.clip(np.asarray(base, dtype=np.float64) + rng.uniform(-amount, amount, 3), 0, 255)


def _finish(img: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    img = img + rng.normal(0.0, noise, img.shape) if noise else img
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _smooth_field(rng: np.random.Generator, size: int, k: int, lo: float = 0.0, hi: float = 255.0) -> np.ndarray:
    """Bilinear upsampling of a random k x k colour grid to (size, size, 3), values in [lo, hi]."""
    coarse = rng.uniform(lo, hi, (k, k, 3))
    pos = np.linspace(0, k - 1, size)
    i0 = np.floor(pos).astype(int).clip(0, k - 2) if k > 1 else np.zeros(size, int)
    f = (pos - i0)[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[np.minimum(i0 + 1, k - 1)] * f[..., None]
    return rows[:, i0] * (1 - f[None]) + rows[:, np.minimum(i0 + 1, k - 1)] * f[None]


def draw_task_picture(task: str, rng: np.random.Generator, size: int = IMAGE_SIZE, kind: str = "glyph") -> np.ndarray:
    """The task's picture of `kind` (see `PICTURE_KINDS`), randomly jittered: (size, size, 3) uint8.

    glyph: the task's glyph in its colour, jittered background, colour, position and scale.
    texture: the task's 4x4 tile (`TEXTURE_TILES`) repeated from the top-left pixel, amplitude 30-80
    levels along a random colour direction, over a random smooth background (sides: multiples of 4).
    """
    if task not in PICTURE_STYLE:
        raise ValueError(f"task {task!r} has no picture; picture tasks: {PICTURE_TASKS}")
    if kind == "texture":
        if size % 4:
            raise ValueError(f"texture pictures need a side that is a multiple of 4, got {size}")
        bg = _smooth_field(rng, size, int(rng.integers(2, 5)), 40, 215)
        pattern = np.tile(TEXTURE_TILES[task], (size // 4, size // 4))
        direction = rng.normal(size=3)
        direction *= np.sqrt(3) / 2 / np.linalg.norm(direction)
        return _finish(bg + rng.uniform(30, 80) * pattern[..., None] * direction, rng, rng.uniform(0, 4))
    if kind != "glyph":
        raise ValueError(f"unknown picture kind {kind!r}; choose from {PICTURE_KINDS}")
    base, glyph = PICTURE_STYLE[task]
    bg = rng.uniform(200, 255) + rng.uniform(-15, 15, 3)
    fg = _jitter_colour(rng, base, 35)
    u = size / 64.0
    cy, cx = size / 2 + rng.uniform(-6, 6, 2) * u
    s = rng.uniform(15, 22) * u
    alpha = _glyph_mask(glyph, size, cy, cx, s)[..., None]
    img = (1 - alpha) * np.clip(bg, 0, 255) + alpha * fg
    return _finish(img, rng, rng.uniform(0, 6))


def draw_distractor(rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """An image that names no task (the model learns to ignore it): (size, size, 3) uint8."""
    kind = rng.integers(5)
    if kind == 0:  # uniform noise
        return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    if kind == 1:  # smooth colour field (bilinear upsampling of a coarse random grid)
        return _finish(_smooth_field(rng, size, int(rng.integers(2, 6))), rng, 3)
    if kind == 2:  # flat colour
        img = np.broadcast_to(rng.uniform(0, 255, 3), (size, size, 3))
        return _finish(img, rng, rng.uniform(0, 8))
    if kind == 3:  # a few random discs
        img = np.broadcast_to(rng.uniform(100, 255, 3), (size, size, 3)).copy()
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0, size, 2)
            alpha = _glyph_mask("disc", size, cy, cx, rng.uniform(4, 18) * size / 64)[..., None]
            img = (1 - alpha) * img + alpha * rng.uniform(0, 255, 3)
        return _finish(img, rng, 2)
    # stripes of two random colours
    ys, xs = _grid(size)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 20) * size / 64
    wave = 0.5 + 0.5 * np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * 2 * np.pi / period)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return _finish(c0 + wave[..., None] * (c1 - c0), rng, 2)


# --------------------------------------------------------------------------------------------------
# The pretraining mix
# --------------------------------------------------------------------------------------------------


def text_task_weights(mix=MIX, share: dict | None = None) -> np.ndarray:
    """P(task | text cue) that gives every task its share of the corpus (by default, the same share).

    Picture cues only name picture tasks, so the text-only task (`mul`) is drawn more often when
    the cue is text: e.g. 0.38 for mul and 0.16 for each other task with the default mix.
    `share`: relative corpus shares of some tasks (default 1 each); {"mul": 2.0} gives mul twice the
    share of every other task, drawn from the text cues the other tasks give up.
    """
    share = share or {}
    unknown = set(share) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown toy tasks in share: {sorted(unknown)}; known: {TASKS}")
    rel = np.array([float(share.get(t, 1.0)) for t in TASKS])
    if (rel <= 0).any():
        raise ValueError(f"task shares must be positive, got {share}")
    total = sum(w for *_, w in mix)
    pic = sum(w for cue, _, w in mix if cue in ("picture", "both")) / total
    text = sum(w for cue, _, w in mix if cue == "text") / total
    target = (pic + text) * rel / rel.sum()
    from_pictures = np.array([pic / len(PICTURE_TASKS) if t in PICTURE_TASKS else 0.0 for t in TASKS])
    if (target < from_pictures).any():
        raise ValueError(f"task shares {share} ask less of a picture task than its picture cues alone give")
    w = target - from_pictures
    return w / w.sum()


def sample_example(
    rng: np.random.Generator, size: int = IMAGE_SIZE, mix=MIX, pictures: str = "glyph", share: dict | None = None
) -> dict:
    """One pretraining example: {task, cue, prompt, image (uint8 HWC or None), image_kind, completion}.

    `pictures`: the kind of task picture drawn (see `PICTURE_KINDS`); `share`: see `text_task_weights`.
    """
    weights = np.array([w for *_, w in mix], dtype=np.float64)
    cue, image_kind, _ = mix[int(rng.choice(len(mix), p=weights / weights.sum()))]
    if cue in ("picture", "both"):
        task = PICTURE_TASKS[int(rng.integers(len(PICTURE_TASKS)))]
    else:
        task = TASKS[int(rng.choice(len(TASKS), p=text_task_weights(mix, share)))]
    a, b = (int(x) for x in rng.integers(0, NUM_RANGE, 2))
    instruction = None
    if cue in ("text", "both"):
        options = INSTRUCTIONS[task]
        instruction = options[int(rng.integers(len(options)))]
    image = None
    if image_kind == "task":
        image = draw_task_picture(task, rng, size, pictures)
    elif image_kind == "distractor":
        image = draw_distractor(rng, size)
    target = NO_CUE_REPLY if cue == "none" else completion(task, a, b)
    return {
        "task": None if cue == "none" else task,
        "cue": cue,
        "a": a,
        "b": b,
        "prompt": prompt_text(a, b, instruction),
        "image": image,
        "image_kind": image_kind,
        "completion": target,
    }


def sample_examples(
    rng: np.random.Generator,
    n: int,
    size: int = IMAGE_SIZE,
    mix=MIX,
    pictures: str = "glyph",
    share: dict | None = None,
) -> list[dict]:
    return [sample_example(rng, size, mix, pictures, share) for _ in range(n)]
