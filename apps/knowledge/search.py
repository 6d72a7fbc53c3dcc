"""Search of a knowledge base: by vector (pgvector cosine distance, HNSW), by text (PostgreSQL
full text, ``ts_rank_cd``: chunks with every query word — web-search syntax, quotes and ``-`` —
else with any of them) or hybrid — reciprocal-rank fusion of the two rankings,
score = Σ 1 / (RRF_K + rank). One SQL statement per search (``search_sql`` builds it; the bench
runs the same text raw)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.db import connection, transaction

from apps.knowledge import embedders

MODES = ("hybrid", "vector", "text")
MAX_TOP_K = 50
RRF_K = 60
#: candidates each ranking contributes to the fusion, per result wanted
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 40
#: chunks the text ranking scores at most (of those with every query word; of those with any word
#: when none has all): a bound on ``ts_rank_cd`` work for queries of very common words
TEXT_RANK_CAP = 1000


@dataclass
class Hit:
    chunk_id: str
    document_id: str
    document_name: str
    text: str
    score: float
    position: int
    metadata: dict

    def as_dict(self) -> dict:
        return {
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "document_name": self.document_name,
            "text": self.text,
            "score": self.score,
            "position": self.position,
            "metadata": self.metadata,
        }


def vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(f"{v:.6g}" for v in vector) + "]"


def _filters(*, organization_id, knowledge_base_ids, document_ids, metadata) -> tuple[str, list]:
    sql = " c.organization_id = %s AND c.knowledge_base_id = ANY(%s::uuid[])"
    params: list = [str(organization_id), [str(i) for i in knowledge_base_ids]]
    if document_ids:
        sql += " AND c.document_id = ANY(%s::uuid[])"
        params.append([str(i) for i in document_ids])
    if metadata:
        sql += (
            " AND (c.metadata @> %s::jsonb OR EXISTS (SELECT 1 FROM knowledge_document fd "
            "WHERE fd.id = c.document_id AND (fd.metadata || c.metadata) @> %s::jsonb))"
        )
        params += [json.dumps(metadata), json.dumps(metadata)]
    return sql, params


def search_sql(
    *,
    mode: str,
    organization_id,
    knowledge_base_ids,
    vector: list[float] | None,
    query: str,
    language: str,
    top_k: int,
    document_ids=None,
    metadata=None,
) -> tuple[str, list]:
    """The statement and its parameters. Rows: chunk id, document id, document name, text, score,
    position, metadata."""
    where, wparams = _filters(
        organization_id=organization_id,
        knowledge_base_ids=knowledge_base_ids,
        document_ids=document_ids,
        metadata=metadata,
    )
    candidates = max(MIN_CANDIDATES, top_k * CANDIDATES_PER_RESULT) if mode == "hybrid" else top_k
    legs, params = [], []
    if mode in ("hybrid", "vector") and vector is not None:
        legs.append(f"""vec AS (SELECT c.id, 1 - (c.embedding <=> %s::vector) AS score,
            row_number() OVER (ORDER BY c.embedding <=> %s::vector) AS rank
            FROM knowledge_chunk c WHERE {where} AND c.embedding IS NOT NULL
            ORDER BY c.embedding <=> %s::vector LIMIT %s)""")
        literal = vector_literal(vector)
        params += [literal, literal, *wparams, literal, candidates]
    if mode in ("hybrid", "text"):
        legs.append(f"""tsq AS (SELECT CASE WHEN EXISTS (SELECT 1 FROM knowledge_chunk c WHERE {where}
                AND c.search_vector @@ a.every) THEN a.every ELSE a.anyword END AS q
            FROM (SELECT websearch_to_tsquery(%s::regconfig, %s) AS every,
                         replace(plainto_tsquery(%s::regconfig, %s)::text, '&', '|')::tsquery AS anyword) a)""")
        legs.append(f"""txt AS (SELECT m.id, ts_rank_cd(m.search_vector, tsq.q) AS score,
            row_number() OVER (ORDER BY ts_rank_cd(m.search_vector, tsq.q) DESC, m.id) AS rank
            FROM (SELECT c.id, c.search_vector FROM knowledge_chunk c, tsq WHERE {where}
                  AND c.search_vector @@ tsq.q LIMIT {TEXT_RANK_CAP}) m, tsq
            ORDER BY ts_rank_cd(m.search_vector, tsq.q) DESC, m.id LIMIT %s)""")
        params += [*wparams, language, query, language, query, *wparams, candidates]
    if not legs:
        return "", []
    names = [leg.split(" ", 1)[0] for leg in legs if not leg.startswith("tsq ")]
    if mode == "hybrid":
        union = " UNION ALL ".join(f"SELECT id, rank FROM {n}" for n in names)
        ranked = f"SELECT id, sum(1.0 / ({RRF_K} + rank)) AS score FROM ({union}) u GROUP BY id"
    else:
        ranked = f"SELECT id, score FROM {names[0]}"
    sql = (
        f"WITH {', '.join(legs)}, ranked AS ({ranked}) "
        "SELECT c.id, c.document_id, d.name, c.text, r.score, c.position, c.metadata "
        "FROM ranked r JOIN knowledge_chunk c ON c.id = r.id JOIN knowledge_document d ON d.id = c.document_id "
        "ORDER BY r.score DESC, c.document_id, c.position LIMIT %s"
    )
    return sql, params + [top_k]


#: pgvector's default ``hnsw.ef_search``
DEFAULT_EF_SEARCH = 40


def ef_search(top_k: int) -> int:
    """HNSW candidate list for a search: at least the candidates the fusion takes, bounded."""
    return min(1000, max(MIN_CANDIDATES, top_k * CANDIDATES_PER_RESULT))


def run_sql(sql: str, params: list, *, top_k: int) -> list[tuple]:
    """The statement; in a transaction with ``SET LOCAL hnsw.ef_search`` only when the default
    candidate list is too short for ``top_k`` (two round trips saved on the usual search)."""
    ef = ef_search(top_k)
    if ef <= DEFAULT_EF_SEARCH:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
        cursor.execute(sql, params)
        return cursor.fetchall()


def search(
    *, knowledge_bases: list, query: str, top_k: int = 5, mode: str = "hybrid", document_ids=None, metadata=None
) -> list[Hit]:
    """Search one or more knowledge bases of ONE organization (the agent tool searches several;
    each base's own embedder embeds the query, so bases of different models are searched apart)."""
    if not knowledge_bases:
        return []
    hits: list[Hit] = []
    groups: dict[tuple, list] = {}
    for kb in knowledge_bases:
        groups.setdefault(((kb.embedding_model or "builtin").lower(), kb.language), []).append(kb)
    for (_model, language), bases in groups.items():
        vector = None
        if mode in ("hybrid", "vector"):
            vector = embedders.embedder_for(bases[0])([query])[0]
            if not any(vector):
                vector = None  # no words: cosine distance is undefined
        sql, params = search_sql(
            mode=mode,
            organization_id=bases[0].organization_id,
            knowledge_base_ids=[kb.pk for kb in bases],
            vector=vector,
            query=query,
            language=language,
            top_k=top_k,
            document_ids=document_ids,
            metadata=metadata,
        )
        if not sql:
            continue
        for row in run_sql(sql, params, top_k=top_k):
            hits.append(Hit(str(row[0]), str(row[1]), row[2], row[3], round(float(row[4]), 6), row[5], _object(row[6])))
    hits.sort(key=lambda h: -h.score)
    return hits[:top_k]


def _object(value) -> dict:
    """A jsonb column read by raw SQL: Django's psycopg setup loads jsonb as text (its JSONField parses it)."""
    if isinstance(value, str):
        value = json.loads(value)
    return value or {}
