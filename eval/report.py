"""`supportbot eval`: run the variants, score them, calibrate the gate, write the report."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from bot.pipeline import IndexHolder, gate_settings
from bot.settings import Settings
from eval.calibrate import choose, curve, sweep
from eval.dataset import load_dataset
from eval.fusion import WEIGHTS, check_variant, tune_fusion
from eval.runner import (
    Record,
    model_kind,
    open_index,
    prepare_index,
    run_variant,
    variant_settings,
)
from eval.scoring import summarize, summarize_by_subset

log = logging.getLogger(__name__)

REPORT_VERSION = 2  # 2: `index` is keyed by model kind (base, adapted)


def worst_misses(records: list[Record], n: int = 20) -> list[dict]:
    """Answerable questions whose gold article was ranked lowest (or not at all)."""

    def gold_rank(r: Record) -> int:
        for i, a in enumerate(r.ranked, start=1):
            if a in r.question.gold_article_ids:
                return i
        return 10_000

    misses = [r for r in records if r.question.answerable and gold_rank(r) > 1]
    misses.sort(key=lambda r: (-gold_rank(r), -(r.decision.confidence or 0)))
    out = []
    for r in misses[:n]:
        item = r.to_dict()
        rank = gold_rank(r)
        item["gold_rank"] = None if rank == 10_000 else rank
        top = r.decision.ranking[0] if r.decision.ranking else None
        item["retrieved_instead"] = (
            {"article_id": top.article_id, "title": top.title, "passage": top.passage["text"]}
            if top
            else None
        )
        out.append(item)
    return out


def run_eval(
    dataset_dir: Path,
    settings: Settings,
    variants: list[str],
    out: Path,
    cache_dir: Path,
    min_precision: float = 0.90,
    min_escalation_recall: float = 0.95,
    bootstrap_rounds: int = 1000,
    progress: bool = True,
    tune_weights: bool = False,
) -> dict:
    """Run the variants and score them; with ``tune_weights``, first choose the fusion weights on
    this dataset (eval/fusion.py) and run every variant with them."""
    dataset = load_dataset(dataset_dir)
    for v in variants:
        variant_settings(settings, v)  # unknown names fail before any work
    if tune_weights:
        check_variant(settings, variants[0])
    holders: dict[str, IndexHolder] = {}
    reused: dict[str, bool] = {}
    for kind in dict.fromkeys(model_kind(settings, v) for v in variants):
        index_dir, reused[kind] = prepare_index(dataset, settings, kind, cache_dir, progress)
        holders[kind] = open_index(settings, index_dir)
    main_holder = holders[model_kind(settings, variants[0])]
    fusion = None
    if tune_weights:
        fusion = tune_fusion(dataset, settings, main_holder, variants[0], progress)
        chosen_weights = {w: fusion["chosen"][w] for w in WEIGHTS}
        settings = settings.model_copy(update=chosen_weights)
    report: dict = {
        "report_version": REPORT_VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "dataset": {
            "path": str(dataset_dir),
            "articles": len(dataset.articles),
            "questions": len(dataset.questions),
            "problems": [str(e) for e in dataset.errors],
        },
        "index": {
            kind: {
                "version": h.index.manifest.version,
                "model": h.index.manifest.model,
                "reused_from_cache": reused[kind],
            }
            for kind, h in holders.items()
        },
        "settings": {
            "answer_threshold": settings.answer_threshold,
            "clarify_threshold": settings.clarify_threshold,
            "title_weight": settings.title_weight,
            "bm25_weight": settings.bm25_weight,
            "model": main_holder.index.manifest.model,
        },
        "fusion": fusion,
        "variants": {},
    }
    records_by_variant = {}
    for name in variants:
        holder = holders[model_kind(settings, name)]
        records = run_variant(dataset, settings, holder, name, progress)
        records_by_variant[name] = records
        report["variants"][name] = {
            "overall": summarize(records, bootstrap_rounds),
            "subsets": summarize_by_subset(records, rounds=0),
        }
    main = variants[0]
    main_records = records_by_variant[main]
    points = sweep(main_records, gate_settings(settings))
    chosen = choose(points, min_precision, min_escalation_recall)
    report["calibration"] = {
        "variant": main,
        "min_answered_precision": min_precision,
        "min_escalation_recall": min_escalation_recall,
        "chosen": chosen,
        "curve": curve(points),
    }
    report["worst_misses"] = worst_misses(main_records)
    report["questions"] = [r.to_dict() for r in main_records]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    from eval.html import render  # matplotlib is imported only when a report is written

    (out / "report.html").write_text(render(report))
    return report


def write_settings(values: dict, path: Path) -> None:
    """Write settings (e.g. the chosen thresholds and fusion weights, by field name) as
    SUPPORTBOT_* lines of a .env file the bot reads, replacing earlier lines for the same
    settings and keeping every other line."""
    new = {f"SUPPORTBOT_{name.upper()}": value for name, value in values.items()}
    lines = []
    if path.exists():
        keep = tuple(f"{key}=" for key in new)
        lines = [line for line in path.read_text().splitlines() if not line.startswith(keep)]
    lines += [f"{key}={value}" for key, value in new.items()]
    path.write_text("\n".join(lines) + "\n")


def table(report: dict) -> str:
    """The variants side by side, as text."""
    cols = [
        "hit@1",
        "hit@5",
        "mrr@10",
        "deflection",
        "assisted",
        "answered_precision",
        "escalation_recall",
        "false_escalation",
    ]
    head = f"{'variant':<18}" + "".join(f"{c[:12]:>13}" for c in cols) + f"{'p50 ms':>9}"
    rows = [head]
    for name, v in report["variants"].items():
        m = v["overall"]["metrics"]
        cells = "".join(f"{'-' if m[c] is None else format(m[c], '.3f'):>13}" for c in cols)
        rows.append(f"{name:<18}{cells}{v['overall']['latency_ms']['p50']:>9}")
    return "\n".join(rows)
