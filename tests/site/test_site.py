"""The built HTML book, opened in a real browser (headless Chromium driven by Playwright).

Run after the book is built (`make test` does: `make book-strict`, then `make test-site`). On every
chapter page it checks that MathJax rendered the equations, every image loaded, the Colab launch
button points at the notebook in the repository, the sidebar lists every chapter, and the console
shows no errors. The machines cannot reach MathJax's CDN, so the test serves the npm package
`mathjax` (installed into .cache/ by the Makefile) in its place: the page asks for the same URL
and gets the same script. Every other request that leaves localhost is refused and reported.

It also checks every internal link of the site, and saves a screenshot of one chapter page to
_build/screenshots/ as an artefact.
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

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
MATHJAX = ROOT / ".cache" / "mathjax" / "node_modules" / "mathjax" / "es5"
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
    if not (MATHJAX / "tex-mml-chtml.js").exists():
        pytest.fail(f"expected MathJax at {MATHJAX}; `make test-site` installs the npm package")
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
            return route.continue_()
        match = re.search(r"/mathjax@3/es5/(.+)$", urlparse(url).path)
        if match and (MATHJAX / match.group(1)).is_file():
            return route.fulfill(
                path=str(MATHJAX / match.group(1)), content_type="application/javascript"
            )
        self.refused.append(url)
        return route.abort()

    def close(self):
        self.context.close()


@pytest.fixture(scope="module")
def visits(browser, server):
    opened: dict[str, PageVisit] = {}

    def visit(page: str) -> PageVisit:
        if page not in opened:
            opened[page] = PageVisit(browser, f"{server}/{page}.html")
        return opened[page]

    yield visit
    for v in opened.values():
        v.close()


def test_the_book_has_chapters():
    assert CHAPTERS, "expected notebooks listed in _toc.yml"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_console_errors_or_outside_requests(visits, page):
    v = visits(page)
    assert not v.console_errors, f"{page}: console errors {v.console_errors}"
    assert not v.refused, f"{page}: requests outside the site {v.refused}"
    assert v.page.locator("h1").count() >= 1


@pytest.mark.parametrize("page", PAGES)
def test_maths_is_rendered_by_mathjax(visits, page):
    v = visits(page)
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


@pytest.mark.parametrize("page", PAGES)
def test_every_image_loads(visits, page):
    v = visits(page)
    broken = v.page.evaluate(
        "() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i "
        "=> i.src)"
    )
    assert not broken, f"{page}: images that did not load: {broken}"


@pytest.mark.parametrize("page", CHAPTERS)
def test_colab_button_points_at_the_notebook_in_the_repository(visits, page):
    v = visits(page)
    hrefs = v.page.eval_on_selector_all(
        "a[href*='colab.research.google.com']", "els => els.map(e => e.href)"
    )
    repo = urlparse(CONFIG["repository"]["url"]).path.strip("/")
    expected = f"https://colab.research.google.com/github/{repo}/blob/{CONFIG['repository']['branch']}/{page}.ipynb"
    assert expected in hrefs, f"{page}: Colab links {hrefs}, expected {expected}"


def test_sidebar_lists_every_page(visits):
    v = visits(CHAPTERS[0])
    hrefs = v.page.eval_on_selector_all(".bd-sidebar-primary a", "els => els.map(e => e.href)")
    listed = {urlparse(h).path.lstrip("/").removesuffix(".html") for h in hrefs}
    missing = [p for p in PAGES[1:] if p not in listed]
    assert not missing, f"sidebar misses {missing}"


def test_screenshot_of_a_chapter_page(visits):
    v = visits(CHAPTERS[-1])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{Path(CHAPTERS[-1]).name}.png"
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
