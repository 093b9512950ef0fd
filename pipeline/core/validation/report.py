"""The validation report on disk: report.json, an offline Data Docs page, and cleanlab's label suspects."""
from __future__ import annotations

import csv
import html as html_lib
import re
from pathlib import Path
from typing import Any, Protocol


class _Report(Protocol):
    label_suspects: tuple
    data_docs_html: str

    def to_json(self) -> str: ...


# Glyphs for the status icons that Font Awesome would draw; the page must not fetch anything.
_OFFLINE_CSS = """
body { font-family: sans-serif; margin: 1.5em; } table { border-collapse: collapse; width: 100%; }
td, th { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
.fa-check-circle::before, .fa-check::before { content: "\\2714"; color: #1a7f37; }
.fa-times::before, .fa-times-circle::before { content: "\\2718"; color: #cf222e; }
.badge { font-family: monospace; font-weight: bold; } .alert-secondary { background: #eee; padding: 4px; }
.collapse { display: block; }
"""


def offline_data_docs(result: Any) -> str:
    """GE's Data Docs page for this validation, as one HTML file that loads nothing from the network."""
    import great_expectations
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    for r in result.results:  # GE's own renderers reject numpy scalars, which its own metrics return
        observed = (r.result or {}).get("observed_value")
        if hasattr(observed, "item"):
            r.result["observed_value"] = observed.item()
    page = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
    page = re.sub(r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>', "", page)
    page = re.sub(r'<link[^>]*\bhref="https?://[^"]*"[^>]*>', "", page)
    page = re.sub(r'<img[^>]*\bsrc="https?://[^"]*"[^>]*>', "", page)
    page = re.sub(r'\b(href|action)="https?://[^"]*"', r'\1="#"', page)
    styles = Path(great_expectations.__file__).parent / "render/view/static/styles/data_docs_default_styles.css"
    css = (styles.read_text() if styles.is_file() else "") + _OFFLINE_CSS
    page = page.replace("</head>", f"<style>{css}</style></head>", 1) if "</head>" in page else \
        f"<html><head><style>{css}</style></head><body>{page}</body></html>"
    # What is left (a logo in a stylesheet, a chart schema) would be fetched or shown as a link.
    return re.sub(r"https?://[^\s\"'()<>]+", "", page)


def write_report(report: _Report, folder: str | Path) -> dict[str, Path]:
    """report.json (every check), data_docs.html (GE Data Docs, offline) and label_issues.csv (cleanlab's suspects)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.json", "data_docs": out / "data_docs.html", "label_issues": out / "label_issues.csv"}
    paths["report"].write_text(report.to_json())
    paths["data_docs"].write_text(report.data_docs_html or f"<html><body><pre>{html_lib.escape(report.to_json())}"
                                                            "</pre></body></html>")
    with paths["label_issues"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "given_label", "suggested_label", "label_quality"])
        writer.writerows(report.label_suspects)
    return paths
