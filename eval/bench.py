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
from indexer.embedder import MINILM_NAME, MiniLMEmbedder, load_named
from indexer.onnx_embedder import SUFFIX as INT8_SUFFIX

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


BACKENDS = ("pytorch-fp32", "onnx-int8")


def _embedders(backend: str, models: Path, threads: int, batch: int):
    """(build embedder on every core, query embedder on ``threads``) for a backend."""
    if backend == "pytorch-fp32":
        return MiniLMEmbedder(threads=os.cpu_count(), batch_size=batch), None
    name = MINILM_NAME + INT8_SUFFIX
    build = load_named(name, models, os.cpu_count(), batch)
    return build, load_named(name, models, threads, batch)


def measure(backend: str, docs: list, questions: list[str], tmp: Path, settings: Settings) -> dict:
    """Build the index with ``backend`` and time every question through the pipeline."""
    threads = settings.torch_threads
    build_embedder, query_embedder = _embedders(
        backend, tmp / "models", threads, settings.embed_batch_size
    )
    build_embedder.embed(["warm up"])
    started = time.perf_counter()
    build = build_index(docs, tmp / backend, build_embedder, settings.passage_max_words)
    build_seconds = time.perf_counter() - started
    if query_embedder is None:  # PyTorch: the same model, one thread per request
        import torch

        torch.set_num_threads(threads)
        query_embedder = build_embedder
    holder = IndexHolder(tmp / backend, embedders=query_embedder)
    holder.refresh()
    pipeline = Pipeline.from_settings(settings, holder)
    for q in questions[:20]:
        pipeline.reply(q)
    latencies, actions = [], {}
    for q in questions:
        t0 = time.perf_counter()
        decision = pipeline.reply(q)
        latencies.append((time.perf_counter() - t0) * 1000)
        actions[decision.action] = actions.get(decision.action, 0) + 1
    return {
        "backend": backend,
        "threads_per_request": threads,
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
            "threads": os.cpu_count(),
        },
    }


def run(kb_dir: Path, out: Path, min_questions: int = 200) -> dict:
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        engine = make_engine(f"sqlite:///{tmp_path / 'bench.db'}")
        init_db(engine)
        articles, errors = load_path(kb_dir)
        with session_scope(make_sessionmaker(engine)) as session:
            import_articles(session, articles, errors)
        with session_scope(make_sessionmaker(engine)) as session:
            docs = published_docs(session)
        engine.dispose()
        questions = bench_questions(kb_dir)
        while len(questions) < min_questions:
            questions += [q.lower() for q in questions]
        results = {b: measure(b, docs, questions, tmp_path, settings) for b in BACKENDS}
    passages = results["pytorch-fp32"]["index_build"]["passages"]
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "kb": {"articles": len(docs), "passages": passages},
        "backends": results,
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
    fp32, int8 = (r["backends"][b] for b in BACKENDS)
    rows = [
        ("answer latency p50 (ms)", lambda x: x["answer_latency_ms"]["p50"]),
        ("answer latency p99 (ms)", lambda x: x["answer_latency_ms"]["p99"]),
        ("answer latency mean (ms)", lambda x: x["answer_latency_ms"]["mean"]),
        ("index build (passages/s)", lambda x: x["index_build"]["passages_per_s"]),
        ("index build (s)", lambda x: x["index_build"]["seconds"]),
    ]
    print(
        f"sample KB: {r['kb']['articles']} articles, {r['kb']['passages']} passages, "
        f"{fp32['answer_latency_ms']['questions']} questions timed"
    )
    print(f"{'figure':<30}{'pytorch fp32':>14}{'onnx int8':>12}{'int8/fp32':>11}")
    for label, get in rows:
        a, b = get(fp32), get(int8)
        print(f"{label:<30}{a:>14.2f}{b:>12.2f}{(b / a if a else 0):>11.2f}")
    print(
        f"{fp32['threads_per_request']} thread(s) per request; written to {args.out / 'bench.json'}"
    )


if __name__ == "__main__":
    main()
