"""The support lead's metrics dashboard (/admin/metrics) and its CSV export (/admin/metrics.csv).

The numbers come from :mod:`bot.metrics`; the two charts are drawn here with matplotlib's
object-oriented API on the Agg canvas (no pyplot, so no global figure state shared between
request threads) and inlined as PNG data URIs, which the pages' CSP allows.
"""

from __future__ import annotations

import base64
import csv
import io
import math
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from bot.auth import csrf_token
from bot.deps import SessionDep
from bot.metrics import (
    DEFINITIONS,
    MAX_DAYS,
    PRESETS,
    Durations,
    Metrics,
    Period,
    PeriodError,
    compute_metrics,
    parse_period,
)
from bot.models import utcnow
from bot.routes.agent import AdminDep
from bot.routes.pages import page

router = APIRouter(prefix="/admin", include_in_schema=False)
FromDate = Annotated[str | None, Query(alias="from")]
ToDate = Annotated[str | None, Query(alias="to")]
COLORS = {"deflected": "#1a7f37", "handed off": "#1a5fb4", "other": "#8a9099"}
CSV_COLUMNS = (
    "date", "conversations", "with_customer_message", "deflected", "deflection_rate",
    "handed_off", "handoff_rate", "offline_tickets", "csat_responses", "csat_average",
    "feedback_up", "feedback_down", "feedback_ratio",
    "bot_first_response_median_s", "bot_first_response_p90_s",
    "human_first_response_median_s", "human_first_response_p90_s",
    "handling_median_s", "resolution_median_s",
)  # fmt: skip


# --- formatting ------------------------------------------------------------------------------


def percent(value: float | None) -> str:
    return "no data" if value is None else f"{value * 100:.1f}%"


def duration(seconds: float | None) -> str:
    """'0.8 s', '42 s', '3 min 5 s', '2 h 5 min', '3 d 4 h'."""
    if seconds is None:
        return "no data"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _timing(d: Durations, unit: str, none: str) -> str:
    if not d.count:
        return none
    return f"90th percentile {duration(d.p90)}; {d.count} {unit}"


def cards(m: Metrics) -> list[dict[str, str]]:
    """The headline numbers, each with a detail line and its definition."""
    t = m.total
    csat = "no data" if t.csat_average is None else f"{t.csat_average:.2f} / 5"
    rows = [
        ("conversations", "Conversations", str(t.conversations),
         f"{t.engaged} with a customer message"),
        ("deflection", "Deflection rate", percent(t.deflection_rate),
         f"{t.deflected} of {t.engaged} conversations"),
        ("handoff_rate", "Handoff rate", percent(t.handoff_rate),
         f"{t.handed_off} of {t.engaged} conversations; {_plural(t.offline_tickets, 'offline ticket')}"),
        ("csat", "CSAT average", csat, f"{t.csat_count} responses"),
        ("feedback", "Feedback ratio", percent(t.feedback_ratio),
         f"{t.feedback_up} up, {t.feedback_down} down"),
        ("bot_first_response", "First response, bot (median)",
         duration(t.bot_first_response.median), _timing(t.bot_first_response, "replies", "no bot replies in this period")),
        ("human_first_response", "First response, person (median)",
         duration(t.human_first_response.median), _timing(t.human_first_response, "handoffs", "no agent answered a live handoff yet")),
        ("handling", "Handling time (median)", duration(t.handling.median),
         _timing(t.handling, "handoffs", "no handoff was claimed and then closed")),
        ("resolution", "Resolution time (median)", duration(t.resolution.median),
         _timing(t.resolution, "conversations", "no conversation has been closed")),
    ]  # fmt: skip
    keys = ("key", "name", "value", "detail")
    return [dict(zip(keys, row, strict=True), definition=DEFINITIONS[row[0]]) for row in rows]


