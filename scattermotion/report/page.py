"""The report's HTML: a page model (figures, clips, tables, sections) and its rendering to one HTML file.

The page needs no network: styles and plots are inline, pictures and clips are files beside it (relative
URLs). A small inline script checks the page after loading: it counts script errors, resource errors and
``console.error`` calls, waits for every video to decode its first frame (or fail), and records the outcome
on a hidden ``<div id="page-check">`` (``data-images``, ``data-images-loaded``, ``data-videos``,
``data-videos-playable``, ``data-errors``, ``data-done="1"``), so a headless browser can verify the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape


@dataclass
class Figure:
    """A picture with a caption; ``src`` is relative to the page."""

    src: str
    caption: str
    width: int
    height: int


@dataclass
class Clip:
    """A playable video with a poster picture shown before it plays."""

    src: str
    poster: str
    width: int
    height: int
    caption: str


@dataclass
class Table:
    """Rows of text cells; ``bold`` holds (row, column) cells to emphasise, ``muted`` rows to de-emphasise
    (references such as "no motion"); columns after the first ``text_columns`` are right-aligned numbers."""

    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    bold: set[tuple[int, int]] = field(default_factory=set)
    muted: set[int] = field(default_factory=set)
    text_columns: int = 1


@dataclass
class FigureRow:
    """A labelled row of figures (e.g. "motion": one picture per method)."""

    label: str
    figures: list[Figure]
    note: str = ""


@dataclass
class Section:
    """One input: its description, rows of stills, the clip, the score table and the speed plot."""

    anchor: str
    title: str
    facts: list[str]
    notes: list[str]
    rows: list[FigureRow]
    clip: Clip | None
    table: Table
    plot_svg: str


@dataclass
class Page:
    title: str
    facts: list[str]
    notes: list[str]
    sections: list[Section]
    failures: list[tuple[str, str]]
    harness_tables: list[Table] = field(default_factory=list)
    harness_plots: list[str] = field(default_factory=list)
    harness_facts: list[str] = field(default_factory=list)
    explanations: list[str] = field(default_factory=list)


STYLE = """
body { font-family: system-ui, "Segoe UI", sans-serif; margin: 24px; color: #222; max-width: 1500px; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
.facts { color: #555; margin: 2px 0; } .note { color: #8a5a00; }
.failure { color: #b00020; }
.row { display: flex; align-items: flex-start; gap: 12px; margin: 10px 0; }
.row > .label { width: 150px; flex: none; font-weight: 600; padding-top: 4px; overflow-wrap: anywhere; }
.row > .label small { display: block; font-weight: 400; color: #666; }
.figs { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; display: table; }  /* table + table-caption: the caption wraps at the picture's width */
figure img { display: block; border: 1px solid #ddd; }
figcaption { display: table-caption; caption-side: bottom; font-size: 13px; color: #333; margin-top: 2px; }
img.bar { border: 1px solid #ccc; vertical-align: middle; }
video { max-width: 100%; height: auto; border: 1px solid #ddd; background: #000; }
table { border-collapse: collapse; margin: 10px 0; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th.text, td.text { text-align: left; } tr.muted td { color: #888; font-style: italic; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 4px; }
.plots { display: flex; flex-wrap: wrap; gap: 18px; } svg.plot { background: #fff; font-family: inherit; }
.side { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
nav a { margin-right: 14px; } #page-check { display: none; }
"""

# Runs in <head>, before any picture starts loading, so that no error can slip past it.
CHECK_SCRIPT = """
(function () {
  var errors = [];
  window.addEventListener("error", function (event) {
    var target = event.target || {};
    errors.push(event.message || ("failed to load " + (target.currentSrc || target.src || target.tagName)));
  }, true);
  window.addEventListener("unhandledrejection", function () { errors.push("unhandled promise rejection"); });
  var consoleError = console.error;
  console.error = function () {
    errors.push(Array.prototype.join.call(arguments, " "));
    return consoleError.apply(console, arguments);
  };
  function settled(video) {
    return new Promise(function (resolve) {
      if (video.readyState >= 2 || video.error) { resolve(); return; }
      video.addEventListener("loadeddata", resolve);
      video.addEventListener("error", resolve);
    });
  }
  window.addEventListener("load", function () {
    var videos = Array.prototype.slice.call(document.querySelectorAll("video"));
    Promise.all(videos.map(settled)).then(function () {
      var images = Array.prototype.slice.call(document.images);
      var check = document.createElement("div");
      check.id = "page-check";
      check.dataset.images = images.length;
      check.dataset.imagesLoaded = images.filter(function (i) {
        return i.complete && i.naturalWidth > 0;
      }).length;
      check.dataset.videos = videos.length;
      check.dataset.videosPlayable = videos.filter(function (v) {
        return v.readyState >= 2 && !v.error;
      }).length;
      check.dataset.errors = errors.length;
      check.textContent = errors.join("\\n");
      check.dataset.done = "1";
      document.body.appendChild(check);
    });
  });
})();
"""


def _text(value: str) -> str:
    return escape(value, quote=False)


def render_table(table: Table) -> str:
    lines = ["<table>"]
    if table.caption:
        lines.append(f"<caption>{_text(table.caption)}</caption>")

    def cls(column: int) -> str:
        return ' class="text"' if column < table.text_columns else ""

    lines.append(
        "<tr>" + "".join(f"<th{cls(c)}>{_text(h)}</th>" for c, h in enumerate(table.headers)) + "</tr>"
    )
    for r, row in enumerate(table.rows):
        cells = []
        for c, cell in enumerate(row):
            text = _text(cell)
            if (r, c) in table.bold:
                text = f"<b>{text}</b>"
            cells.append(f"<td{cls(c)}>{text}</td>")
        row_class = ' class="muted"' if r in table.muted else ""
        lines.append(f"<tr{row_class}>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _figure(figure: Figure) -> str:
    return (
        f'<figure><img src="{escape(figure.src)}" width="{figure.width}" height="{figure.height}" '
        f'alt="{escape(figure.caption)}" loading="eager">'
        f"<figcaption>{_text(figure.caption)}</figcaption></figure>"
    )


def _figure_row(row: FigureRow) -> str:
    note = f"<small>{_text(row.note)}</small>" if row.note else ""
    figures = "".join(_figure(f) for f in row.figures)
    label = f'<div class="label">{_text(row.label)}{note}</div>'
    return f'<div class="row">{label}<div class="figs">{figures}</div></div>'


def _clip(clip: Clip) -> str:
    return (
        f'<figure><video src="{escape(clip.src)}" poster="{escape(clip.poster)}" width="{clip.width}" '
        f'height="{clip.height}" controls loop muted playsinline preload="auto"></video>'
        f"<figcaption>{_text(clip.caption)}</figcaption></figure>"
    )


def _section(section: Section) -> str:
    parts = [f'<section id="{escape(section.anchor)}"><h2>{_text(section.title)}</h2>']
    parts += [f'<p class="facts">{_text(fact)}</p>' for fact in section.facts]
    parts += [f'<p class="note">{_text(note)}</p>' for note in section.notes]
    parts += [_figure_row(row) for row in section.rows]
    side = [render_table(section.table)]
    if section.plot_svg:
        side.append(section.plot_svg)
    parts.append(f'<div class="side">{"".join(side)}</div>')
    if section.clip is not None:
        parts.append(_clip(section.clip))
    parts.append("</section>")
    return "\n".join(parts)


def render_page(page: Page) -> str:
    """The whole page as one HTML string."""
    nav = [f'<a href="#{escape(s.anchor)}">{_text(s.title)}</a>' for s in page.sections]
    if page.harness_tables:
        nav.append('<a href="#evaluation">evaluation harness</a>')
    body = [f"<h1>{_text(page.title)}</h1>"]
    body += [f'<p class="facts">{_text(fact)}</p>' for fact in page.facts]
    body += [f'<p class="note">{_text(note)}</p>' for note in page.notes]
    if page.failures:
        items = "".join(f"<li>{_text(spec)}: {_text(problem)}</li>" for spec, problem in page.failures)
        body.append(f'<div class="failure"><b>Inputs that failed and were skipped:</b><ul>{items}</ul></div>')
    body.append(f"<nav>{''.join(nav)}</nav>")
    body += [_section(s) for s in page.sections]
    if page.harness_tables:
        body.append('<section id="evaluation"><h2>Evaluation harness</h2>')
        body += [f'<p class="facts">{_text(fact)}</p>' for fact in page.harness_facts]
        body += [render_table(t) for t in page.harness_tables]
        if page.harness_plots:
            body.append(f'<div class="plots">{"".join(page.harness_plots)}</div>')
        body.append("</section>")
    if page.explanations:
        items = "".join(f"<li>{_text(text)}</li>" for text in page.explanations)
        body.append(f"<h2>How to read this page</h2><ul>{items}</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_text(page.title)}</title>\n<style>{STYLE}</style>\n<script>{CHECK_SCRIPT}</script>\n"
        "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
