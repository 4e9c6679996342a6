"""The built HTML book, both editions, opened in a real browser (headless Chromium, Playwright).

Run after the book is built (`make test` does: `make book-strict`, then `make test-site`). On every
page of the English edition (_build/html) and the Korean one (_build/html/ko) it checks that
MathJax rendered the equations, every image loaded, the Colab launch button points at the notebook
in the repository, the sidebar lists every chapter (under translated part captions in Korean), the
banner links to the same page in the other edition (and, on a Korean page not fully translated,
says how much is), and the console shows no errors. MathJax is served by the site itself
(book/_ext/mathjax_local.py): every request that leaves localhost is refused and reported, so the
pages are checked as a reader offline sees them. At 1280- and 1920-pixel windows no code block
may scroll sideways, and none of 80 columns or fewer may wrap.

It also checks every internal link of the site, and saves a screenshot of one chapter page of
each edition to _build/screenshots/ as an artefact.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import polib
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
LOCALES = ROOT / "locales"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "_build" / "screenshots"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc["parts"]:
        walk(part["chapters"])
    return pages


PAGES = _toc_pages()
CHAPTERS = [p for p in PAGES if (ROOT / f"{p}.ipynb").exists()]
# Each edition's folder in the site: English at the root, the Korean edition in ko/.
EDITIONS = {"en": "", "ko": "ko/"}
EDITION_PAGES = [pytest.param(e, p, id=f"{e}-{p}") for e in EDITIONS for p in PAGES]
EDITION_CHAPTERS = [pytest.param(e, p, id=f"{e}-{p}") for e in EDITIONS for p in CHAPTERS]
WIDTHS = (1280, 1920)


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail(f"no built book at {HTML}: run `make book` first")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test reports what matters itself
        pass


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"expected Chromium at {CHROMIUM} (Debian package 'chromium'); `make test-site` "
            "installs it"
        )
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


class PageVisit:
    """One page opened in the browser, with what it logged and what it tried to fetch outside."""

    def __init__(self, browser, url: str):
        self.console_errors: list[str] = []
        self.refused: list[str] = []
        self.requested: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self.page.route("**/*", self._route)
        self.page.goto(url, wait_until="load")
        # MathJax typesets asynchronously; its startup promise resolves when the page is done.
        self.has_mathjax = self.page.evaluate("() => !!(window.MathJax && window.MathJax.startup)")
        if self.has_mathjax:
            self.page.wait_for_function(
                "() => window.MathJax.startup.promise !== undefined", timeout=30_000
            )
            self.page.evaluate("() => window.MathJax.startup.promise")

    def _route(self, route):
        url = route.request.url
        if url.startswith("http://127.0.0.1"):
            self.requested.append(url)
            return route.continue_()
        self.refused.append(url)
        return route.abort()

    def close(self):
        self.context.close()


@pytest.fixture(scope="module")
def visits(browser, server):
    opened: dict[str, PageVisit] = {}

    def visit(edition: str, page: str) -> PageVisit:
        key = f"{EDITIONS[edition]}{page}"
        if key not in opened:
            opened[key] = PageVisit(browser, f"{server}/{key}.html")
        return opened[key]

    yield visit
    for v in opened.values():
        v.close()


def test_the_book_has_chapters():
    assert CHAPTERS, "expected notebooks listed in _toc.yml"


def test_both_editions_are_built():
    for edition, folder in EDITIONS.items():
        assert (HTML / folder / "index.html").exists(), f"no {edition} edition at {HTML / folder}"


@pytest.mark.parametrize(("edition", "page"), EDITION_PAGES)
def test_page_renders_without_console_errors_or_outside_requests(visits, edition, page):
    v = visits(edition, page)
    assert not v.console_errors, f"{page}: console errors {v.console_errors}"
    assert not v.refused, f"{page}: requests outside the site {v.refused}"
    assert v.page.locator("h1").count() >= 1
    assert v.page.get_attribute("html", "lang") == edition


@pytest.mark.parametrize(("edition", "page"), EDITION_PAGES)
def test_maths_is_rendered_by_mathjax(visits, edition, page):
    v = visits(edition, page)
    text = v.page.inner_text("article")
    # Anything MathJax did not typeset stays as raw TeX delimiters in the text.
    assert "$$" not in text and "\\(" not in text and "\\[" not in text, f"{page}: raw TeX left"
    source = (
        (ROOT / f"{page}.md").read_text()
        if (ROOT / f"{page}.md").exists()
        else (ROOT / f"{page}.ipynb").read_text()
    )
    if re.search(r"\$[^$\n]+\$", source):
        assert v.has_mathjax, f"{page}: has maths but MathJax did not load"
        assert v.page.locator("mjx-container").count() > 0, f"{page}: no equation was typeset"
        assert v.page.locator("mjx-merror").count() == 0, f"{page}: MathJax reported errors"
        served = [u for u in v.requested if "/_static/mathjax/tex-mml-chtml.js" in u]
        assert served, f"{page}: MathJax was not served by the site itself"


@pytest.mark.parametrize(("edition", "page"), EDITION_PAGES)
def test_every_image_loads(visits, edition, page):
    v = visits(edition, page)
    broken = v.page.evaluate(
        "() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i "
        "=> i.src)"
    )
    assert not broken, f"{page}: images that did not load: {broken}"


@pytest.mark.parametrize(("edition", "page"), EDITION_CHAPTERS)
def test_colab_button_points_at_the_notebook_in_the_repository(visits, edition, page):
    v = visits(edition, page)
    hrefs = v.page.eval_on_selector_all(
        "a[href*='colab.research.google.com']", "els => els.map(e => e.href)"
    )
    repo = urlparse(CONFIG["repository"]["url"]).path.strip("/")
    expected = f"https://colab.research.google.com/github/{repo}/blob/{CONFIG['repository']['branch']}/{page}.ipynb"
    assert expected in hrefs, f"{page}: Colab links {hrefs}, expected {expected}"


@pytest.mark.parametrize("edition", EDITIONS)
def test_sidebar_lists_every_page(visits, edition):
    v = visits(edition, CHAPTERS[0])
    hrefs = v.page.eval_on_selector_all(".bd-sidebar-primary a", "els => els.map(e => e.href)")
    folder = EDITIONS[edition]
    listed = {
        urlparse(h).path.lstrip("/").removeprefix(folder).removesuffix(".html") for h in hrefs
    }
    missing = [p for p in PAGES[1:] if p not in listed]
    assert not missing, f"sidebar misses {missing}"
    captions = v.page.eval_on_selector_all(
        ".bd-sidebar-primary .caption-text", "els => els.map(e => e.textContent.trim())"
    )
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    expected = [_translated(edition, str(ROOT / toc["root"]), p["caption"]) for p in toc["parts"]]
    assert captions == expected, f"{edition}: part captions {captions}, expected {expected}"


def _translated(edition: str, page: str, msgid: str) -> str:
    """msgid as the edition shows it: its translation if the page's catalogue has a current one."""
    po = LOCALES / edition / "LC_MESSAGES" / f"{Path(page).relative_to(ROOT).as_posix()}.po"
    if edition == "en" or not po.exists():
        return msgid
    entry = polib.pofile(str(po)).find(msgid)
    if entry is None or not entry.msgstr or "fuzzy" in entry.flags:
        return msgid
    return entry.msgstr


