"""Emit each inline <script> once per page.

sphinx-thebe 0.3.1 registers its configuration script (``const THEBE_JS_URL = ...``) every time
Sphinx reads the sources, and Jupyter Book reads them twice, so each page declared the constants
twice and the browser logged "Identifier 'THEBE_JS_URL' has already been declared". Script files
are already de-duplicated by Sphinx; this does the same for inline bodies.
"""

from __future__ import annotations


def _drop_repeated_inline_scripts(app, pagename, templatename, context, doctree):
    seen: set[str] = set()
    unique = []
    for script in context.get("script_files", []):
        body = getattr(script, "attributes", {}).get("body")
        if body:
            if body in seen:
                continue
            seen.add(body)
        unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _drop_repeated_inline_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
