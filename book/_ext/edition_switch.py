"""A banner on every page linking to the same page in the book's other language edition.

The English edition is the site root (_build/html), the Korean one the folder ko/ inside it
(_build/html/ko). The links are relative, so they work from a web server and from file:// alike,
offline. On a Korean page that is not fully translated the banner also says how much of it is:
the share of the page's catalogue messages that are translated and not fuzzy, the measure of
tests/test_translations.py (Sphinx's own per-page count also counts nodes that later transforms
drop, such as sphinx-exercise's titles, and never reaches 100%). The extension also adds
book/_static (the editions' CSS) and translates the book's title, which is configuration rather
than content, from the root page's heading.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.pofile import read_po

EDITIONS = {"en": ("", "English"), "ko": ("ko", "한국어")}  # language -> (folder, label)
STATIC = Path(__file__).resolve().parents[1] / "_static"


def other_edition_links(lang: str, pagename: str) -> list[str]:
    """Relative links from `pagename` in edition `lang` to the same page in the other editions."""
    folder = EDITIONS[lang][0]
    to_site_root = "../" * pagename.count("/") + ("../" * len(folder.split("/")) if folder else "")
    links = []
    for other, (other_folder, label) in EDITIONS.items():
        if other != lang:
            prefix = f"{other_folder}/" if other_folder else ""
            links.append(
                f'<a class="edition-link" href="{to_site_root}{prefix}{pagename}.html" '
                f'hreflang="{other}" lang="{other}">{label}</a>'
            )
    return links


def catalogue_progress(app, pagename: str) -> tuple[int, int] | None:
    """(translated, total) messages of the page's catalogue; None when the page has none."""
    for folder in app.config.locale_dirs:
        po = Path(app.srcdir, folder, app.config.language, "LC_MESSAGES", f"{pagename}.po")
        if po.is_file():
            with po.open("rb") as f:
                messages = [m for m in read_po(f) if m.id]
            return sum(bool(m.string) and not m.fuzzy for m in messages), len(messages)
    return None


def progress_note(progress: tuple[int, int] | None) -> str:
    """What a Korean page says of its own translation: nothing when it is complete."""
    if progress is None or not progress[1]:
        return "이 페이지는 영어 원문으로만 제공됩니다."
    translated, total = progress
    if translated >= total:
        return ""
    share = 100 * translated // total
    return f"이 페이지는 {share}% 번역되었습니다. 번역되지 않은 문단은 영어 원문으로 보입니다."


def _banner(app, pagename, templatename, context, doctree):
    lang = app.config.language or "en"
    if lang not in EDITIONS:
        return
    text = " · ".join(other_edition_links(lang, pagename))
    if lang != "en" and doctree is not None:
        note = progress_note(catalogue_progress(app, pagename))
        if note:
            text += f' <span class="translation-progress">— {note}</span>'
    context["theme_announcement"] = text


def _translate_book_title(app):
    """The book's title (html_title, from _config.yml) as the root page's H1 translates it."""
    lang = app.config.language or "en"
    if lang == "en" or not app.config.html_title:
        return
    for folder in app.config.locale_dirs:
        for po in sorted(Path(app.srcdir, folder, lang, "LC_MESSAGES").rglob("*.po")):
            with po.open("rb") as f:
                message = read_po(f).get(app.config.html_title)
            if message is not None and message.string and not message.fuzzy:
                app.config.html_title = message.string
                return


def _static(app, config):
    config.html_static_path.append(str(STATIC))


def setup(app):
    app.connect("config-inited", _static)
    app.connect("builder-inited", _translate_book_title)
    app.add_css_file("editions.css")
    app.connect("html-page-context", _banner)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
