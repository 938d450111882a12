"""The manifest that describes one index version."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

FORMAT = 2  # 2: BM25 as term counts (indexer.lexical), per-article source hashes


@dataclass
class Manifest:
    """Model, dimension, backend and per-passage content hashes of an index version."""

    version: str
    created_at: str
    model: str
    dim: int
    backend: str = "faiss-flat-ip+bm25s"
    passages: int = 0
    articles: int = 0
    passage_hashes: list[str] = field(default_factory=list)
    fingerprint: str = ""
    chunking: dict = field(default_factory=dict)
    format: int = FORMAT

    def write(self, path: Path) -> None:
        path.write_text(json.dumps({f.name: getattr(self, f.name) for f in fields(self)}))

    @classmethod
    def read(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def fingerprint(parts: list, model: str, chunking: dict) -> str:
    """Identifies the index content (``parts``: one hash per article): same fingerprint, same
    index."""
    payload = json.dumps([FORMAT, model, chunking, parts], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()
