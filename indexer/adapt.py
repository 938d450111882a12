"""Adapt the embedder to a knowledge base's own text.

all-MiniLM-L6-v2 was trained on web text; a help center has its own vocabulary ("Ambient Mode",
"Larkspur Plus"). We fine-tune a copy on pairs drawn from the articles themselves, with in-batch
negatives: (title and heading path -> section text) and (one sentence -> the rest of its passage,
the inverse cloze task). No questions are used, so nothing is tuned to an evaluation set.

The adapted model is saved under ``<index root>/models/<name>/`` and ``models/CURRENT`` names it;
``supportbot index`` then embeds with it (still incrementally: the model stays fixed until the
next ``supportbot adapt``), and the server loads whichever model the live index names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from indexer.chunking import Passage
from indexer.embedder import MINILM_NAME, base_model_path

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class AdaptOptions:
    """Training settings; part of the adapted model's name, so a change trains a new model."""

    epochs: int = 1
    learning_rate: float = 1e-4
    batch_size: int = 32
    max_seq_length: int = 128
    temperature: float = 0.05
    seed: int = 0


@dataclass
class AdaptResult:
    name: str
    path: Path
    pairs: int
    seconds: float
    reused: bool


def training_pairs(passages: list[Passage], rng: random.Random) -> list[tuple[str, str]]:
    """(query-like text, passage text) pairs drawn from the passages themselves."""
    pairs = []
    for p in passages:
        heads = " ".join(h for h in p.heading_path if h != p.title)
        pairs.append((f"{p.title} {heads}".strip(), p.text))
        sentences = [s for s in _SENTENCE.split(p.text) if len(s.split()) >= 5]
        if len(sentences) >= 2:
            i = rng.randrange(len(sentences))
            rest = " ".join(sentences[:i] + sentences[i + 1 :])
            pairs.append((sentences[i], f"{p.title}\n{rest}"))
    return pairs


def model_name(passages: list[Passage], options: AdaptOptions) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(asdict(options), sort_keys=True).encode())
    for h in sorted({p.hash for p in passages}):
        digest.update(h.encode())
    return f"{MINILM_NAME}+kb-{digest.hexdigest()[:10]}"


def current_model(models_root: Path) -> str | None:
    """Name of the adapted model ``supportbot index`` should use, if any."""
    try:
        name = (models_root / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name if name and (models_root / name).is_dir() else None


def adapt(
    passages: list[Passage],
    models_root: Path,
    options: AdaptOptions | None = None,
    threads: int | None = None,
    progress: bool = False,
    make_current: bool = True,
) -> AdaptResult:
    """Train (or reuse) the adapted model for these passages and (by default) make it current."""
    options = options or AdaptOptions()
    # one canonical order, so the same articles always give the same model (and name)
    passages = sorted({p.hash: p for p in passages}.values(), key=lambda p: p.hash)
    name = model_name(passages, options)
    final = models_root / name
    started = time.perf_counter()
    if (final / "adapted.json").exists() and not any(final.glob("*.safetensors")):
        shutil.rmtree(final, ignore_errors=True)  # weights lost: train again
    if (final / "adapted.json").exists():
        if make_current:
            _point(models_root, name)
        meta = json.loads((final / "adapted.json").read_text())
        return AdaptResult(name, final, meta["pairs"], 0.0, True)

    import torch
    from huggingface_hub.utils import disable_progress_bars
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()
    torch.manual_seed(options.seed)
    if threads:
        torch.set_num_threads(threads)
    rng = random.Random(options.seed)
    model = SentenceTransformer(str(base_model_path()), device="cpu", local_files_only=True)
    model.max_seq_length = options.max_seq_length
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate)

    def encode(texts: list[str]) -> torch.Tensor:
        out = model(model.tokenize(texts))["sentence_embedding"]
        return torch.nn.functional.normalize(out, dim=-1)

    pair_count = 0
    model.train()
    for epoch in range(options.epochs):
        pairs = training_pairs(passages, rng)
        rng.shuffle(pairs)
        pair_count = len(pairs)
        steps = range(0, len(pairs), options.batch_size)
        for start in tqdm(steps, desc=f"adapting, epoch {epoch + 1}", disable=not progress):
            batch = pairs[start : start + options.batch_size]
            if len(batch) < 2:
                continue
            queries = encode([q for q, _ in batch])
            docs = encode([d for _, d in batch])
            logits = queries @ docs.T / options.temperature
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()

    models_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=models_root))
    try:
        model.save(str(tmp))
        seconds = time.perf_counter() - started
        meta = {"name": name, "base": MINILM_NAME, "pairs": pair_count, "seconds": seconds}
        (tmp / "adapted.json").write_text(json.dumps({**meta, "options": asdict(options)}))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if make_current:
        _point(models_root, name)
    log.info("adapted %s on %d pairs in %.0f s", name, pair_count, seconds)
    return AdaptResult(name, final, pair_count, seconds, False)


def _point(models_root: Path, name: str) -> None:
    tmp = models_root / f".{CURRENT}.tmp"
    tmp.write_text(name)
    os.replace(tmp, models_root / CURRENT)
