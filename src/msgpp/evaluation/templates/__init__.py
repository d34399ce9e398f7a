"""The evaluation's web pages as files (package data): an HTML template per page, with its CSS and
JavaScript beside it.

`<page>.html` holds `$style` and `$script` where the contents of `<page>.css` and `<page>.js` go
(the pages stay single self-contained files that a browser opens from disk), and `$`-names for
whatever the caller fills in (string.Template; the templates hold no other `$`).

    report.*      the `msgpp evaluate` report (evaluation/report.py)
    listening.*   the listening-test page (evaluation/listening.py)
"""

from __future__ import annotations

from importlib.resources import files
from string import Template


def read(name: str) -> str:
    """One template file's text, from the installed package (a wheel or a checkout alike)."""
    return (files(__name__) / name).read_text(encoding="utf-8")


def render(page: str, **values: str) -> str:
    """`page`.html with its CSS and JavaScript inlined and `values` filled in; a missing value is
    a KeyError (a template and its caller out of step), never a half-filled page."""
    return Template(read(f"{page}.html")).substitute(style=read(f"{page}.css"), script=read(f"{page}.js"), **values)
