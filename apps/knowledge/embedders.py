"""Which embedder serves a knowledge base: the builtin offline one, or a provider model of the
organization answering OpenAI-compatible ``/embeddings`` (asked for ``EMBEDDING_DIMENSIONS``)."""

from __future__ import annotations

from collections.abc import Callable

from rest_framework.exceptions import APIException

from apps.agents.runtime import client_for, model_resolve
from apps.knowledge.models import EMBEDDING_DIMENSIONS
from kai_platform.llm import OPENAI_COMPATIBLE
from kai_platform.llm.base import LLMError
from kai_platform.llm.embeddings import builtin_embed, openai_embed

Embedder = Callable[[list[str]], list[list[float]]]
BATCH_SIZE = 64


class EmbeddingUnavailable(Exception):
    """The knowledge base's embedding model cannot be used (message for the user)."""


def is_builtin(name: str) -> bool:
    return not name or name.strip().lower().startswith("builtin")


def _resolve(*, organization, name: str):
    try:
        resolved = model_resolve(organization=organization, name=name)
    except APIException as exc:
        raise EmbeddingUnavailable(str(exc.detail)) from exc
    if resolved.note:  # a fallback to builtin would embed with another model than the one named
        raise EmbeddingUnavailable(f"embedding model {name!r} has no configured provider")
    if resolved.provider_type != "builtin" and resolved.provider_type not in OPENAI_COMPATIBLE:
        raise EmbeddingUnavailable(
            f"embedding model {name!r} is served by a {resolved.provider_type} provider; "
            "embeddings need an OpenAI-compatible one (or 'builtin')"
        )
    return resolved


def check_model(*, organization, name: str) -> None:
    if not is_builtin(name):
        _resolve(organization=organization, name=name)


def embedder_for(knowledge_base) -> Embedder:
    name = knowledge_base.embedding_model or "builtin"
    if is_builtin(name):
        return builtin_embed
    resolved = _resolve(organization=knowledge_base.organization, name=name)
    if resolved.provider_type == "builtin":
        return builtin_embed

    client = client_for(organization=knowledge_base.organization, resolved=resolved)

    def embed(texts: list[str]) -> list[list[float]]:
        try:
            vectors = openai_embed(client, texts, dimensions=EMBEDDING_DIMENSIONS)
        except LLMError as exc:
            raise EmbeddingUnavailable(f"embedding with {name!r} failed ({exc.kind}): {exc.message}") from exc
        wrong = next((len(v) for v in vectors if len(v) != EMBEDDING_DIMENSIONS), None)
        if wrong is not None:
            raise EmbeddingUnavailable(
                f"{name!r} returned {wrong}-dimensional embeddings; knowledge bases store "
                f"{EMBEDDING_DIMENSIONS} (use a model that accepts `dimensions`)"
            )
        return vectors

    return embed


def embed_batched(
    embed: Embedder,
    texts: list[str],
    *,
    on_batch: Callable[[int, int], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> list[list[float]]:
    vectors: list[list[float]] = []
    for start in range(0, len(texts), batch_size):
        vectors.extend(embed(texts[start : start + batch_size]))
        if on_batch:
            on_batch(len(vectors), len(texts))
    return vectors
