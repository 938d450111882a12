"""Uploading articles (Markdown files or a zip, HTML, CSV/YAML FAQ, Zendesk JSON export) and
downloading every article as a zip of Markdown files with front matter."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from bot.article_admin import to_markdown
from bot.article_store import import_in_batches
from bot.auth import csrf_token
from bot.deps import SessionDep
from bot.models import Article
from bot.routes.admin_articles import request_reindex
from bot.routes.agent import AdminDep, CsrfDep
from bot.routes.pages import page
from indexer.articles import LoadError, load_path

router = APIRouter(prefix="/admin", include_in_schema=False)
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
MAX_FILES = 500


@router.get("/import", response_class=HTMLResponse)
def import_page(request: Request, agent: AdminDep) -> HTMLResponse:
    context = {"agent": agent, "csrf": csrf_token(request.session), "report": None}
    return page(request, "admin/import.html", context)


def _safe_name(filename: str, n: int) -> str:
    """The uploaded file's own name, made harmless (no folders, no dots-only, not too long)."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "").strip()
    if not name.strip("."):
        return f"upload-{n}"
    stem, dot, suffix = name.rpartition(".")
    if len(name) > 100:
        name = (stem[: 90 - len(suffix)] + dot + suffix) if dot else name[:100]
    return name


def _read_uploads(folder: Path, uploads: list[tuple[str, bytes]]):
    """Write the uploads into ``folder`` and read the articles in them (runs in a thread)."""
    written_errors: list[LoadError] = []
    for n, (name, data) in enumerate(uploads):
        target = folder / f"{n:04d}" / _safe_name(name, n)  # apart: same names never collide
        try:
            target.parent.mkdir()
            target.write_bytes(data)
        except OSError as exc:
            written_errors.append(LoadError(name, f"could not be saved: {exc.strerror}"))
    articles, errors = load_path(folder)
    prefix = str(folder)
    for item in [*articles, *errors]:  # show the uploaded names, not the temporary folder
        if item.source.startswith(prefix):
            item.source = item.source[len(prefix) + 6 :]
    return articles, written_errors + errors


@router.post("/import", response_class=HTMLResponse)
async def upload(
    request: Request,
    session: SessionDep,
    agent: AdminDep,
    _csrf: CsrfDep,
    background: BackgroundTasks,
) -> HTMLResponse:
    """Import what was uploaded; each bad file or item is listed, the rest imported."""
    form = await request.form(max_files=MAX_FILES, max_part_size=MAX_UPLOAD_BYTES)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    context = {"agent": agent, "csrf": csrf_token(request.session), "report": None, "error": None}
    session.commit()  # SQLite: release the write lock; the import commits in its own batches
    if not files:
        context["error"] = "Choose one or more files to upload."
        return page(request, "admin/import.html", context, status_code=422)
    if len(files) > MAX_FILES:
        context["error"] = f"At most {MAX_FILES} files at once: put more in a zip."
        return page(request, "admin/import.html", context, status_code=413)
    uploads, total = [], 0
    for upload_file in files:
        data = await upload_file.read(MAX_UPLOAD_BYTES + 1)
        total += len(data)
        if total > MAX_UPLOAD_BYTES:
            context["error"] = f"The upload is larger than {MAX_UPLOAD_BYTES // 2**20} MB."
            return page(request, "admin/import.html", context, status_code=413)
        uploads.append((upload_file.filename, data))
    with tempfile.TemporaryDirectory(prefix="supportbot-upload-") as tmp:
        articles, errors = await run_in_threadpool(_read_uploads, Path(tmp), uploads)
    if not articles and not errors:
        context["error"] = "None of the files is an article format we read."
        return page(request, "admin/import.html", context, status_code=422)
    report = await run_in_threadpool(
        import_in_batches, request.app.state.sessionmaker, articles, errors
    )
    context["report"] = report
    if report.created or report.updated:
        request_reindex(request, background)
    return page(request, "admin/import.html", context, status_code=200)


@router.get("/export.zip")
def export_zip(session: SessionDep, agent: AdminDep) -> Response:
    """Every article as <id>.md with front matter, in one zip (`supportbot import` reads it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for article in session.scalars(select(Article).order_by(Article.id)):
            zf.writestr(f"articles/{article.id}.md", to_markdown(article))
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="articles.zip"'},
    )
