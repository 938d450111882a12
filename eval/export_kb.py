"""Write a Markdown/FAQ folder as articles.jsonl in the eval format (published articles only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from indexer.articles import load_path


def export(kb_dir: Path, out_file: Path) -> int:
    articles, errors = load_path(kb_dir)
    for e in errors:
        print(f"skipped {e}", file=sys.stderr)
    rows = [
        {"id": a.id, "title": a.title, "body": a.body, "category": a.category}
        for a in articles
        if a.status == "published"
    ]
    out_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m eval.export_kb KB_DIR OUT.jsonl")
    print(f"{export(Path(sys.argv[1]), Path(sys.argv[2]))} articles written to {sys.argv[2]}")
