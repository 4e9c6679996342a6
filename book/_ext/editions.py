"""Build the book's translated editions and keep their catalogues in step with the English.

usage: python book/_ext/editions.py COMMAND
  html ko [--strict]  build the Korean edition into _build/ko/html, then copy it to _build/html/ko
                      (--strict: every page re-read, warnings are errors, as `make book-strict`)
  gettext             extract the English messages into _build/i18n/gettext/**/*.pot
  update              gettext, then merge the messages into locales/ko/LC_MESSAGES/**/*.po
                      (`make translations`, after editing the English)
  check               gettext, then fail unless every catalogue holds exactly the current English
                      messages (an English edit without `make translations` fails here)

English stays the only source; Jupyter Book's CLI builds it into _build/html. The CLI cannot set
`language` (jupyter-book#1791), so this calls the same jupyter_book.sphinx.build_sphinx with a
language override. Each builder and language gets its own doctree cache and output parent: Sphinx
refuses an environment pickled by another builder, and MyST-NB writes into <outdir>/.. .
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "_build"
LOCALES = ROOT / "locales"
LANGUAGES = ("ko",)
# Pages whose text is not translated: the API reference is companion's docstrings.
UNTRANSLATED = ("book/api/",)


def build(language: str, builder: str, out: Path, doctrees: Path, strict: bool = False) -> None:
    """One Sphinx build. Every page is written even when few were read: a translated part caption
    (in the root page's catalogue) changes the sidebar of every page."""
    from jupyter_book.sphinx import build_sphinx

    result = build_sphinx(
        ROOT,
        out,
        noconfig=True,
        path_config=str(ROOT / "_config.yml"),
        confoverrides={
            "external_toc_path": (ROOT / "_toc.yml").as_posix(),
            "latex_individualpages": False,
            "language": language,
        },
        doctreedir=doctrees,
        builder=builder,
        force_all=True,
        freshenv=strict,
        warningiserror=strict,
        keep_going=strict,
    )
    if result != 0:
        sys.exit(f"editions: the {language} {builder} build failed")


def html(language: str, strict: bool) -> None:
    base = BUILD / language
    build(language, "html", base / "html", base / ".doctrees", strict)
    site = BUILD / "html" / language
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(base / "html", site)
    print(f"editions: the {language} edition is in {site.relative_to(ROOT)}/index.html")


def gettext() -> Path:
    """Extract the translatable messages of every translated page into .pot templates."""
    pots = BUILD / "i18n" / "gettext"
    shutil.rmtree(pots, ignore_errors=True)
    build("en", "gettext", pots, BUILD / "i18n" / ".doctrees")
    for pot in list(pots.rglob("*.pot")):
        if pot.relative_to(pots).as_posix().startswith(UNTRANSLATED):
            pot.unlink()
    return pots


def update() -> None:
    import catalogues
    from sphinx_intl.basic import update as merge

    pots = gettext()
    merge(str(LOCALES), str(pots), LANGUAGES, line_width=0, ignore_obsolete=True, jobs=1)
    for language in LANGUAGES:
        for page in catalogues.stale_pages(pots, language):  # pages gone from the book
            print(f"editions: {page} is no longer in the book; its catalogue is removed")
            catalogues.po_path(language, page).unlink()
        filled = catalogues.prefill(language)
        print(f"editions: {filled} messages filled in (maths, code only, repeated messages)")


def check() -> None:
    import catalogues

    pots = gettext()
    problems = [p for lang in LANGUAGES for p in catalogues.out_of_step(pots, lang)]
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(
            f"editions: {len(problems)} catalogues differ from the English; "
            "run `make translations` and translate what it marks"
        )
    print("editions: every catalogue holds exactly the current English messages")


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    command = argv[0] if argv else ""
    if command == "html" and len(argv) >= 2 and argv[1] in LANGUAGES:
        html(argv[1], strict="--strict" in argv)
    elif command in {"gettext", "update", "check"} and len(argv) == 1:
        {"gettext": gettext, "update": update, "check": check}[command]()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
