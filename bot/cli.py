"""The ``supportbot`` command: import articles, build the index, serve, ask a question."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from bot.cli_users import tokens, users
from bot.settings import Settings

app = typer.Typer(help="supportbot: cited answers from your help center.", no_args_is_help=True)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _index_embedder(settings: Settings):
    """The embedder new index versions are built with: the fake (tests), the model adapted to this
    knowledge base when `supportbot adapt` made one, else the base model. Uses every core."""
    from indexer.adapt import current_model
    from indexer.embedder import MINILM_NAME, EmbedderUnavailable, FakeEmbedder, load_named

    if settings.embedder == "fake":
        return FakeEmbedder()
    models_root = settings.index_dir / "models"
    name = current_model(models_root) or MINILM_NAME
    if settings.embedder == "minilm-int8":
        from indexer.onnx_embedder import SUFFIX

        name += SUFFIX
    try:
        return load_named(name, models_root, os.cpu_count(), settings.embed_batch_size)
    except EmbedderUnavailable as exc:
        _fail(str(exc))


def _published_docs(settings: Settings):
    from bot.article_store import published_docs
    from bot.db import init_db, make_engine, make_sessionmaker, session_scope

    engine = make_engine(settings.database_url)
    init_db(engine)
    with session_scope(make_sessionmaker(engine)) as session:
        docs = published_docs(session, settings.public_url)
    engine.dispose()
    if not docs:
        _fail("no published articles: run `supportbot import kb_articles` first")
    return docs


@app.command("import")
def import_cmd(
    path: Annotated[
        Path, typer.Argument(help="A folder or a file: .md, .html, .yaml/.csv FAQ, .jsonl")
    ],
) -> None:
    """Import articles into the store; changed articles get a new revision."""
    from bot.article_store import import_in_batches
    from bot.db import init_db, make_engine, make_sessionmaker
    from indexer.articles import load_path

    settings = Settings()
    if not path.exists():
        _fail(f"{path}: no such file or folder")
    articles, errors = load_path(path)
    engine = make_engine(settings.database_url)
    init_db(engine)
    report = import_in_batches(make_sessionmaker(engine), articles, errors)
    for error in report.errors:
        typer.secho(f"skipped {error}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"imported {path}: {report.summary()}")
    if report.errors and not articles:
        raise typer.Exit(1)


@app.command()
def index(
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Build the search index from the published articles (only changed passages are embedded)."""
    from indexer.build import build_index
    from indexer.store import build_lock

    settings = Settings()
    embedder = _index_embedder(settings)
    with build_lock(settings.index_dir):  # a running server's re-index waits, and vice versa
        docs = _published_docs(settings)
        result = build_index(
            docs,
            settings.index_dir,
            embedder,
            max_words=settings.passage_max_words,
            bm25_k1=settings.bm25_k1,
            bm25_b=settings.bm25_b,
            progress=progress and sys.stderr.isatty(),
            dense_options=settings.dense_options(build_threads=os.cpu_count() or 1),
        )
    state = "built" if result.changed else "unchanged"
    typer.echo(
        f"index {state} with {embedder.name}: version {result.version}, {result.articles} articles, "
        f"{result.passages} passages ({result.embedded} texts embedded, {result.reused} reused) "
        f"in {result.seconds:.1f}s"
    )


