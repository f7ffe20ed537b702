"""``index.html``: the report a browser opens, one self-contained file (plots embedded as base64
PNG data URIs, inline CSS, no script, nothing fetched from the network) whose links to the
experiment's artifacts are relative (``../metrics.json``), so ``results/<experiment>/`` can be
copied or shared as a folder. :class:`Page` builds it from blocks; the AT and GAN reports and the
sweep report compose their pages from the same blocks (and :func:`markdown_blocks` for the
Markdown they already write for terminals)."""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #333}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}tr.do td{font-weight:600}
figure{display:inline-block;margin:.6em 1.2em .6em 0;vertical-align:top}figcaption{font-size:.85em;color:#555}
img{max-width:100%}pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.85em}
code{background:#f3f3f3;padding:0 .2em}.warn{color:#a40000}nav a{margin-right:1em}
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def inline(text: str) -> str:
    """Escape ``text`` and render the Markdown the reports use inline: **bold** and `code`."""
    out = esc(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


class Page:
    """An HTML page built block by block; images are read from ``folder`` (where they were drawn)
    and embedded, links are written relative to ``location`` (the folder index.html will live in)."""

    def __init__(self, title: str, folder: Path, location: Path) -> None:
        self.title, self.folder, self.location = title, Path(folder), Path(location)
        self.parts: list[str] = []
        self.toc: list[tuple[str, str]] = []
        self.tables: dict[str, tuple[list[str], list[list]]] = {}  # the tables with an id, by id

    def h2(self, text: str) -> None:
        anchor = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
        self.toc.append((anchor, text))
        self.parts.append(f'<h2 id="{anchor}">{esc(text)}</h2>')

    def h3(self, text: str) -> None:
        self.parts.append(f"<h3>{esc(text)}</h3>")

    def p(self, text: str, cls: str | None = None) -> None:
        self.parts.append(f"<p{f' class={cls!r}' if cls else ''}>{inline(text)}</p>")

    def bullets(self, items: list[str]) -> None:
        self.parts.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")

    def table(self, head: list[str], rows: list[list], *, id: str | None = None,
              row_class=lambda row: None) -> None:
        if id:
            self.tables[id] = (head, rows)
        out = [f"<table{f' id={id!r}' if id else ''}>", "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head)
               + "</tr></thead><tbody>"]
        for row in rows:
            cls = row_class(row)
            out.append(f"<tr{f' class={cls!r}' if cls else ''}>" + "".join(f"<td>{inline(c)}</td>" for c in row)
                       + "</tr>")
        self.parts.append("\n".join(out) + "</tbody></table>")

    def img(self, name: str, caption: str) -> None:
        """Embed ``folder/name`` (a PNG drawn for this report)."""
        self.parts.append(f'<figure><img src="{data_uri(self.folder / name)}" alt="{esc(caption)}">'
                          f"<figcaption>{esc(caption)}</figcaption></figure>")

    def pre(self, text: str, summary: str | None = None) -> None:
        block = f"<pre>{esc(text)}</pre>"
        self.parts.append(f"<details><summary>{esc(summary)}</summary>{block}</details>" if summary else block)

    def link(self, target: Path | str, text: str | None = None) -> str:
        """An ``<a>`` to ``target`` (a path as the job sees it) relative to the page's location."""
        # abspath, not resolve: a symlinked artifact (DVC's symlink cache) keeps its results/ path
        rel = Path(os.path.relpath(os.path.abspath(target), os.path.abspath(self.location))).as_posix()
        return f'<a href="{esc(rel)}">{esc(text or rel)}</a>'

    def raw(self, fragment: str) -> None:
        self.parts.append(fragment)

    def text(self) -> str:
        nav = "<nav>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in self.toc) + "</nav>"
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width\"><title>{esc(self.title)}</title>"
                f"<style>{CSS}</style></head><body>\n<h1>{esc(self.title)}</h1>\n{nav}\n"
                + "\n".join(self.parts) + "\n</body></html>\n")


def markdown_table(lines: list[str]) -> list[list[str]]:
    """The rows (header first) of a Markdown pipe table, without its separator line."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return [r for r in rows if not all(set(c) <= set("-: ") for c in r)]


def markdown_blocks(page: Page, lines: list[str]) -> None:
    """The Markdown subset the reports write (headings, paragraphs, bullets, pipe tables, images of
    files in the page's folder) as blocks of ``page``."""
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line:
            i += 1
        elif line.startswith("## "):
            page.h2(line[3:])
            i += 1
        elif line.startswith("#"):
            page.h3(line.lstrip("#").strip())
            i += 1
        elif line.startswith("|"):
            start = i
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            rows = markdown_table(lines[start:i])
            page.table(rows[0], rows[1:])
        elif m := re.fullmatch(r"(?:- \w[^:]*: )?!\[(.*)\]\((.+\.png)\)", line):
            page.img(m.group(2), m.group(1))
            i += 1
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(lines[i][2:])
                i += 1
            page.bullets(items)
        else:
            page.p(line)
            i += 1


def artifact_links(page: Page, exp_dir: Path, skip: Path) -> None:
    """Relative links to every file of the experiment's results folder but ``skip`` (the report
    folder itself, a child of ``exp_dir``), grouped by folder."""
    exp_dir = Path(exp_dir)
    def shown(p: Path) -> bool:  # hidden files and folders (the report's own temporary folder) left out
        rel = p.relative_to(exp_dir).parts
        return (p.is_file() and not any(part.startswith(".") for part in rel) and rel[0] != skip.name
                and not p.name.endswith(".state.json"))

    files = sorted(p for p in exp_dir.rglob("*") if shown(p))
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault(f.parent.relative_to(exp_dir).as_posix(), []).append(f)
    items = [f"<li><code>{esc(g if g != '.' else exp_dir.name + '/')}</code>: "
             + ", ".join(page.link(f, f.name) for f in fs) + "</li>" for g, fs in groups.items()]
    page.raw("<ul>" + "".join(items) + "</ul>")
