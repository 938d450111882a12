"""all-MiniLM-L6-v2 as int8 ONNX: exported with torch from the installed weights (or an adapted
copy), its MatMuls quantized per channel with onnxruntime, run by onnxruntime on the CPU.

Tokenization is the model's own tokenizer (same truncation, 256 tokens), pooling is the mean of
the token vectors under the attention mask, then L2 normalization: the steps
sentence-transformers runs for this model. The export is made once per set of weights and kept
under ``<models_root>/onnx/<weights hash>/``; no hub is contacted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from indexer.embedder import EmbedderUnavailable

log = logging.getLogger(__name__)
SUFFIX = "@onnx-int8"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# how the export is made; a change here makes a new export instead of reusing an older one
RECIPE = "eager-attention/opset17/dynamic-int8-matmul-per-channel"
# Texts per run: measured on 105-token passages, one thread each, batches of 2 to 8 embed 149 to
# 129 passages/s (64: about 80), since small batches stay in the cache and pad less. Throughput
# comes from running batches on every core at once instead.
MICRO_BATCH = 4


def _weights_key(model_dir: Path) -> str:
    digest = hashlib.sha256(RECIPE.encode())
    for name in ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json"):
        path = model_dir / name
        if path.is_file():
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def export_int8(model_dir: Path, out_dir: Path) -> Path:
    """Export ``model_dir``'s transformer to ONNX and quantize it; returns the int8 file."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    class Encoder(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    # eager attention exports as plain MatMuls, which quantize; the exported SDPA graph ran 1.4x
    # slower at int8 (237 vs 171 passages/s on two threads, 1.15 vs 1.8 ms a question)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True, attn_implementation="eager")
    model = Encoder(model).eval()
    sample = tokenizer(
        ["an example", "a second, longer example text"], padding=True, return_tensors="pt"
    )
    axes = {"batch": 0, "tokens": 1}
    dynamic = {name: {axes["batch"]: "batch", axes["tokens"]: "tokens"} for name in INPUTS}
    dynamic["last_hidden_state"] = {0: "batch", 1: "tokens"}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-onnx-", dir=out_dir.parent))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about shapes, made dynamic above
            torch.onnx.export(
                model,
                tuple(sample[name] for name in INPUTS),
                str(tmp / "model.onnx"),
                input_names=list(INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes=dynamic,
                opset_version=17,
                dynamo=False,
            )
        quantize_dynamic(
            tmp / "model.onnx",
            tmp / "model.int8.onnx",
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
        (tmp / "model.onnx").unlink()
        tokenizer.save_pretrained(tmp / "tokenizer")
        (tmp / "export.json").write_text(json.dumps({"from": str(model_dir)}))
        os.replace(tmp, out_dir)  # whole or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s to int8 ONNX at %s", model_dir, out_dir)
    return out_dir / "model.int8.onnx"


class OnnxMiniLMEmbedder:
    """The int8 ONNX twin of :class:`indexer.embedder.MiniLMEmbedder` (a different model name,
    so an index built with one is never queried with the other)."""

    dim = 384

    def __init__(
        self,
        model_dir: Path,
        cache_root: Path,
        name: str,
        threads: int | None = 1,
        batch_size: int = 64,
    ) -> None:
        self.name = name
        self.batch_size = min(batch_size, MICRO_BATCH)
        self.workers = max(1, threads or 1)
        self.calls = 0
        self.texts_embedded = 0
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbedderUnavailable(f"the int8 backend needs onnxruntime: {exc}") from exc
        config = model_dir / "sentence_bert_config.json"
        self.max_length = (
            json.loads(config.read_text()).get("max_seq_length", 256) if config.is_file() else 256
        )
        folder = cache_root / _weights_key(model_dir)
        path = folder / "model.int8.onnx"
        if not path.is_file():
            path = export_int8(model_dir, folder)
        options = ort.SessionOptions()
        # one thread per run; with more than one thread, runs go on that many at once
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        # the model's fast tokenizer itself (tokenizer.json), without transformers and torch: a
        # server on this backend starts in a second and stays small
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer" / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_length)
        pad = self._tokenizer.token_to_id("[PAD]") or 0
        self._tokenizer.enable_padding(pad_id=pad, pad_token="[PAD]")

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # shortest first, so each batch pads little; results go back in the callers' order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

        def run(rows: list[int]) -> None:
            out[rows] = self._embed_batch([texts[i].strip() for i in rows])

        if self.workers > 1 and len(batches) > 1:
            # onnxruntime releases the GIL while it runs, so batches proceed on every core
            with ThreadPoolExecutor(self.workers) as pool:
                list(pool.map(run, batches))
        else:
            for rows in batches:
                run(rows)
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        attention = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        types = np.array([e.type_ids for e in encoded], dtype=np.int64)
        feed = dict(zip(INPUTS, (ids, attention, types), strict=True))
        hidden = self._session.run(None, feed)[0]
        mask = attention.astype(np.float32)
        # mean over the unmasked tokens, as one contraction (4x faster than multiply-then-sum)
        pooled = np.einsum("bt,btd->bd", mask, hidden) / np.clip(
            mask.sum(1, keepdims=True), 1e-9, None
        )
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
