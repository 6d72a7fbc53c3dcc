"""Text embeddings: the builtin offline embedder and OpenAI-compatible ``/embeddings``.

The builtin embedder is deterministic feature hashing: the lower-cased words of a text and its word
bigrams and trigrams are each hashed (BLAKE2b, so every process and machine agrees; Python's
``hash()`` is salted per process) to one of ``BUILTIN_DIMENSIONS`` slots with a sign, weighted
(1 + log tf; n-grams count less than words), and the vector is L2-normalised so cosine distance
compares texts by the words and phrases they share.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from kai_platform.llm.base import LLMError, error_chain

if TYPE_CHECKING:
    from kai_platform.llm.openai_compat import OpenAICompatibleClient

BUILTIN_DIMENSIONS = 384
#: weight of a word, a bigram and a trigram
NGRAM_WEIGHTS = (1.0, 0.6, 0.35)
_WORD_RE = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=200_000)
def _slot(feature: str, dimensions: int) -> tuple[int, float]:
    digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
    return digest % dimensions, (1.0 if (digest >> 63) & 1 else -1.0)


def builtin_embedding(text: str, dimensions: int = BUILTIN_DIMENSIONS) -> list[float]:
    """One text → a unit vector (all zeros for a text without words)."""
    words = _WORD_RE.findall((text or "").lower())
    features: Counter[tuple[str, float]] = Counter()
    for n, weight in enumerate(NGRAM_WEIGHTS, start=1):
        for i in range(len(words) - n + 1):
            features[(" ".join(words[i : i + n]), weight)] += 1
    vector = [0.0] * dimensions
    for (feature, weight), count in features.items():
        index, sign = _slot(feature, dimensions)
        vector[index] += sign * weight * (1.0 + math.log(count))
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def builtin_embed(texts: list[str], dimensions: int = BUILTIN_DIMENSIONS) -> list[list[float]]:
    return [builtin_embedding(t, dimensions) for t in texts]


def openai_embed(
    client: OpenAICompatibleClient, texts: list[str], *, dimensions: int | None = None
) -> list[list[float]]:
    """``POST {base_url}/embeddings`` through an ``OpenAICompatibleClient``'s SDK client (the SSRF
    guard, its key and timeout). ``dimensions`` asks models that can shorten their vectors to."""
    # deferred: heavy — openai_compat loads the OpenAI SDK; only a provider's embedding call needs it
    from kai_platform.llm.openai_compat import map_sdk_error

    kwargs: dict[str, Any] = {"model": client.model, "input": list(texts)}
    if dimensions:
        kwargs["dimensions"] = dimensions
    try:
        with client._sdk_client() as sdk:
            answer = sdk.embeddings.create(**kwargs)
    except LLMError:
        raise
    except Exception as exc:
        for inner in error_chain(exc):
            if isinstance(inner, LLMError):
                raise inner from exc
        raise map_sdk_error(exc, client.provider_type, client.timeout) from exc
    rows = sorted(answer.data, key=lambda item: item.index)
    if len(rows) != len(texts):
        raise LLMError(
            f"{client.provider_type} returned {len(rows)} embeddings for {len(texts)} texts",
            provider=client.provider_type,
        )
    return [list(row.embedding) for row in rows]
