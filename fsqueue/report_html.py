"""The report document (fsqueue.report) as one self-contained HTML page: inline CSS and SVG, no script
to run, nothing fetched, so it opens offline in any browser and can be mailed or copied off a cluster.

Every chart is drawn here as SVG; hovering a bar or cell shows its details (SVG <title>). The document
itself is embedded as JSON (<script type="application/json" id="fsq-report">) for anyone who wants the
numbers behind the page.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

Doc = Mapping[str, Any]

STATE_COLORS = {
    "SUCCEEDED": "#2f9e66", "FAILED": "#d9463e", "CANCELED": "#98a2ad", "REJECTED": "#8b5cf6",
    "RUNNING": "#3b82f6", "QUEUED": "#e9a23b", "TIMEOUT": "#b45309", "SKIPPED": "#c4b5a0",
}
STATE_ORDER = ("SUCCEEDED", "FAILED", "TIMEOUT", "CANCELED", "SKIPPED", "REJECTED", "RUNNING", "QUEUED")
WIDTH, LEFT, RIGHT = 1100, 96, 16
_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900,
          1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)

CSS = """
:root{--ink:#1d2330;--muted:#5f6b7a;--line:#e3e7ed;--card:#fff;--bg:#f5f7fa;--accent:#3b82f6}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 28px 40px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:0 0 10px}
.sub{color:var(--muted);margin:0}.sub code{font-size:13px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;margin:16px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(96px,1fr));gap:10px;background:none;
border:0;padding:0}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 12px}
.card .v{font-size:20px;font-weight:600;white-space:nowrap}.card .k{color:var(--muted);font-size:11px;
text-transform:uppercase;letter-spacing:.04em;white-space:nowrap}
.two{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px;background:none;border:0;
padding:0;margin:0}.two>section{margin:0}
.note{color:var(--muted);font-size:13px;margin:-4px 0 10px}
.legend{display:flex;flex-wrap:wrap;gap:14px;margin:8px 0 0;font-size:13px;color:var(--muted)}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.stack{display:flex;height:22px;border-radius:6px;overflow:hidden;background:var(--line)}
.stack div{height:100%}
svg{display:block;width:100%;height:auto}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:var(--muted)}
svg .bar rect{stroke:#fff;stroke-width:.6}svg .bar:hover rect{stroke:var(--ink);stroke-width:1.2}
svg .grid{stroke:var(--line)}svg .band{fill:#f0f3f7}
svg text.node{font-weight:600;fill:var(--ink)}svg text.core{font-size:9px}
.scroll{max-height:440px;overflow:auto;border-top:1px solid var(--line)}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;color:var(--muted);font-weight:600;border-bottom:1px solid var(--line);padding:6px 8px;
position:sticky;top:0;background:var(--card)}
td{border-bottom:1px solid var(--line);padding:6px 8px;vertical-align:top}
td.num,th.num{text-align:right;white-space:nowrap}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.path{word-break:break-all;color:var(--muted)}
.pill{display:inline-block;padding:1px 7px;border-radius:9px;color:#fff;font-size:12px;font-weight:600}
.stats{display:flex;flex-wrap:wrap;gap:4px 16px;color:var(--muted);font-size:13px;margin-top:6px}
.stats b{color:var(--ink);font-weight:600}
.empty{color:var(--muted);font-style:italic}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:18px}
"""


def render(report: Doc) -> str:
    """The whole page."""
    spool = _e(report["spool"])
    body = [
        _header(report),
        _cards(report),
        _states(report),
        _timeline_section(report),
        _utilization_section(report),
        ('<div class="two">' + _histogram_section("Queue wait", "from submission to start, per job", report["queue_wait"])
         + _histogram_section("Run time", "from start to end, per attempt", report["run_time"]) + "</div>"),
        _failed_section(report),
        _slowest_section(report),
        (f'<footer>fsqueue report format {report["version"]} · {report["jobs"]["total"]} jobs, '
         f'{report["attempts"]["total"]} attempts · the numbers: <code>fsq report --spool {spool} --format json'
         "</code></footer>"),
    ]
    data = orjson.dumps(report).decode().replace("</", "<\\/")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>fsqueue report: {spool}</title><link rel="icon" href="data:,"><style>{CSS}</style></head>'
        f'<body><main>{"".join(body)}</main>'
        f'<script type="application/json" id="fsq-report">{data}</script></body></html>\n'
    )


# -- page parts ---------------------------------------------------------------------------------------


def _header(report: Doc) -> str:
    span = report["span"]
    when = "no job has run yet"
    if span["start"] is not None:
        end = _clock(span["end"])
        if end[:10] == _clock(span["start"])[:10]:
            end = end[11:]  # the same day: the date once is enough
        when = f'run {_clock(span["start"])} to {end} ({duration(span["seconds"])})'

    return (f'<h1>fsqueue report</h1><p class="sub">spool <code>{_e(report["spool"])}</code> · {when} · '
            f'generated {_clock(report["generated"])}</p><p class="sub">{_e(report["manager"]["note"])}</p>')


def _cards(report: Doc) -> str:
    counts, cores = report["jobs"]["counts"], report["cores"]
    active = counts.get("QUEUED", 0) + counts.get("RUNNING", 0)
    utilization = cores["utilization"]
    cards = [
        ("jobs", f'{report["jobs"]["total"]:,}', None),
        ("succeeded", f'{counts.get("SUCCEEDED", 0):,}', "SUCCEEDED"),
        ("failed", f'{counts.get("FAILED", 0):,}', "FAILED"),
        ("canceled", f'{counts.get("CANCELED", 0):,}', "CANCELED"),
        ("rejected", f'{counts.get("REJECTED", 0):,}', "REJECTED"),
        ("active", f"{active:,}", "RUNNING"),
        ("jobs/s", "–" if report["throughput"] is None else f'{report["throughput"]:.3g}', None),
        ("cores busy", "–" if utilization is None else f"{utilization:.0%}", None),
        ("median run", duration(report["run_time"]["p50"]), None),
        ("median wait", duration(report["queue_wait"]["p50"]), None),
    ]
    hints = {"active": f'queued {counts.get("QUEUED", 0):,}, running {counts.get("RUNNING", 0):,}',
             "jobs/s": "jobs finished per second over the whole run",
             "cores busy": f"busy core-seconds over {cores['total']} cores for the whole run",
             "median run": "half the attempts ran shorter", "median wait": "half the jobs waited less to start"}
    items = []
    for key, value, state in cards:
        color = f' style="color:{STATE_COLORS[state]}"' if state and value != "0" else ""
        hint = f' title="{_e(hints[key])}"' if key in hints else ""
        items.append(f'<div class="card"{hint}><div class="k">{key}</div><div class="v"{color}>{value}</div></div>')
    return f'<section class="cards">{"".join(items)}</section>'


def _states(report: Doc) -> str:
    counts, total = report["jobs"]["counts"], report["jobs"]["total"]
    if not total:
        return '<section><h2>Jobs per state</h2><p class="empty">no job in this spool yet</p></section>'
    states = [s for s in STATE_ORDER if counts.get(s)]
    stack = "".join(f'<div title="{s} {counts[s]:,}" style="width:{100 * counts[s] / total:.3f}%;'
                    f'background:{STATE_COLORS[s]}"></div>' for s in states)
    legend = "".join(f'<span><i style="background:{STATE_COLORS[s]}"></i>{s.lower()} <b>{counts[s]:,}</b> '
                     f"({counts[s] / total:.1%})</span>" for s in states)
    return f'<section><h2>Jobs per state</h2><div class="stack">{stack}</div><div class="legend">{legend}</div></section>'


def _timeline_section(report: Doc) -> str:
    timeline, span = report["timeline"], report["span"]
    if span["start"] is None or span["seconds"] <= 0:
        return '<section><h2>Timeline</h2><p class="empty">nothing has run yet</p></section>'
    if timeline["mode"] == "bars":
        note = "One bar per attempt, on the cores it held; hover a bar for the job."
        svg = _gantt(report["nodes"], timeline["bars"], span["start"], span["seconds"])
        states = sorted({bar["state"] for bar in timeline["bars"]}, key=STATE_ORDER.index)
        legend = "".join(f'<span><i style="background:{STATE_COLORS[s]}"></i>{_state_word(s)}</span>' for s in states)
    else:
        note = (f'{report["attempts"]["total"]:,} attempts: too many for a bar each, so each node shows how many of '
                "its cores were busy over time (darker is busier); failures are red ticks. Hover for numbers.")
        svg = _heatmap(report["nodes"], timeline, span["seconds"])
        legend = (f'<span><i style="background:{STATE_COLORS["RUNNING"]};opacity:.25"></i>few cores busy</span>'
                  f'<span><i style="background:{STATE_COLORS["RUNNING"]}"></i>all cores busy</span>'
                  f'<span><i style="background:{STATE_COLORS["FAILED"]}"></i>a job failed</span>')
    return (f'<section id="timeline"><h2>Timeline</h2><p class="note">{note}</p>{svg}'
            f'<div class="legend">{legend}</div></section>')


def _state_word(state: str) -> str:
    return {"QUEUED": "interrupted, queued again", "RUNNING": "running now"}.get(state, state.lower())


def _gantt(nodes: Sequence[Doc], bars: Iterable[Doc], start: float, seconds: float) -> str:
    rows = sum(node["cores"] for node in nodes)
    row_h = max(2.0, min(22.0, 480 / max(rows, 1)))
    top, height = 22, 22 + rows * row_h
    x = _scale(start, seconds)
    offsets, parts, y = {}, [], float(top)
    for index, node in enumerate(nodes):
        offsets[node["name"]] = y
        block = node["cores"] * row_h
        if index % 2 == 0:
            parts.append(f'<rect class="band" x="{LEFT}" y="{y:.1f}" width="{WIDTH - LEFT - RIGHT}" height="{block:.1f}"/>')
        parts.append(f'<text x="0" y="{y + block / 2 + 4:.1f}" class="node">{_e(_short(node["name"]))}'
                     f'<title>{_e(node["name"])}: {node["cores"]} cores</title></text>')
        if row_h >= 10:
            parts += [f'<text x="{LEFT - 6}" y="{y + (core + 0.5) * row_h + 3:.1f}" text-anchor="end" class="core">'
                      f"{core}</text>" for core in range(node["cores"])]
        y += block
    parts += _time_axis(seconds, top, height)
    for bar in bars:
        rects = "".join(
            f'<rect x="{x(bar["start"]):.1f}" y="{offsets[node] + first * row_h:.1f}" '
            f'width="{max(x(bar["end"]) - x(bar["start"]), 1.5):.1f}" height="{count * row_h:.1f}" rx="{min(3, row_h / 4):.1f}"/>'
            for node, cores in bar["cores"].items() if node in offsets for first, count in _runs(cores))
        parts.append(f'<g class="bar" data-id="{_e(bar["id"])}" fill="{STATE_COLORS.get(bar["state"], "#777")}">'
                     f"<title>{_e(_bar_title(bar))}</title>{rects}</g>")
    return _svg(height + 6, parts)


def _heatmap(nodes: Sequence[Doc], timeline: Doc, seconds: float) -> str:
    row_h = max(3.0, min(24.0, 480 / max(len(nodes), 1)))
    top, start, width = 22, timeline["start"], timeline["bin_seconds"]
    height = top + len(nodes) * row_h
    x = _scale(start, seconds)
    parts, offsets = _time_axis(seconds, top, height), {}
    for index, node in enumerate(nodes):
        y = top + index * row_h
        offsets[node["name"]] = y
        parts.append(f'<text x="{LEFT - 8}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end">{_e(_short(node["name"]))}</text>'
                     if row_h >= 9 else "")
        busy = timeline["nodes"].get(node["name"], [])
        for first, last, level in _levels(busy, node["cores"]):
            if level == 0:
                continue
            share = sum(busy[first:last]) / (last - first) / max(node["cores"], 1)
            x0, x1 = x(start + first * width), x(start + last * width)
            parts.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{x1 - x0:.1f}" height="{row_h - 1:.1f}" '
                         f'fill="{STATE_COLORS["RUNNING"]}" fill-opacity="{0.12 + 0.88 * level / 10:.2f}"><title>'
                         f'{_e(node["name"])}, {_offset(first * width)} to {_offset(last * width)}: '
                         f'{share * node["cores"]:.1f} of {node["cores"]} cores busy ({share:.0%})</title></rect>')
    for mark in timeline["failures"]:
        if mark["node"] in offsets:
            mx, my = x(mark["time"]), offsets[mark["node"]]
            parts.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{my:.1f}" y2="{my + row_h - 1:.1f}" '
                         f'stroke="{STATE_COLORS["FAILED"]}" stroke-width="1.2" stroke-opacity=".8"><title>{_e(mark["id"])} failed at '
                         f"{_clock(mark['time'])}</title></line>")
    return _svg(height + 6, parts)


def _levels(busy: Sequence[float], cores: int) -> list[tuple[int, int, int]]:
    """Runs of bins with the same shade (0 to 10), so a steady node is one rectangle, not 240."""
    runs: list[tuple[int, int, int]] = []
    for index, value in enumerate(busy):
        level = 0 if value <= 0 else max(1, min(10, round(10 * value / max(cores, 1))))
        if runs and runs[-1][2] == level:
            runs[-1] = (runs[-1][0], index + 1, level)
        else:
            runs.append((index, index + 1, level))
    return runs


def _utilization_section(report: Doc) -> str:
    series, total = report["utilization"]["busy"], report["cores"]["total"]
    if not series or not total:
        return ""
    top, plot = 14, 150
    height = top + plot + 22
    peak = float(max(max(series), total))

    def y(value: float) -> float:
        return top + plot - plot * value / peak

    step = (WIDTH - LEFT - RIGHT) / len(series)
    points = " ".join(f"{LEFT + i * step:.1f},{y(v):.1f} {LEFT + (i + 1) * step:.1f},{y(v):.1f}"
                      for i, v in enumerate(series))
    parts = [f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
             f'<text x="{LEFT - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>'
             for v in sorted({0, total / 2 if total % 2 == 0 else total // 2, total})]
    parts.append(f'<polygon points="{LEFT},{y(0):.1f} {points} {WIDTH - RIGHT},{y(0):.1f}" '
                 f'fill="{STATE_COLORS["RUNNING"]}" fill-opacity=".25" stroke="{STATE_COLORS["RUNNING"]}" stroke-width="1.2"/>')
    parts += _time_axis(report["span"]["seconds"], top, top + plot, labels_below=True)
    mean = report["cores"]["utilization"] or 0.0
    return (f'<section id="utilization"><h2>Utilization</h2><p class="note">Busy cores over time (average per '
            f'{duration(report["utilization"]["bin_seconds"])}), of {total} cores; {mean:.0%} on average.</p>'
            f'{_svg(height, parts)}</section>')


def _histogram_section(title: str, what: str, dist: Doc) -> str:
    hist = dist["histogram"]
    if not dist["count"]:
        return f'<section><h2>{title}</h2><p class="empty">no data yet</p></section>'
    width, left, top, plot = 520, 52, 10, 130
    counts, edges = hist["counts"], hist["edges"]
    peak = max(counts)
    bar_w = (width - left - 10) / len(counts)
    parts = [f'<line class="grid" x1="{left}" x2="{width - 10}" y1="{top + plot}" y2="{top + plot}"/>',
             f'<text x="{left - 6}" y="{top + 8}" text-anchor="end">{peak:,}</text>',
             f'<text x="{left - 6}" y="{top + plot}" text-anchor="end">0</text>']
    for index, count in enumerate(counts):
        h = plot * count / peak
        parts.append(f'<rect x="{left + index * bar_w + 1:.1f}" y="{top + plot - h:.1f}" width="{bar_w - 2:.1f}" '
                     f'height="{h:.1f}" fill="{STATE_COLORS["RUNNING"]}" rx="2"><title>{count:,} between '
                     f"{duration(edges[index])} and {duration(edges[index + 1])}</title></rect>")
    for index in (0, len(counts) // 2, len(counts)):
        anchor = "start" if index == 0 else "end" if index == len(counts) else "middle"
        parts.append(f'<text x="{left + index * bar_w:.1f}" y="{top + plot + 16}" text-anchor="{anchor}">'
                     f"{duration(edges[index])}</text>")
    scale = "log-spaced bins" if hist["log"] else "even bins"
    stats = "".join(f"<span>{key} <b>{duration(dist[key])}</b></span>" for key in ("min", "p50", "p90", "p99", "max"))
    return (f'<section><h2>{title}</h2><p class="note">{what}; {dist["count"]:,} values, {scale}</p>'
            f'<svg viewBox="0 0 {width} {top + plot + 22}" role="img">{"".join(parts)}</svg>'
            f'<div class="stats">{stats}<span>mean <b>{duration(dist["mean"])}</b></span></div></section>')


def _failed_section(report: Doc) -> str:
    failed = report["failed"]
    if not failed["total"]:
        return '<section id="failed"><h2>Failed jobs</h2><p class="empty">no job failed</p></section>'
    more = (f'<p class="note">The first {len(failed["jobs"])} of {failed["total"]:,}; all of them: '
            f'<code>fsq list --spool {_e(report["spool"])} --state FAILED</code></p>'
            if failed["total"] > len(failed["jobs"]) else "")
    rows = "".join(
        f'<tr><td class="mono">{_e(job["id"])}</td><td>{_e(job["name"] or "")}</td><td class="num">{_exit(job)}</td>'
        f'<td>{_e(job["reason"] or "")}</td><td class="num">{job["attempt"]}</td><td class="num">{duration(job["run_time"])}</td>'
        f'<td>{_e(",".join(job["nodes"]))}</td><td class="mono path">{_e(job["stderr"] or "")}</td></tr>'
        for job in failed["jobs"])
    return (f'<section id="failed"><h2>Failed jobs ({failed["total"]:,})</h2>{more}<div class="scroll"><table><thead>'
            '<tr><th>id</th><th>name</th><th class="num">exit</th><th>reason</th><th class="num">attempt</th>'
            f'<th class="num">ran</th><th>nodes</th><th>stderr</th></tr></thead><tbody>{rows}</tbody></table></div>'
            "</section>")


def _slowest_section(report: Doc) -> str:
    slowest = report["slowest"]
    if not slowest:
        return ""
    rows = "".join(
        f'<tr><td class="num">{duration(job["run_time"])}</td><td class="mono">{_e(job["id"])}</td>'
        f'<td>{_e(job["name"] or "")}</td><td><span class="pill" style="background:{STATE_COLORS.get(job["state"], "#777")}">'
        f'{_e(job["state"].lower())}</span></td><td class="num">{_exit(job)}</td><td class="num">{job["cores"]}</td>'
        f'<td>{_e(",".join(job["nodes"]))}</td><td class="mono path">{_e(job["stdout"] or "")}</td></tr>'
        for job in slowest)
    return (f'<section id="slowest"><h2>Slowest jobs</h2><div class="scroll"><table><thead><tr><th class="num">ran'
            '</th><th>id</th><th>name</th><th>state</th><th class="num">exit</th><th class="num">cores</th>'
            f"<th>nodes</th><th>stdout</th></tr></thead><tbody>{rows}</tbody></table></div></section>")


# -- drawing helpers ----------------------------------------------------------------------------------


def _svg(height: float, parts: Iterable[str]) -> str:
    return f'<svg viewBox="0 0 {WIDTH} {height:.0f}" role="img">{"".join(parts)}</svg>'


def _scale(start: float, seconds: float) -> Callable[[float], float]:
    """Time (seconds since the epoch) to x in the SVG."""
    usable = WIDTH - LEFT - RIGHT

    def x(when: float) -> float:
        return LEFT + usable * (when - start) / seconds if seconds > 0 else LEFT

    return x


def _time_axis(seconds: float, top: float, bottom: float, labels_below: bool = False) -> list[str]:
    step = next((s for s in _STEPS if seconds / s <= 8), _STEPS[-1])
    usable, parts, tick = WIDTH - LEFT - RIGHT, [], 0.0
    while tick <= seconds * 1.0001:
        x = LEFT + usable * tick / seconds
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{bottom:.1f}"/>')
        y = bottom + 15 if labels_below else top - 7
        parts.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="middle">{_offset(tick, step)}</text>')
        tick += step
    return parts


def _runs(cores: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous runs of core indices as (first, count): cores 0,1,2,5 draw as two rectangles."""
    runs: list[tuple[int, int]] = []
    for core in sorted(cores):
        if runs and runs[-1][0] + runs[-1][1] == core:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((core, 1))
    return runs


def _bar_title(bar: Doc) -> str:
    label = f'{bar["name"]} ({bar["id"]})' if bar["name"] else bar["id"]
    ran = "running for" if bar["running"] else "ran"
    where = " ".join(f"{node}:{','.join(map(str, cores))}" for node, cores in bar["cores"].items())
    return (f'{label}, attempt {bar["attempt"]}: {bar["state"].lower()}{_exit_words(bar)}, {ran} '
            f'{duration(bar["end"] - bar["start"])} from {_clock(bar["start"])} on {where}')


def _exit_words(job: Doc) -> str:
    if job.get("signal") is not None:
        return f' (signal {job["signal"]})'
    return f' (exit {job["exit_code"]})' if job.get("exit_code") is not None else ""


def _exit(job: Doc) -> str:
    if job.get("signal") is not None:
        return f's{job["signal"]}'
    return "–" if job.get("exit_code") is None else str(job["exit_code"])


def duration(seconds: float | None) -> str:
    """A duration for people: 12 ms, 3.40 s, 2m 05s, 1h 20m, 2d 03h."""
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes}m {secs:02d}s"
    days, hours = divmod(hours, 24)
    return f"{hours}h {minutes:02d}m" if not days else f"{days}d {hours:02d}h"


def _offset(seconds: float, step: float = 1.0) -> str:
    """A tick label: time since the start of the run."""
    if step < 1:
        decimals = max(0, -int(f"{step:e}".split("e")[1]))
        return f"{seconds:.{decimals}f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}" if not secs else f"{hours}h{minutes:02d}m{secs:02d}"
    if minutes:
        return f"{minutes}m" if not secs else f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _clock(stamp: float | None) -> str:
    return "–" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _short(name: str) -> str:
    return name if len(name) <= 14 else name[:13] + "…"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
