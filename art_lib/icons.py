"""Seed icons drawn with PIL.ImageDraw: starting artworks for pixel-prompt training.

Every icon is drawn in unit coordinates on a 4x supersampled canvas and downsampled
with LANCZOS, so edges are anti-aliased at any size.  No fonts, files or randomness
are involved, so the same call always returns the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from PIL import Image, ImageDraw, ImageOps

ICON_NAMES: tuple[str, ...] = ("math", "reasoning", "tools")

_SUPERSAMPLE = 4  # draw at 4x then LANCZOS-downsample: cheap, good anti-aliasing
_BACKGROUND = (255, 255, 255)  # pure white: exactly representable as 1.0 in a PixelPrompt

Point = tuple[float, float]
RGB = tuple[int, int, int]
RGBA = tuple[int, int, int, int]


class _Pen:
    """Draws shapes given in unit coordinates ([0, 1] x [0, 1]) onto a square canvas."""

    def __init__(self, image: Image.Image) -> None:
        self.draw = ImageDraw.Draw(image)
        self.scale = float(image.size[0])

    def _px(self, p: Point) -> tuple[float, float]:
        """Unit coordinates -> canvas pixels."""
        return (p[0] * self.scale, p[1] * self.scale)

    def circle(self, c: Point, r: float, fill: RGB | RGBA | int) -> None:
        """Filled disc of radius r centred on c."""
        x, y = self._px(c)
        s = r * self.scale
        self.draw.ellipse((x - s, y - s, x + s, y + s), fill=fill)

    def ellipse(self, c: Point, rx: float, ry: float, fill: RGB | RGBA | int) -> None:
        """Filled axis-aligned ellipse centred on c."""
        x, y = self._px(c)
        self.draw.ellipse(
            (x - rx * self.scale, y - ry * self.scale, x + rx * self.scale, y + ry * self.scale), fill=fill
        )

    def polygon(self, pts: Sequence[Point], fill: RGB | RGBA | int) -> None:
        """Filled polygon."""
        self.draw.polygon([self._px(p) for p in pts], fill=fill)

    def bar(self, p0: Point, p1: Point, half_width: float, fill: RGB | RGBA | int, round_caps: bool = False) -> None:
        """Rectangle of the given half-width along the segment p0-p1 (a capsule if round_caps)."""
        dx, dy = p1[0] - p0[0], p1[1] - p0[1]
        n = math.hypot(dx, dy) or 1.0
        # Unit normal to the segment, scaled to the half-width.
        nx, ny = -dy / n * half_width, dx / n * half_width
        self.polygon(
            [(p0[0] + nx, p0[1] + ny), (p1[0] + nx, p1[1] + ny), (p1[0] - nx, p1[1] - ny), (p0[0] - nx, p0[1] - ny)],
            fill,
        )
        if round_caps:
            self.circle(p0, half_width, fill)
            self.circle(p1, half_width, fill)

    def rounded_rect(self, box: tuple[float, float, float, float], radius: float, fill: RGB | RGBA | int) -> None:
        """Axis-aligned rounded rectangle (x0, y0, x1, y1)."""
        x0, y0 = self._px(box[:2])
        x1, y1 = self._px(box[2:])
        self.draw.rounded_rectangle((x0, y0, x1, y1), radius=radius * self.scale, fill=fill)

    def arc(self, c: Point, r: float, start: float, end: float, width: float, fill: RGB | RGBA | int) -> None:
        """Circular arc (degrees, clockwise from +x as in PIL) with round ends."""
        x, y = self._px(c)
        s = r * self.scale
        w = width * self.scale
        # PIL draws the stroke inside the bounding box, so grow the box by half the width
        # to keep the stroke centred on radius r.
        self.draw.arc(
            (x - s - w / 2, y - s - w / 2, x + s + w / 2, y + s + w / 2), start, end, fill=fill, width=max(1, round(w))
        )
        for a in (start, end):
            t = math.radians(a)
            self.circle((c[0] + r * math.cos(t), c[1] + r * math.sin(t)), width / 2, fill)


def _frame(origin: Point, angle_deg: float) -> Callable[[float, float], Point]:
    """Local frame: (a, b) -> origin + a*u + b*v, u at angle_deg (y down), v its normal."""
    t = math.radians(angle_deg)
    ux, uy = math.cos(t), math.sin(t)
    vx, vy = -uy, ux
    return lambda a, b: (origin[0] + a * ux + b * vx, origin[1] + a * uy + b * vy)


def _draw_math(canvas: Image.Image) -> None:
    """2x2 grid of rounded tiles holding bold +, -, x and ÷ symbols."""
    pen = _Pen(canvas)
    tile_colors: tuple[RGB, ...] = ((37, 99, 235), (29, 78, 216), (30, 64, 175), (59, 130, 246))
    ink: RGB = (255, 255, 255)
    arm, hw = 0.13, 0.035  # symbol half-length and stroke half-width
    centres = ((0.28, 0.28), (0.72, 0.28), (0.28, 0.72), (0.72, 0.72))
    for (cx, cy), color in zip(centres, tile_colors):
        pen.rounded_rect((cx - 0.2, cy - 0.2, cx + 0.2, cy + 0.2), 0.06, color)
    # plus
    cx, cy = centres[0]
    pen.bar((cx - arm, cy), (cx + arm, cy), hw, ink, round_caps=True)
    pen.bar((cx, cy - arm), (cx, cy + arm), hw, ink, round_caps=True)
    # minus
    cx, cy = centres[1]
    pen.bar((cx - arm, cy), (cx + arm, cy), hw, ink, round_caps=True)
    # times: the plus rotated by 45 degrees
    cx, cy = centres[2]
    d = arm / math.sqrt(2)
    pen.bar((cx - d, cy - d), (cx + d, cy + d), hw, ink, round_caps=True)
    pen.bar((cx - d, cy + d), (cx + d, cy - d), hw, ink, round_caps=True)
    # divide: minus with a dot above and below
    cx, cy = centres[3]
    pen.bar((cx - arm, cy), (cx + arm, cy), hw, ink, round_caps=True)
    pen.circle((cx, cy - 0.085), 0.042, ink)
    pen.circle((cx, cy + 0.085), 0.042, ink)


def _draw_reasoning(canvas: Image.Image) -> None:
    """Top view of a brain: two mirrored pink hemispheres with a fissure and folds."""
    size = canvas.size[0]
    fill: RGBA = (244, 143, 177, 255)
    ink: RGBA = (173, 20, 87, 255)
    line = 0.022  # outline / fold stroke width
    clear: RGBA = (0, 0, 0, 0)

    # Left hemisphere = union of an ellipse and bumps along its outer edge (the lobes).
    # Drawing every piece grown by the stroke width in ink first, then the pieces in the
    # fill colour, outlines the union rather than each piece.
    body = ((0.30, 0.50), 0.20, 0.30)
    bumps = [
        ((0.30 + 0.18 * math.cos(math.radians(a)), 0.50 + 0.26 * math.sin(math.radians(a))), 0.085)
        for a in (95, 130, 165, 200, 235, 270)
    ]
    layers = []
    for grow, color, edge in ((line, ink, 0.494), (0.0, fill, 0.494 - line)):
        layer = Image.new("RGBA", canvas.size, clear)
        pen = _Pen(layer)
        pen.ellipse(body[0], body[1] + grow, body[2] + grow, color)
        for c, r in bumps:
            pen.circle(c, r + grow, color)
        # Flat inner edge: clear everything right of it (ImageDraw writes RGBA values as-is).
        pen.draw.rectangle((edge * size, 0, size, size), fill=clear)
        layers.append(layer)
    half = Image.alpha_composite(*layers)
    pen = _Pen(half)

    # Folds (gyri): short curved strokes inside the hemisphere.
    folds = (
        ((0.33, 0.30), 0.075, 150, 330),
        ((0.22, 0.43), 0.065, 250, 70),
        ((0.38, 0.47), 0.06, 90, 270),
        ((0.25, 0.62), 0.07, 300, 120),
        ((0.38, 0.70), 0.06, 120, 300),
    )
    for c, r, a0, a1 in folds:
        pen.arc(c, r, a0, a1, line, ink)

    # The right hemisphere is the mirror image; the gap between them is the fissure.
    brain = Image.alpha_composite(half, ImageOps.mirror(half))
    canvas.paste(brain, (0, 0), brain)


def _draw_tools(canvas: Image.Image) -> None:
    """A wrench crossed over a screwdriver."""
    steel: RGB = (84, 98, 117)
    shaft_color: RGB = (128, 139, 153)
    handle: RGB = (245, 124, 0)
    grip: RGB = (191, 84, 0)

    # Screwdriver: handle at the lower right, tip towards the upper left.
    sd = Image.new("L", canvas.size, 0)
    pen = _Pen(sd)
    f = _frame((0.80, 0.80), 225.0)  # u points from the handle end towards the tip
    pen.bar(f(0.30, 0.0), f(0.66, 0.0), 0.026, 255)  # shaft
    pen.polygon([f(0.65, -0.026), f(0.74, -0.015), f(0.74, 0.015), f(0.65, 0.026)], 255)  # flat tip
    sd_handle = Image.new("L", canvas.size, 0)
    hpen = _Pen(sd_handle)
    hpen.bar(f(0.0, 0.0), f(0.30, 0.0), 0.07, 255, round_caps=True)
    canvas.paste(shaft_color, (0, 0), sd)
    canvas.paste(handle, (0, 0), sd_handle)
    # Grip grooves along the handle.
    gpen = _Pen(canvas)
    for a in (0.06, 0.13, 0.20):
        gpen.bar(f(a, -0.045), f(a, 0.045), 0.011, grip, round_caps=True)

    # Wrench: box end at the lower left, open jaw at the upper right.
    wr = Image.new("L", canvas.size, 0)
    pen = _Pen(wr)
    g = _frame((0.22, 0.78), -45.0)  # u points from the box end towards the jaw
    length = 0.64
    pen.bar(g(0.0, 0.0), g(length, 0.0), 0.05, 255)
    pen.circle(g(0.0, 0.0), 0.09, 255)
    pen.circle(g(0.0, 0.0), 0.042, 0)  # hole of the box end
    pen.circle(g(length, 0.0), 0.13, 255)
    # Open jaw: a slot from just past the head centre out through its far side.
    pen.polygon([g(length - 0.02, -0.05), g(length + 0.2, -0.065), g(length + 0.2, 0.065), g(length - 0.02, 0.05)], 0)
    pen.circle(g(length - 0.02, 0.0), 0.05, 0)
    canvas.paste(steel, (0, 0), wr)


_DRAWERS: dict[str, Callable[[Image.Image], None]] = {
    "math": _draw_math,
    "reasoning": _draw_reasoning,
    "tools": _draw_tools,
}


def seed_icon(name: str, size: int = 256) -> Image.Image:
    """Return the named seed icon as a size x size RGB image on a white background."""
    if name not in _DRAWERS:
        raise ValueError(f"unknown icon {name!r}; valid names: {', '.join(ICON_NAMES)}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    big = size * _SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), _BACKGROUND)
    _DRAWERS[name](canvas)
    return canvas.resize((size, size), Image.Resampling.LANCZOS)