# --- charts ----------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _axes(ylabel: str, period: Period) -> tuple[Any, Any]:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.add_subplot()
    locator = AutoDateLocator(maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel(ylabel)
    ax.set_xlim(period.start - timedelta(days=0.7), period.end + timedelta(days=0.7))
    ax.grid(axis="y", color="#d0d4da", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def outcome_chart(m: Metrics) -> dict[str, str]:
    """Conversations per day, stacked: deflected, handed off, other."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = _axes("Conversations", m.period)
    days = [s.day for s in m.days]
    bottom = [0] * len(days)
    series = {
        "deflected": [s.deflected for s in m.days],
        "handed off": [s.handed_off for s in m.days],
        "other": [s.other for s in m.days],
    }
    for label, values in series.items():
        ax.bar(days, values, width=0.8, bottom=bottom, label=label, color=COLORS[label])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0, top=max(1, *bottom) * 1.05)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1), frameon=False, ncols=3)
    t = m.total
    busiest = max(m.days, key=lambda s: s.conversations)
    alt = (
        f"Stacked bar chart of conversations per day from {m.period.start} to {m.period.end}: "
        f"{t.conversations} in all, {t.deflected} deflected, {t.handed_off} handed off and "
        f"{t.other} other."
    )
    if busiest.conversations:
        alt += f" The busiest day was {busiest.day} with {busiest.conversations}."
    return {"src": _png(fig), "alt": alt, "title": "Conversations per day, by outcome"}


def deflection_chart(m: Metrics) -> dict[str, str]:
    """The deflection rate per day (gaps on days without a customer message)."""
    from matplotlib.ticker import PercentFormatter

    fig, ax = _axes("Deflection rate", m.period)
    days = [s.day for s in m.days]
    rates = [math.nan if s.deflection_rate is None else s.deflection_rate * 100 for s in m.days]
    ax.plot(days, rates, color=COLORS["deflected"], linewidth=2, marker="o", markersize=3)
    ax.set_ylim(0, 105)
    ax.yaxis.set_major_formatter(PercentFormatter())
    known = [r for r in rates if not math.isnan(r)]
    alt = f"Line chart of the deflection rate per day from {m.period.start} to {m.period.end}: "
    if known:
        alt += (
            f"{percent(m.total.deflection_rate)} over the period, daily from {min(known):.0f}% "
            f"to {max(known):.0f}% on the {len(known)} days with customer messages."
        )
    else:
        alt += "no day had a customer message."
    return {"src": _png(fig), "alt": alt, "title": "Deflection rate per day"}


# --- CSV ------------------------------------------------------------------------------------


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def csv_text(m: Metrics) -> str:
    """One row per day with the headline columns (rates 0-1, times in seconds; blank: no data)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for s in m.days:
        writer.writerow(
            [
                str(s.day),
                s.conversations,
                s.engaged,
                s.deflected,
                _number(s.deflection_rate, 4),
                s.handed_off,
                _number(s.handoff_rate, 4),
                s.offline_tickets,
                s.csat_count,
                _number(s.csat_average, 2),
                s.feedback_up,
                s.feedback_down,
                _number(s.feedback_ratio, 4),
                _number(s.bot_first_response.median, 1),
                _number(s.bot_first_response.p90, 1),
                _number(s.human_first_response.median, 1),
                _number(s.human_first_response.p90, 1),
                _number(s.handling.median, 1),
                _number(s.resolution.median, 1),
            ]
        )
    return out.getvalue()


# --- routes ----------------------------------------------------------------------------------


def _presets(today: date) -> list[dict[str, str]]:
    found = []
    for days in PRESETS:
        period = Period.last(days, today)
        found.append({"label": f"Last {days} days", "from": str(period.start), "to": str(today)})
    return found


@router.get("/metrics", response_class=HTMLResponse)
def metrics_page(
    request: Request,
    session: SessionDep,
    admin: AdminDep,
    start: FromDate = None,
    end: ToDate = None,
) -> Response:
    """The dashboard for the chosen period (default: the last 30 days, UTC)."""
    today = utcnow().date()
    context: dict[str, Any] = {
        "agent": admin,
        "csrf": csrf_token(request.session),
        "presets": _presets(today),
        "definitions": DEFINITIONS,
        "max_days": MAX_DAYS,
        "form": {"from": start or "", "to": end or ""},
        "error": None,
    }
    try:
        period = parse_period(start, end, today)
    except PeriodError as exc:
        context["error"] = str(exc)
        response = page(request, "admin/metrics.html", context, status_code=422)
    else:
        metrics = compute_metrics(session, period)
        # end the transaction before drawing: on SQLite every transaction holds the write lock
        session.commit()
        context.update(
            form={"from": str(period.start), "to": str(period.end)},
            period=period,
            metrics=metrics,
            cards=cards(metrics),
            charts=[outcome_chart(metrics), deflection_chart(metrics)],
            percent=percent,
            duration=duration,
        )
        response = page(request, "admin/metrics.html", context)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/metrics.csv")
def metrics_csv(
    session: SessionDep, admin: AdminDep, start: FromDate = None, end: ToDate = None
) -> Response:
    """The period's figures, one row per day, as a CSV download."""
    try:
        period = parse_period(start, end, utcnow().date())
    except PeriodError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    body = csv_text(compute_metrics(session, period))
    name = f"supportbot-metrics-{period.start}-to-{period.end}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
