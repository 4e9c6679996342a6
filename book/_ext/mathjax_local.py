"""Serve MathJax 3 from the built site (_static/mathjax), not a CDN, so the book reads offline.

The files come from the pinned PyPI package django-static-mathjax (requirements.txt): despite its
name it has no dependencies and holds the es5 folder of npm's mathjax-full as the Python package
`mathjax`. Only what tex-mml-chtml.js loads is copied: the component, its TeX extensions
(\\boldsymbol is autoloaded), the CHTML fonts, and the menu and accessibility parts it loads
lazily when a reader asks for them.

It also keeps Sphinx from breaking display maths that carries its own \\tag: Sphinx wraps any
multi-line display (one with \\\\) in \\begin{split}, where MathJax refuses a \\tag ("\\tag not
allowed in split environment"), so such an equation ($$ \\begin{aligned} ... \\end{aligned}
\\tag{4.1} $$) is passed to MathJax as written.
"""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

from docutils import nodes
from sphinx.errors import ExtensionError

COMPONENT = "tex-mml-chtml.js"
PARTS = [COMPONENT, "input/tex/extensions", "output/chtml/fonts/woff-v2", "ui", "a11y", "sre"]


def es5_folder() -> Path:
    """The MathJax 3 es5 folder of the installed package; a clear error when it is missing."""
    try:
        es5 = Path(str(files("mathjax"))) / "static" / "mathjax" / "es5"
    except ModuleNotFoundError:
        es5 = None
    if es5 is None or not (es5 / COMPONENT).is_file():
        raise ExtensionError(
            f"mathjax_local: expected MathJax 3 ({COMPONENT}) from the package "
            "django-static-mathjax, found none: pip install -r requirements.txt"
        )
    return es5


def _use_local_path(app, config):
    config.mathjax_path = f"mathjax/{COMPONENT}"
    es5_folder()  # fail before reading the sources, not after


def _copy(app, exc):
    if exc is not None or app.builder.format != "html":
        return
    es5, target = es5_folder(), Path(app.outdir, "_static", "mathjax")
    for part in PARTS:
        source, destination = es5 / part, target / part
        if source.is_dir():
            shutil.copytree(source, destination, dirs_exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)


def _keep_tagged_displays_unwrapped(app, doctree, docname):
    for node in doctree.findall(nodes.math_block):
        latex = node.astext()
        if node.get("nowrap") or node.get("number") or "\n\n" in latex.strip():
            continue
        if "\\tag" in latex and "\\\\" in latex:
            start, end = app.config.mathjax_display
            node["nowrap"] = True
            node.children = [nodes.Text(f"{start}{latex}{end}")]


def setup(app):
    app.connect("config-inited", _use_local_path, priority=900)
    app.connect("doctree-resolved", _keep_tagged_displays_unwrapped)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