def _fully_translated(edition: str, page: str) -> bool:
    po = LOCALES / edition / "LC_MESSAGES" / f"{page}.po"
    if not po.exists():
        return False
    entries = [e for e in polib.pofile(str(po)) if e.msgid and not e.obsolete]
    return all(e.msgstr and "fuzzy" not in e.flags for e in entries)


@pytest.mark.parametrize(("edition", "page"), EDITION_PAGES)
def test_banner_links_to_the_same_page_in_the_other_edition(visits, server, edition, page):
    v = visits(edition, page)
    hrefs = v.page.eval_on_selector_all("a.edition-link", "els => els.map(e => e.href)")
    expected = {f"{server}/{folder}{page}.html" for e, folder in EDITIONS.items() if e != edition}
    assert set(hrefs) == expected, f"{edition} {page}: edition links {hrefs}, expected {expected}"
    for href in hrefs:
        assert (HTML / urlparse(href).path.lstrip("/")).exists(), f"{href} was not built"
    note = v.page.locator(".translation-progress")
    if edition == "en" or _fully_translated(edition, page):
        assert note.count() == 0, (
            f"{edition} {page}: complete, yet the banner says {note.all_inner_texts()}"
        )
    else:
        assert note.count() == 1 and re.search(r"\d+%|영어 원문으로만", note.inner_text()), (
            f"{edition} {page}: not fully translated, and the banner does not say how much is"
        )


