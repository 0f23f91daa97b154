"""Benchmark the built-in offline renderer, alone and followed by each output encoding.

Usage: ``python bench/bench_renderer.py [--repeat N]``

Prints a markdown table of the median and p90 wall time, in milliseconds, of
``render_artwork`` for 512x512 and 1024x1024, then of render + encode for PNG
(``compress_level=1``, the fast setting, and 3, what ``imagegate.storage.images`` uses today),
JPEG (quality 90) and WebP (quality 85). Each timed run uses a different prompt and seed so
nothing is accidentally reused; everything runs on one thread.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

from PIL import Image

from imagegate.providers.abstract_art import render_artwork

SIZES = ((512, 512), (1024, 1024))
PROMPTS = ("a red fox in the snow", "ocean at night", "sunset over a forest", "a quiet cafe")


def _encoder(format_name: str, **options: int) -> Callable[[Image.Image], int]:
    def encode(image: Image.Image) -> int:
        buffer = io.BytesIO()
        image.save(buffer, format_name, **options)
        return buffer.tell()

    return encode


PIPELINES: tuple[tuple[str, Callable[[Image.Image], int] | None], ...] = (
    ("render only", None),
    ("render + PNG (compress_level=1)", _encoder("PNG", compress_level=1)),
    ("render + PNG (compress_level=3)", _encoder("PNG", compress_level=3)),
    ("render + JPEG (quality=90)", _encoder("JPEG", quality=90)),
    ("render + WebP (quality=85)", _encoder("WEBP", quality=85)),
)


def _measure(
    size: tuple[int, int], encode: Callable[[Image.Image], int] | None, repeat: int
) -> tuple[list[float], int]:
    """Run the pipeline ``repeat`` times (after one warm-up); return timings and mean bytes."""
    timings: list[float] = []
    sizes: list[int] = []
    for run in range(-1, repeat):
        prompt = PROMPTS[run % len(PROMPTS)]
        start = time.perf_counter()
        image = render_artwork(prompt, run, *size)
        encoded = encode(image) if encode is not None else 0
        elapsed = (time.perf_counter() - start) * 1000
        if run >= 0:
            timings.append(elapsed)
            sizes.append(encoded)
    return timings, round(statistics.fmean(sizes))


def _p90(timings: list[float]) -> float:
    return statistics.quantiles(timings, n=10, method="inclusive")[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per cell (default 30)")
    args = parser.parse_args()
    repeat = max(2, args.repeat)

    print(f"render_artwork benchmark, {repeat} runs per row, one thread\n")
    print("| size | pipeline | median ms | p90 ms | mean output KiB |")
    print("|---|---|---:|---:|---:|")
    for width, height in SIZES:
        for label, encode in PIPELINES:
            timings, output_bytes = _measure((width, height), encode, repeat)
            kib = f"{output_bytes / 1024:.0f}" if encode is not None else "-"
            print(
                f"| {width}x{height} | {label} | {statistics.median(timings):.1f} "
                f"| {_p90(timings):.1f} | {kib} |"
            )


if __name__ == "__main__":
    main()
