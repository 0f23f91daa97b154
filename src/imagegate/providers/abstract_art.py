"""Deterministic abstract-art renderer behind the built-in offline provider.

This is NOT a generative model. It paints a pleasant abstract picture (a multi-stop gradient,
a soft glow, translucent bands, blobs, rings and waves) whose palette and composition come
from the prompt and seed, so the gateway can be developed, demonstrated and tested offline
with no AI provider configured.

Output is fully deterministic: the same ``(prompt, seed, width, height)`` always yields
byte-identical pixels, in any process. That keeps the response cache and tests reproducible.
All randomness comes from a ``random.Random`` seeded with a SHA-256 of seed and prompt (never
the global generator, never the per-process salted ``hash()``). Shapes are placed relative to
the image size, so every aspect ratio gets the same composition. For speed (Pillow only, about
20 ms for 1024x1024) drawing happens on a small supersampled canvas that is box-reduced, which
antialiases the edges, then upscaled with a bicubic filter.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import random
import re

from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
Palette = tuple[RGB, ...]
Size = tuple[int, int]

_DRAW_LONG_SIDE = 320
"""Long side, in pixels, of the canvas the art is drawn on before upscaling."""

_SUPERSAMPLE = 2
"""Shapes are drawn this many times larger, then box-reduced, to antialias their edges."""

_PALETTES: dict[str, Palette] = {
    "red": ((70, 8, 18), (150, 20, 35), (210, 45, 50), (240, 110, 80), (255, 190, 160)),
    "blue": ((8, 20, 70), (20, 60, 150), (40, 110, 210), (100, 170, 240), (200, 230, 255)),
    "green": ((10, 50, 25), (30, 100, 50), (70, 160, 80), (150, 210, 120), (220, 245, 200)),
    "gold": ((80, 50, 10), (170, 110, 20), (220, 170, 40), (245, 210, 100), (255, 240, 190)),
    "purple": ((35, 10, 60), (80, 30, 130), (130, 60, 190), (185, 120, 230), (230, 200, 255)),
    "orange": ((90, 30, 5), (190, 80, 15), (240, 130, 30), (250, 180, 90), (255, 225, 180)),
    "pink": ((110, 20, 60), (200, 60, 120), (240, 120, 170), (250, 180, 210), (255, 230, 240)),
    "black": ((5, 5, 8), (20, 20, 28), (45, 45, 55), (90, 90, 105), (160, 160, 175)),
    "white": ((170, 175, 185), (215, 218, 225), (235, 236, 240), (248, 248, 250), (255, 255, 255)),
    "teal": ((5, 50, 55), (10, 100, 105), (30, 150, 150), (90, 200, 190), (190, 240, 230)),
    "sunset": ((40, 20, 70), (150, 40, 90), (235, 90, 70), (250, 160, 60), (255, 220, 130)),
    "ocean": ((5, 25, 60), (10, 70, 120), (20, 120, 170), (60, 180, 200), (180, 235, 240)),
    "forest": ((15, 35, 20), (30, 70, 35), (60, 110, 50), (120, 150, 70), (200, 210, 150)),
    "night": ((5, 8, 25), (15, 20, 55), (40, 40, 100), (90, 80, 160), (230, 220, 170)),
    "snow": ((150, 170, 200), (195, 210, 230), (225, 235, 245), (245, 248, 252), (255, 255, 255)),
    "fire": ((60, 5, 0), (160, 30, 5), (230, 80, 10), (250, 160, 20), (255, 230, 120)),
}

_SYNONYMS = (
    "crimson:red scarlet:red ruby:red azure:blue navy:blue sapphire:blue emerald:green jade:green "
    "golden:gold yellow:gold violet:purple lavender:purple magenta:pink rose:pink dark:black "
    "ivory:white cyan:teal turquoise:teal dusk:sunset sunrise:sunset sea:ocean waves:ocean "
    "woods:forest jungle:forest midnight:night stars:night winter:snow ice:snow flame:fire "
    "lava:fire"
)
"""Extra words that select one of the palettes, as ``word:palette`` pairs."""
_ALIASES: dict[str, str] = {
    alias: name for alias, _, name in (pair.partition(":") for pair in _SYNONYMS.split())
}

_HARMONIES: tuple[tuple[float, ...], ...] = (
    (0.0, 0.06, -0.06, 0.03, 0.0),  # analogous
    (0.0, 0.5, 0.0, 0.5, 0.04),  # complementary
    (0.0, 1 / 3, 2 / 3, 0.0, 1 / 3),  # triadic
    (0.0, 0.42, 0.58, 0.0, 0.5),  # split complementary
)


def render_artwork(prompt: str, seed: int, width: int, height: int) -> Image.Image:
    """Paint a deterministic abstract RGB picture of exactly ``width`` x ``height`` pixels."""
    rng = _rng(prompt, seed)
    palette = _palette(prompt, rng)
    scale = min(1.0, _DRAW_LONG_SIDE / max(width, height)) * _SUPERSAMPLE
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = _gradient(size, palette, rng)
    _add_glow(canvas, rng.choice(palette[-max(2, len(palette) // 3) :]), rng)
    draw = ImageDraw.Draw(canvas, "RGBA")
    _add_bands(draw, size, palette, rng)
    _add_blobs(draw, size, palette, rng)
    _add_rings(draw, size, palette, rng)
    _add_waves(draw, size, palette, rng)
    canvas = canvas.reduce(_SUPERSAMPLE) if min(size) >= 2 * _SUPERSAMPLE else canvas
    return canvas.resize((width, height), Image.Resampling.BICUBIC)


def _rng(prompt: str, seed: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _palette(prompt: str, rng: random.Random) -> Palette:
    """Five or more colours ordered dark to light: from colour words if any, else the hash."""
    words = re.findall(r"[a-z]+", prompt.lower())
    names = list(dict.fromkeys(_ALIASES.get(word, word) for word in words))
    matched = [name for name in names if name in _PALETTES][:3]
    if not matched:
        return _hash_palette(rng)
    colours = [_jitter(colour, rng) for name in matched for colour in _PALETTES[name]]
    return tuple(sorted(colours, key=_luminance))


def _hash_palette(rng: random.Random) -> Palette:
    base = rng.random()
    harmony = rng.choice(_HARMONIES)
    saturation = rng.uniform(0.4, 0.7)
    lightness = (0.14, 0.32, 0.5, 0.64, 0.84)
    colours = [
        _hls(base + offset + rng.uniform(-0.02, 0.02), light, saturation * rng.uniform(0.85, 1.1))
        for offset, light in zip(harmony, lightness, strict=True)
    ]
    return tuple(sorted(colours, key=_luminance))


def _hls(hue: float, lightness: float, saturation: float) -> RGB:
    r, g, b = colorsys.hls_to_rgb(hue % 1.0, lightness, min(1.0, saturation))
    return round(r * 255), round(g * 255), round(b * 255)


def _jitter(colour: RGB, rng: random.Random) -> RGB:
    r, g, b = (min(255, max(0, channel + rng.randint(-12, 12))) for channel in colour)
    return r, g, b


def _luminance(colour: RGB) -> float:
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def _gradient(size: Size, palette: Palette, rng: random.Random) -> Image.Image:
    """A rotated linear gradient through three or four palette colours."""
    count = rng.choice((3, 4))
    stops = [*sorted(rng.sample(range(len(palette) - 1), count - 1)), len(palette) - 1]
    stops = stops if rng.random() < 0.5 else [0, *stops[1:]]
    colours = [palette[index] for index in stops]
    if rng.random() < 0.5:
        colours.reverse()
    lut = [
        _lerp_stops(colours, level / 255, channel) for channel in range(3) for level in range(256)
    ]
    small = (max(1, size[0] // 4), max(1, size[1] // 4))  # smooth, so render it small
    side = math.ceil(math.hypot(*small)) + 2
    ramp = Image.linear_gradient("L").resize((side, side), Image.Resampling.BILINEAR)
    ramp = ramp.rotate(rng.uniform(-60.0, 60.0), Image.Resampling.BILINEAR)
    left, top = (side - small[0]) // 2, (side - small[1]) // 2
    ramp = ramp.crop((left, top, left + small[0], top + small[1]))
    colour = Image.merge("RGB", (ramp, ramp, ramp)).point(lut)
    return colour.resize(size, Image.Resampling.BILINEAR)


def _lerp_stops(colours: list[RGB], position: float, channel: int) -> int:
    span = position * (len(colours) - 1)
    index = min(int(span), len(colours) - 2)
    t = span - index
    t = t * t * (3 - 2 * t)
    return round(colours[index][channel] * (1 - t) + colours[index + 1][channel] * t)


def _box(x: float, y: float, radius: float) -> tuple[float, float, float, float]:
    return x - radius, y - radius, x + radius, y + radius


def _add_glow(canvas: Image.Image, colour: RGB, rng: random.Random) -> None:
    """A large soft light spot, like a sun or a lamp behind the composition."""
    width, height = canvas.size
    radius = max(1, round(max(width, height) * rng.uniform(0.3, 0.6)))
    strength = rng.uniform(0.45, 0.8)
    mask = Image.radial_gradient("L").resize((2 * radius, 2 * radius), Image.Resampling.BILINEAR)
    falloff = [math.exp(-4.0 * (level / 128) ** 2) if level < 128 else 0.0 for level in range(256)]
    mask = mask.point([round(value * 255 * strength) for value in falloff])
    centre = (round(width * rng.uniform(0.15, 0.85)), round(height * rng.uniform(0.1, 0.6)))
    canvas.paste(colour, (centre[0] - radius, centre[1] - radius), mask)


def _add_bands(draw: ImageDraw.ImageDraw, size: Size, palette: Palette, rng: random.Random) -> None:
    """Broad translucent diagonal stripes across the whole picture."""
    width, height = size
    slope = math.tan(math.radians(rng.uniform(-35.0, 35.0))) * width
    for _ in range(rng.randint(1, 3)):
        top, thickness = height * rng.uniform(-0.1, 0.7), height * rng.uniform(0.04, 0.16)
        bottom = top + thickness
        corners = [(0.0, top), (width, top + slope), (width, bottom + slope), (0.0, bottom)]
        draw.polygon(corners, fill=(*rng.choice(palette), rng.randint(30, 80)))


def _add_blobs(draw: ImageDraw.ImageDraw, size: Size, palette: Palette, rng: random.Random) -> None:
    """Translucent circles of several sizes, each with a smaller highlight echo."""
    width, height = size
    unit = min(width, height)
    for _ in range(rng.randint(5, 9)):
        radius = unit * rng.uniform(0.04, 0.3)
        x, y = width * rng.uniform(0.0, 1.0), height * rng.uniform(0.0, 1.0)
        draw.ellipse(_box(x, y, radius), fill=(*rng.choice(palette), rng.randint(60, 150)))
        highlight = _box(x + radius / 4, y - radius / 4, radius * rng.uniform(0.3, 0.6))
        draw.ellipse(highlight, fill=(*palette[-1], rng.randint(25, 70)))


def _add_rings(draw: ImageDraw.ImageDraw, size: Size, palette: Palette, rng: random.Random) -> None:
    """A few thin concentric arcs for some linear structure."""
    width, height = size
    unit = min(width, height)
    x, y = width * rng.uniform(0.2, 0.8), height * rng.uniform(0.2, 0.8)
    line = max(1, round(unit / 90))
    for index in range(rng.randint(2, 4)):
        radius = unit * (0.18 + 0.09 * index) * rng.uniform(0.9, 1.1)
        start, fill = rng.uniform(0, 360), (*palette[-1], rng.randint(70, 140))
        draw.arc(_box(x, y, radius), start, start + rng.uniform(90, 300), fill=fill, width=line)


def _add_waves(draw: ImageDraw.ImageDraw, size: Size, palette: Palette, rng: random.Random) -> None:
    """Layered translucent sine hills rising from the bottom, darker towards the front."""
    width, height = size
    layers = rng.randint(2, 4)
    step = max(1, width // 64)
    for layer in range(layers):
        base = height * (0.55 + 0.35 * (layer + 1) / (layers + 1))
        amplitude = min(width, height) * rng.uniform(0.03, 0.09)
        freq, phase = rng.uniform(0.6, 2.2), rng.uniform(0, math.tau)
        ripple = rng.uniform(2.5, 5.0)
        points = [(0.0, float(height))]
        for x in range(0, width + step, step):
            u = x / max(1, width)
            wave = math.sin(math.tau * freq * u + phase) + 0.3 * math.sin(math.tau * ripple * u)
            points.append((float(x), base + amplitude * wave))
        points.append((float(width), float(height)))
        colour = palette[(layers - 1 - layer) * 2 % len(palette)]
        draw.polygon(points, fill=(*colour, rng.randint(110, 190)))