@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("width", WIDTHS)
def test_code_fits_the_page(browser, server, edition, width):
    """No code block scrolls sideways, and none of 80 columns or fewer wraps: the editions' CSS
    sizes code so that 80 columns fit; only a longer line may wrap (book/_static/editions.css)."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.route(
        "**/*",
        lambda r: r.continue_() if r.request.url.startswith("http://127.0.0.1") else r.abort(),
    )
    scrolling, wrapping, blocks = [], [], 0
    for name in PAGES:
        page.goto(f"{server}/{EDITIONS[edition]}{name}.html", wait_until="load")
        counts = page.evaluate(_COUNT_CODE_THAT_DOES_NOT_FIT)
        blocks += counts["blocks"]
        scrolling += [f"{name}: {line!r}" for line in counts["scrolling"]]
        wrapping += [f"{name}: {line!r}" for line in counts["wrapping"]]
    context.close()
    assert blocks > 100, f"expected the book's code blocks, found {blocks}"
    assert not scrolling, (
        f"{len(scrolling)} code blocks scroll sideways at {width} px: {scrolling[:5]}"
    )
    assert not wrapping, (
        f"{len(wrapping)} code blocks of <= 80 columns wrap at {width} px: {wrapping[:5]}"
    )


# Per page: the pre blocks that scroll sideways as styled; then, with wrapping turned off, those of
# at most 80 columns that would scroll (that is, that the page's style wraps).
_COUNT_CODE_THAT_DOES_NOT_FIT = """() => {
  const blocks = Array.from(document.querySelectorAll('article pre'));
  const longest = p => Math.max(...p.textContent.split('\\n').map(l => l.length));
  const widest = p => p.textContent.split('\\n').reduce((a, l) => l.length > a.length ? l : a, '');
  const scrolling = blocks.filter(p => p.scrollWidth > p.clientWidth).map(widest);
  blocks.forEach(p => { p.style.whiteSpace = 'pre'; });
  const wraps = p => longest(p) <= 80 && p.scrollWidth > p.clientWidth;
  const wrapping = blocks.filter(wraps).map(widest);
  blocks.forEach(p => { p.style.whiteSpace = ''; });
  return {blocks: blocks.length, scrolling, wrapping};
}"""


@pytest.mark.parametrize("edition", EDITIONS)
def test_screenshot_of_a_chapter_page(visits, edition):
    v = visits(edition, CHAPTERS[-1])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{edition}_{Path(CHAPTERS[-1]).name}.png"
    v.page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 10_000


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag in {"img", "script"} and attrs.get("src"):
            self.links.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.links.append(attrs["href"])


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def test_internal_links_resolve():
    pages = [
        p for p in HTML.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts
    ]
    assert pages, f"no HTML pages under {HTML}"
    broken = []
    for page in pages:
        base = "file://" + str(page)
        for link in _parse(page).links:
            if re.match(r"^[a-z][a-z0-9+.-]*:", link) and not link.startswith("file:"):
                continue  # external (https:, mailto:, javascript:): not ours to check offline
            target, fragment = urldefrag(urljoin(base, link))
            target_path = Path(unquote(urlparse(target).path))
            if target_path.is_dir():
                target_path = target_path / "index.html"
            if not target_path.exists():
                broken.append(f"{page.relative_to(HTML)} -> {link}")
            elif (
                fragment
                and target_path.suffix == ".html"
                and fragment not in _parse(target_path).ids
            ):
                broken.append(f"{page.relative_to(HTML)} -> {link} (no anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(set(broken))[:50])