@app.command("adapt")
def adapt_cmd(
    epochs: Annotated[int | None, typer.Option(help="Overrides SUPPORTBOT_ADAPT_EPOCHS.")] = None,
    reset: Annotated[bool, typer.Option(help="Go back to the base model.")] = False,
) -> None:
    """Adapt the embedding model to the published articles' own text; `supportbot index` then
    embeds with it (run again after large content changes; it re-embeds everything once)."""
    from indexer.adapt import CURRENT, AdaptOptions, adapt
    from indexer.chunking import split_article
    from indexer.embedder import MINILM_NAME

    settings = Settings()
    models_root = settings.index_dir / "models"
    if reset:
        (models_root / CURRENT).unlink(missing_ok=True)
        typer.echo("the next `supportbot index` embeds with the base model")
        return
    if settings.embedder == "fake":
        _fail("adaptation trains the real model: set SUPPORTBOT_EMBEDDER=minilm")
    epochs = settings.adapt_epochs if epochs is None else epochs
    if epochs < 1:
        _fail("--epochs must be at least 1 (use --reset for the base model)")
    docs = _published_docs(settings)
    passages = [p for d in docs for p in split_article(d, settings.passage_max_words, MINILM_NAME)]
    result = adapt(
        passages,
        models_root,
        AdaptOptions(epochs=epochs, learning_rate=settings.adapt_learning_rate),
        threads=os.cpu_count(),
        progress=sys.stderr.isatty(),
    )
    how = (
        "already adapted to these articles"
        if result.reused
        else (
            f"adapted on {result.pairs} pairs from {len(passages)} passages in {result.seconds:.0f}s"
        )
    )
    typer.echo(f"{result.name}: {how}; `supportbot index` embeds with it")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides SUPPORTBOT_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides SUPPORTBOT_PORT.")] = None,
) -> None:
    """Serve the chat API (and docs at /docs) with SUPPORTBOT_WORKERS processes."""
    settings = Settings()
    address = {"host": host or settings.host, "port": port or settings.port}
    workers = settings.server_processes()
    if workers == 1:
        import uvicorn

        from bot.app import create_app

        # workers=1 said outright: otherwise uvicorn reads $WEB_CONCURRENCY (set by some hosts)
        uvicorn.run(create_app(settings), workers=1, **address)
        return
    from bot.auth import session_secret
    from bot.db import init_db, make_engine
    from bot.supervisor import command

    # once, before the workers start: each would otherwise race to migrate the database and to
    # create the session key file (two workers with two keys would refuse each other's cookies)
    engine = make_engine(settings.database_url, pool_size=1)
    init_db(engine)
    engine.dispose()
    session_secret(settings.secret_key, settings.secret_key_file)
    # then a lean process runs the hub and the workers (see bot.supervisor)
    argv, environ = command(address["host"], address["port"], workers)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, environ)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The customer's question.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Ask the bot one question and print its decision, answer, citations and scores."""
    from bot.pipeline import IndexHolder, Pipeline, embedder_source

    settings = Settings()
    question = question.strip()
    if not question:
        _fail("the question is empty")
    holder = IndexHolder(settings.index_dir, embedders=embedder_source(settings))
    holder.refresh()
    if holder.index is None:
        _fail(holder.error or f"no index under {settings.index_dir}: run `supportbot index` first")
    decision = Pipeline.from_settings(settings, holder).reply(question)
    if as_json:
        out = {
            "action": decision.action,
            "reason": decision.reason,
            "confidence": decision.confidence,
            "text": decision.text,
            "citations": decision.citations(),
            "scores": decision.scores,
        }
        typer.echo(json.dumps(out, indent=2))
        return
    conf = "-" if decision.confidence is None else f"{decision.confidence:.3f}"
    typer.echo(f"decision:   {decision.action} ({decision.reason}), confidence {conf}")
    typer.echo(f"answer:     {decision.text}")
    for n, c in enumerate(decision.citations(), start=1):
        typer.echo(f"citation {n}: {c['title']} [{c['article_id']}] {c['url']}")
    candidates = decision.scores.get("candidates", [])
    if candidates:
        typer.echo("scores:")
        for c in candidates:
            typer.echo(
                f"  {c['article_id']:<40} fused {c['fused']:.4f}  dense {c['dense']:.3f}  "
                f"bm25 {c['bm25']:.2f}"
            )


