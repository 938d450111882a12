"""An evaluation dataset folder: articles.jsonl + questions.jsonl (format in eval/README.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from indexer.articles import LoadError, SourceArticle, jsonl_records, load_jsonl


class DatasetError(ValueError):
    """The dataset folder cannot be used; the message names the file and the problem."""


@dataclass
class Question:
    id: str
    question: str
    gold_article_ids: list[str]
    gold_answer: str | None = None
    subset: str = "all"

    @property
    def answerable(self) -> bool:
        return bool(self.gold_article_ids)


@dataclass
class Dataset:
    path: Path
    articles: list[SourceArticle]
    questions: list[Question]
    errors: list[LoadError] = field(default_factory=list)

    def fingerprint(self) -> str:
        """Content hash of both files: the index cache key's data part."""
        digest = hashlib.sha256()
        for name in ("articles.jsonl", "questions.jsonl"):
            digest.update((self.path / name).read_bytes())
        return digest.hexdigest()


def _question(data: object, where: str) -> Question:
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    missing = [k for k in ("id", "question", "gold_article_ids") if k not in data]
    if missing:
        raise DatasetError(f"{where}: missing field(s) {', '.join(missing)}")
    gold = data["gold_article_ids"]
    if not isinstance(gold, list) or not all(isinstance(g, str) for g in gold):
        raise DatasetError(f"{where}: field 'gold_article_ids' must be a list of article ids")
    text = data["question"]
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{where}: field 'question' must be non-empty text")
    return Question(
        id=str(data["id"]),
        question=text.strip(),
        gold_article_ids=gold,
        gold_answer=data.get("gold_answer") or None,
        subset=str(data.get("subset") or "all"),
    )


def load_dataset(path: Path) -> Dataset:
    """Read and check a dataset folder (raises :class:`DatasetError` naming file and field)."""
    path = Path(path)
    for name in ("articles.jsonl", "questions.jsonl"):
        if not (path / name).is_file():
            raise DatasetError(f"{path / name}: not found (a dataset folder holds {name})")
    articles, errors = load_jsonl(path / "articles.jsonl")
    questions: list[Question] = []
    for where, data, problem in jsonl_records(path / "questions.jsonl"):
        if problem:
            raise DatasetError(f"{where}: {problem}")
        questions.append(_question(data, where))
    if not questions:
        raise DatasetError(f"{path / 'questions.jsonl'}: no questions")
    known = {a.id for a in articles}
    kept = []
    for q in questions:
        unknown = [g for g in q.gold_article_ids if g not in known]
        if unknown:
            errors.append(LoadError(q.id, f"gold article(s) not in articles.jsonl: {unknown}"))
            q.gold_article_ids = [g for g in q.gold_article_ids if g in known]
            if not q.gold_article_ids:  # not a must-escalate question: leave it out
                continue
        kept.append(q)
    return Dataset(path, articles, kept, errors)
