"""One document, two renderings: Markdown (images linked beside it) and self-contained HTML (images
embedded as data URIs). A document is a list of blocks: ("h1"|"h2"|"h3"|"p"|"pre", text), ("table", header,
rows), ("img", path, alt) or ("details", summary, blocks): a part collapsed in the HTML (in Markdown, a heading)."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from pipeline.io.atomic import TEXT_MARKER

Block = tuple


def to_markdown(blocks: list[Block], out: Path) -> str:
    return "\n".join([TEXT_MARKER, "", *_markdown_lines(blocks, out)])


def _markdown_lines(blocks: list[Block], out: Path) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "pre":
            lines += ["```", block[1].rstrip("\n"), "```", ""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            rel = os.path.relpath(block[1], out.parent)
            lines += [f"![{block[2]}]({Path(rel).as_posix()})", ""]
        elif kind == "details":
            lines += [f"## {block[1]}", "", *_markdown_lines(block[2], out)]
        else:
            raise ValueError(f"unknown block {kind!r}")
    return lines


def _inline(text: str) -> str:
    """`code` and **bold** spans of the Markdown subset the report uses."""
    out, code = [], False
    for i, part in enumerate(html.escape(text).split("`")):
        code = i % 2 == 1
        if code:
            out.append(f"<code>{part}</code>")
        else:
            bits = part.split("**")
            out.append("".join(f"<b>{b}</b>" if j % 2 else b for j, b in enumerate(bits)))
    return "".join(out)


def to_html(blocks: list[Block], title: str) -> str:
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
             "pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}img{max-width:100%}"
             "summary{cursor:pointer}summary h2{display:inline}")
    return (f"<!DOCTYPE html>\n{TEXT_MARKER}\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head>\n<body>\n" + "\n".join(_html_parts(blocks)) + "\n</body></html>\n")


def _html_parts(blocks: list[Block]) -> list[str]:
    body: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_inline(block[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "pre":
            body.append(f"<pre>{html.escape(block[1])}</pre>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>" for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(Path(block[1]).read_bytes()).decode()
            body.append(f'<p><img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}"></p>')
        elif kind == "details":
            body += [f"<details><summary><h2>{_inline(block[1])}</h2></summary>", *_html_parts(block[2]),
                     "</details>"]
        else:
            raise ValueError(f"unknown block {kind!r}")
    return body