@app.command("eval")
def eval_cmd(
    dataset_dir: Annotated[
        Path, typer.Argument(help="Folder with articles.jsonl and questions.jsonl")
    ],
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            help="Retrieval variant(s); the first is calibrated. "
            "Default: all (hybrid, dense, bm25, hybrid-rrf, hybrid-no-titles, hybrid-adapted, "
            "hybrid-int8, hybrid-fp32).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where report.json and report.html go.")] = Path(
        "eval-results"
    ),
    cache_dir: Annotated[Path, typer.Option(help="Index cache.")] = Path("data/eval-cache"),
    min_precision: Annotated[float, typer.Option(help="Answered-precision floor.")] = 0.90,
    min_escalation_recall: Annotated[float, typer.Option(help="Escalation-recall floor.")] = 0.95,
    write_settings: Annotated[
        Path | None,
        typer.Option(help="Write the chosen thresholds (and tuned weights) to this .env file."),
    ] = None,
    tune_fusion: Annotated[
        bool,
        typer.Option(
            "--tune-fusion",
            help="First choose the title and BM25 fusion weights that rank this dataset's gold "
            "articles best (MRR@10 over a grid), then run every variant with them.",
        ),
    ] = False,
) -> None:
    """Measure retrieval, answers and gate decisions on a dataset; calibrate the thresholds."""
    from eval.dataset import DatasetError
    from eval.fusion import WEIGHTS, FusionTuningError
    from eval.report import run_eval, table
    from eval.report import write_settings as write_env
    from eval.runner import VARIANTS

    settings = Settings()
    variants = variant or list(VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        _fail(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    try:
        report = run_eval(
            dataset_dir,
            settings,
            variants,
            out,
            cache_dir,
            min_precision,
            min_escalation_recall,
            progress=sys.stderr.isatty(),
            tune_weights=tune_fusion,
        )
    except (DatasetError, FusionTuningError) as exc:
        _fail(str(exc))
    for problem in report["dataset"]["problems"]:
        typer.secho(f"dataset: {problem}", fg=typer.colors.YELLOW, err=True)
    typer.echo(table(report))
    to_write: dict = {}
    if report["fusion"]:
        best, now = report["fusion"]["chosen"], report["fusion"]["current"]
        was = next(r for r in report["fusion"]["grid"] if all(r[w] == now[w] for w in WEIGHTS))
        typer.echo(
            f"fusion: title weight {best['title_weight']}, BM25 weight {best['bm25_weight']}: "
            f"MRR@10 {best['mrr@10']:.3f}, hit@1 {best['hit@1']:.3f} (the settings' "
            f"{now['title_weight']} / {now['bm25_weight']}: {was['mrr@10']:.3f}, "
            f"{was['hit@1']:.3f})"
        )
        if held := report["fusion"]["held_out"]:
            typer.echo(
                f"fusion, chosen on one half of the questions and scored on the other: "
                f"MRR@10 {held['mrr@10']:.3f}, hit@1 {held['hit@1']:.3f}"
            )
        to_write.update({w: best[w] for w in WEIGHTS})
    chosen = report["calibration"]["chosen"]
    if chosen is None:
        typer.echo("calibration: no threshold pair meets the precision and escalation floors")
    else:
        typer.echo(
            "calibration: answer >= {answer_threshold}, clarify >= {clarify_threshold}: deflection "
            "{deflection:.3f}, answered precision {answered_precision:.3f}, escalation recall "
            "{escalation_recall}".format(**chosen)
        )
        to_write.update({k: chosen[k] for k in ("answer_threshold", "clarify_threshold")})
    if write_settings and to_write:
        write_env(to_write, write_settings)
        typer.echo(f"{', '.join(to_write)} written to {write_settings}")
    typer.echo(f"report: {out / 'report.json'} and {out / 'report.html'}")


@app.command("identity-token")
def identity_token(
    customer_id: Annotated[str, typer.Argument(help="Your system's id of the customer.")],
    ttl: Annotated[int, typer.Option(help="Seconds until the token expires.")] = 3600,
) -> None:
    """Sign a customer id with SUPPORTBOT_IDENTITY_SECRET, as your server would (for trying
    the widget's data-customer-token)."""
    from bot.identity import sign_customer

    settings = Settings()
    if not settings.identity_secret:
        _fail("set SUPPORTBOT_IDENTITY_SECRET first")
    typer.echo(sign_customer(settings.identity_secret, customer_id, ttl))


@app.command()
def export(
    folder: Annotated[Path, typer.Argument(help="Folder to write <id>.md files into.")],
    status: Annotated[
        str | None, typer.Option(help="Only articles with this status (draft|published|archived).")
    ] = None,
) -> None:
    """Write every article as Markdown with front matter (what `supportbot import` reads back)."""
    from sqlalchemy import select

    from bot.article_admin import to_markdown
    from bot.db import init_db, make_engine, make_sessionmaker, session_scope
    from bot.models import Article

    if status not in (None, "draft", "published", "archived"):
        _fail(f"--status must be draft, published or archived, not {status!r}")
    if folder.exists() and not folder.is_dir():
        _fail(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    engine = make_engine(Settings().database_url)
    init_db(engine)
    count = 0
    with session_scope(make_sessionmaker(engine)) as session:
        query = select(Article).order_by(Article.id)
        if status:
            query = query.where(Article.status == status)
        for article in session.scalars(query):
            (folder / f"{article.id}.md").write_text(to_markdown(article), encoding="utf-8")
            count += 1
    engine.dispose()
    typer.echo(f"exported {count} articles to {folder}")


app.add_typer(users, name="user")
app.add_typer(tokens, name="token")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
