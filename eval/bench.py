"""`make bench`: answer latency and index build speed on the sample help center.

Prints a table and writes bench-results/bench.json. Figures are from this machine, one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bot.article_store import import_articles, published_docs
from bot.db import init_db, make_engine, make_sessionmaker, session_scope
from bot.pipeline import IndexHolder, Pipeline
from bot.settings import Settings
from indexer.articles import load_path
from indexer.build import build_index
from indexer.chunking import sections
from indexer.embedder import MiniLMEmbedder

ROOT = Path(__file__).resolve().parent.parent


def bench_questions(kb_dir: Path) -> list[str]:
    """Distinct realistic questions: the project's eval and test sets, then article headings."""
    import yaml

    questions: list[str] = []
    eval_file = ROOT / "eval" / "data" / "sample_kb" / "questions.jsonl"
    if eval_file.exists():
        questions += [json.loads(line)["question"] for line in eval_file.open() if line.strip()]
    test_file = ROOT / "tests" / "data" / "kb_questions.yaml"
    if test_file.exists():
        data = yaml.safe_load(test_file.read_text())
        questions += [q["question"] for q in data.get("answerable", [])]
        questions += list(data.get("offtopic", []))
    articles, _ = load_path(kb_dir)
    for a in articles:
        questions.append(a.title)
        questions += [" ".join(path) for path, _ in sections(a.body) if path]
    return list(dict.fromkeys(q for q in questions if q.strip()))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run(kb_dir: Path, out: Path, min_questions: int = 200) -> dict:
    settings = Settings()
    threads = settings.torch_threads
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        engine = make_engine(f"sqlite:///{tmp_path / 'bench.db'}")
        init_db(engine)
        articles, errors = load_path(kb_dir)
        with session_scope(make_sessionmaker(engine)) as session:
            import_articles(session, articles, errors)
        with session_scope(make_sessionmaker(engine)) as session:
            docs = published_docs(session)

        embedder = MiniLMEmbedder(threads=os.cpu_count())
        embedder.embed(["warm up"])
        started = time.perf_counter()
        build = build_index(docs, tmp_path / "index", embedder, settings.passage_max_words)
        build_seconds = time.perf_counter() - started

        import torch

        torch.set_num_threads(threads)
        holder = IndexHolder(tmp_path / "index", embedders=embedder)
        holder.refresh()
        pipeline = Pipeline.from_settings(settings, holder)
        questions = bench_questions(kb_dir)
        while len(questions) < min_questions:
            questions += [q.lower() for q in questions]
        for q in questions[:20]:
            pipeline.reply(q)
        latencies, actions = [], {}
        for q in questions:
            t0 = time.perf_counter()
            decision = pipeline.reply(q)
            latencies.append((time.perf_counter() - t0) * 1000)
            actions[decision.action] = actions.get(decision.action, 0) + 1

    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "kb": {"articles": build.articles, "passages": build.passages},
        "backend": f"pytorch fp32, {threads} torch thread(s) per request",
        "answer_latency_ms": {
            "questions": len(latencies),
            "p50": round(statistics.median(latencies), 2),
            "p99": round(percentile(latencies, 99), 2),
            "mean": round(statistics.fmean(latencies), 2),
        },
        "actions": actions,
        "index_build": {
            "passages": build.passages,
            "seconds": round(build_seconds, 2),
            "passages_per_s": round(build.passages / build_seconds, 1),
            "torch_threads": os.cpu_count(),
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kb", type=Path, default=ROOT / "kb_articles")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args()
    r = run(args.kb, args.out)
    lat, b = r["answer_latency_ms"], r["index_build"]
    print(f"sample KB: {r['kb']['articles']} articles, {r['kb']['passages']} passages")
    print(f"{'figure':<38}{'value':>12}")
    print(f"{'answer latency p50 (ms)':<38}{lat['p50']:>12.2f}")
    print(f"{'answer latency p99 (ms)':<38}{lat['p99']:>12.2f}")
    print(f"{'answer latency mean (ms)':<38}{lat['mean']:>12.2f}")
    print(f"{'questions timed':<38}{lat['questions']:>12}")
    print(f"{'index build (passages/s)':<38}{b['passages_per_s']:>12.1f}")
    print(f"{'index build (s)':<38}{b['seconds']:>12.2f}")
    print(f"backend: {r['backend']}; written to {args.out / 'bench.json'}")


if __name__ == "__main__":
    main()
