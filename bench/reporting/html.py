"""report.html: one self-contained page (figures embedded as data URIs, no script, no network) with the headline,
the Rel Δ–L curves, the surrogate's fidelity scatter, each L's detail tables, runtime, the run's configuration
and the package versions."""

from __future__ import annotations

import base64
import html
import platform
import re
from importlib import metadata

PACKAGES = ("torch", "numpy", "scipy", "pandas", "captum", "shap", "lime", "sage-importance", "scikit-learn",
            "anndata", "mudata", "dask", "matplotlib")

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 24px 48px; color: #1d1d1f; }
h1 { margin: 24px 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { margin: 22px 0 6px; font-size: 15px; }
nav { position: sticky; top: 0; background: #fff; padding: 8px 0; border-bottom: 1px solid #eee; z-index: 1; }
nav a { margin-right: 14px; color: #0b57d0; text-decoration: none; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 8px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e6e6e6; text-align: right; white-space: nowrap; }
th { background: #f5f5f7; position: sticky; top: 0; } td:first-child, th:first-child { text-align: left; }
tr:hover td { background: #fafafa; }
p.note, p.lead { color: #555; max-width: 900px; }
img { max-width: 100%; border: 1px solid #eee; } #fidelity img { max-width: 520px; }
table.kv td { text-align: left; white-space: normal; overflow-wrap: anywhere; vertical-align: top; }
table.kv td:first-child { white-space: nowrap; }
"""
# Key-value tables (configuration, packages) wrap long values inside the page instead of scrolling them out of view
# (a right-aligned, unwrapped list of 13 methods was cut at the right edge at 1280 px).


def png_img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def study_page(title: str, lead: str, body: str, png: bytes | None = None, alt: str = "") -> str:
    """A study's report.html (`bench budget`, `bench worlds`): the title, the lead line, an optional figure and the
    body (HTML, e.g. `text_html` of the study's markdown rendered with html tables)."""
    figure = png_img(png, alt) if png else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}"
            f"</style></head><body><h1>{html.escape(title)}</h1><p class='lead'>{html.escape(lead)}</p>{figure}"
            f"{body}</body></html>")


def text_html(text: str) -> str:
    """Markdown-ish prose (with **bold** and `code`) → escaped HTML paragraphs; HTML tables pass through."""
    parts = re.split(r"(<table>.*?</table>)", text, flags=re.S)
    out = []
    for part in parts:
        if part.startswith("<table>"):
            out.append(f'<div class="scroll">{part}</div>')
            continue
        for line in (p.strip() for p in part.split("\n")):
            if line:
                line = html.escape(line)
                line = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", line)
                out.append('<p class="note">' + re.sub(r"`(.+?)`", r"<code>\1</code>", line) + "</p>")
    return "\n".join(out)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _key_values(items: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in items.items())
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def report_html(header: str, sec: dict, curves_png: bytes, context: dict) -> str:
    """The page. `sec` is `report.report_sections(data, "html")`; `context` may hold `fidelity_png` (bytes),
    `fidelity_summary` (str), `config` (dict of the run's settings) and `packages` (the package versions the run
    used; default: this process's)."""
    title, _, lead = header.partition("\n")
    nav = [("headline", "Headline"), ("curves", "Rel Δ vs L")]
    body = [f'<section id="headline"><h2>Headline</h2>{text_html(sec["headline_table"])}</section>',
            f'<section id="curves"><h2>Rel Δ vs L</h2>{png_img(curves_png, "Rel Δ vs L per method")}</section>']
    if sec.get("movement"):
        nav.append(("surrogates", "Between surrogates"))
        body.append(f'<section id="surrogates"><h2>Between surrogates</h2>{text_html(sec["movement"])}</section>')
    if context.get("fidelity_png"):
        nav.append(("fidelity", "Surrogate fidelity"))
        body.append(f'<section id="fidelity"><h2>Surrogate fidelity</h2>{text_html(context.get("fidelity_summary", ""))}'
                    f'{png_img(context["fidelity_png"], "observed vs predicted marker expression")}</section>')
    for L, sections in sec["per_L"].items():
        nav.append((f"L{L}", f"L = {L}"))
        inner = "".join(f"<h3>{html.escape(t)}</h3>" + (f'<p class="note">{html.escape(n)}</p>' if n else "")
                        + text_html(table) for t, n, table in sections)
        body.append(f'<section id="L{L}"><h2>L = {L}</h2>{inner}</section>')
    nav += [("runtime", "Runtime"), ("config", "Configuration")]
    failed = "".join(f"<li>{html.escape(line)}</li>" for line in sec["failed"])
    body.append(f'<section id="runtime"><h2>Runtime and status</h2>{text_html(sec["runtime"])}'
                + (f"<h3>Failed jobs</h3><ul>{failed}</ul>" if failed else "") + "</section>")
    body.append(f'<section id="config"><h2>Run configuration</h2>{_key_values(context.get("config", {}))}'
                f"<h3>Package versions</h3>{_key_values(context.get('packages') or package_versions())}</section>")
    links = "".join(f'<a href="#{i}">{html.escape(label)}</a>' for i, label in nav)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>GRIDS-Bench report</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(title.lstrip('# ').strip())}</h1>{text_html(lead)}<nav>{links}</nav>"
            + "\n".join(body) + "</body></html>\n")
