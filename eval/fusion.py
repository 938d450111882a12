"""Tune the fusion weights on a dataset: the title and BM25 weights that rank gold articles best.

Which weights suit a help center depends on how its customers write. Questions that reuse the
articles' own words (the public e-manual set) rank best with more BM25; casual paraphrases, as in
the sample help center's test questions, with less (README, "Fusion weights"). So the defaults
are a compromise, and `supportbot eval --tune-fusion` picks the pair for a dataset of one's own:
it runs the answerable questions through the bot's own pipeline once per pair on a small grid
and keeps the pair with the best MRR@10 (ties: hit@1, then the pair nearest the current one).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

from tqdm import tqdm

from bot.pipeline import IndexHolder
from bot.settings import Settings
from eval.dataset import Dataset
from eval.runner import VARIANTS, Record, run_variant, variant_settings
from eval.scoring import summarize

TITLE_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4)
BM25_WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6)
RANKING_METRICS = ("hit@1", "hit@5", "mrr@10")
WEIGHTS = ("title_weight", "bm25_weight")


class FusionTuningError(ValueError):
    """The fusion weights cannot be tuned with this variant or dataset."""


def choose_weights(grid: list[dict], current: tuple[float, float]) -> dict:
    """The grid row with the best MRR@10, then hit@1, then the one nearest ``current``."""

    def key(row: dict) -> tuple[float, float, float]:
        distance = abs(row["title_weight"] - current[0]) + abs(row["bm25_weight"] - current[1])
        return (row["mrr@10"] or 0.0, row["hit@1"] or 0.0, -distance)

    return max(grid, key=key)


def check_variant(settings: Settings, variant: str) -> None:
    """Refuse a variant whose ranking the two weights do not shape as they do in the bot."""
    base = variant_settings(settings, variant)
    if (
        base.retrieval_mode != "hybrid"
        or base.fusion != "weighted"
        or set(WEIGHTS) & set(VARIANTS[variant])
    ):
        raise FusionTuningError(
            f"--tune-fusion tunes the first variant, which must be a hybrid one with weighted "
            f"fusion and its own weights (hybrid, hybrid-adapted, hybrid-int8, hybrid-fp32), "
            f"not {variant!r}"
        )


def tune_fusion(
    dataset: Dataset, settings: Settings, holder: IndexHolder, variant: str, progress: bool = True
) -> dict:
    """Rank the dataset's answerable questions with every pair of weights on the grid (and the
    settings' own pair), choose one, and estimate on held-out halves what the choice is worth."""
    check_variant(settings, variant)
    base = variant_settings(settings, variant)
    answerable = [q for q in dataset.questions if q.answerable]
    if not answerable:
        raise FusionTuningError("--tune-fusion needs answerable questions (with gold articles)")
    subset = Dataset(dataset.path, dataset.articles, answerable)
    current = (base.title_weight, base.bm25_weight)
    pairs = list(dict.fromkeys([*product(TITLE_WEIGHTS, BM25_WEIGHTS), current]))
    runs = {
        pair: run_variant(
            subset,
            settings.model_copy(update=dict(zip(WEIGHTS, pair, strict=True))),
            holder,
            variant,
            progress=False,
        )
        for pair in tqdm(pairs, desc="fusion weights", disable=not progress)
    }
    everyone = range(len(answerable))
    grid = _grid(runs, everyone)
    return {
        "variant": variant,
        "objective": "mrr@10",
        "questions": len(answerable),
        "current": dict(zip(WEIGHTS, current, strict=True)),
        "chosen": choose_weights(grid, current),
        "held_out": _held_out(runs, len(answerable), current),
        "grid": grid,
    }


def _grid(runs: dict[tuple[float, float], list[Record]], rows: Sequence[int]) -> list[dict]:
    """One row per pair of weights: the ranking metrics over the questions at ``rows``."""
    grid = []
    for pair, records in runs.items():
        metrics = summarize([records[i] for i in rows], rounds=0)["metrics"]
        grid.append(
            {**dict(zip(WEIGHTS, pair, strict=True)), **{m: metrics[m] for m in RANKING_METRICS}}
        )
    return grid


def _held_out(
    runs: dict[tuple[float, float], list[Record]], n: int, current: tuple[float, float]
) -> dict | None:
    """What tuning is worth on questions it did not see: the questions are split in two halves
    (alternate ones); each half is ranked with the pair chosen on the other half."""
    if n < 2:
        return None
    halves = (range(0, n, 2), range(1, n, 2))
    records: list[Record] = []
    for seen, unseen in (halves, halves[::-1]):
        pick = choose_weights(_grid(runs, seen), current)
        records += [runs[(pick["title_weight"], pick["bm25_weight"])][i] for i in unseen]
    metrics = summarize(records, rounds=0)["metrics"]
    return {m: metrics[m] for m in RANKING_METRICS}
