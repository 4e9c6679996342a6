"""Sphinx glue for the book's translated editions (locales/<lang>/LC_MESSAGES/<page>.po).

1. Part captions. sphinx-external-toc inserts the root page's toctrees in a transform of priority
   100, after Sphinx's Locale transform (20) has translated the page, so the captions of _toc.yml
   are extracted into the root page's catalogue but never applied. TranslateTocCaptions applies
   them once the toctrees exist.
2. Silent fallbacks. Sphinx keeps the English text, without a warning, when a translation does not
   parse to the node it replaces: MyST reads a heading translated as "1. ..." or a paragraph
   starting "- " as a list. WarnUnappliedTranslations turns each such case into a warning, so the
   strict build (-W) fails on it. It also marks a message the catalogue keeps verbatim (display
   maths, a table cell of code) as translated, which Sphinx does not.
"""

from __future__ import annotations

from os import path

from sphinx import addnodes
from sphinx.locale import init as init_locale
from sphinx.transforms import SphinxTransform
from sphinx.util import logging
from sphinx.util.i18n import docname_to_domain
from sphinx.util.nodes import extract_messages

logger = logging.getLogger(__name__)


def _catalogue(transform: SphinxTransform) -> dict[str, str]:
    """The current page's translations (msgid -> msgstr), empty for the English edition."""
    config = transform.config
    if not config.language or config.language == "en":
        return {}
    dirs = [path.join(transform.env.srcdir, d) for d in config.locale_dirs]
    domain = docname_to_domain(transform.env.docname, config.gettext_compact)
    catalog, has_catalog = init_locale(dirs, config.language, domain)
    merged: dict[str, str] = {}
    while has_catalog and catalog is not None:
        merged = {**getattr(catalog, "_catalog", {}), **merged}
        catalog = getattr(catalog, "_fallback", None)
    return {k: v for k, v in merged.items() if isinstance(k, str) and k}


class WarnUnappliedTranslations(SphinxTransform):
    # After sphinx.transforms.i18n.Locale (20), before TranslationProgressTotaliser (25).
    default_priority = 21

    def apply(self, **kwargs) -> None:
        from sphinx.builders.gettext import MessageCatalogBuilder

        if isinstance(self.app.builder, MessageCatalogBuilder):
            return
        catalogue = _catalogue(self)
        for node, msg in extract_messages(self.document):
            translation = catalogue.get(msg)
            if translation == msg:
                node["translated"] = True  # kept verbatim on purpose (maths, code): translated
            elif translation and not node.get("translated"):
                logger.warning(
                    "translation not applied (does it start like a list or heading? escape it, "
                    "e.g. '1\\. ...'): %r",
                    translation[:60],
                    location=node,
                    type="i18n",
                    subtype="unapplied",
                )


class TranslateTocCaptions(SphinxTransform):
    default_priority = 101  # sphinx_external_toc.events.InsertToctrees is 100

    def apply(self, **kwargs) -> None:
        catalogue = _catalogue(self)
        for toctree in self.document.findall(addnodes.toctree):
            caption = toctree.get("rawcaption")
            if caption and catalogue.get(caption):
                toctree["caption"] = catalogue[caption]
                toctree["translated"] = True


def setup(app):
    app.add_transform(WarnUnappliedTranslations)
    app.add_transform(TranslateTocCaptions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
