"""The Korean edition's catalogues (locales/ko/LC_MESSAGES/book/*.po), checked without a build.

- every catalogue parses, as Sphinx reads it (Babel) and as the checks read it (polib);
- the .po lint: every translation keeps the roles and their targets ({term}, {cite:t}, ...), the
  maths, the inline code and the link targets of its English, and does not start like a list or
  heading (MyST would read it as one and Sphinx would silently keep the English);
- every page not listed in locales/ko/PENDING is 100% translated with nothing fuzzy (a fuzzy
  message is one whose English changed since it was translated);
- PENDING lists only pages that are not finished, so it can only shrink as pages are translated.
Whether the catalogues hold the current English is checked by `make book-strict`
(`book/_ext/editions.py check`), which needs a build.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polib
import pytest
import yaml
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import catalogues  # noqa: E402

LANGUAGE = "ko"
PAGES = catalogues.pages(LANGUAGE)
PENDING = catalogues.pending(LANGUAGE)


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found = [toc["root"]]

    def walk(entries):
        for entry in entries:
            found.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc["parts"]:
        walk(part["chapters"])
    return found


def test_every_page_of_the_book_has_a_catalogue():
    expected = [p for p in _toc_pages() if not p.startswith("book/api/")]
    missing = [p for p in expected if p not in PAGES]
    assert not missing, (
        f"pages without a catalogue in locales/{LANGUAGE}: {missing}; run make translations"
    )
    extra = [p for p in PAGES if p not in expected]
    assert not extra, f"catalogues of pages not in _toc.yml: {extra}"


@pytest.mark.parametrize("page", sorted(PAGES) + ["sphinx"])
def test_catalogue_parses(page):
    path = catalogues.messages_dir(LANGUAGE) / f"{page}.po"
    with path.open("rb") as f:
        catalogue = read_po(f, locale=LANGUAGE)
    assert catalogue.locale is not None and str(catalogue.locale) == LANGUAGE
    assert len(polib.pofile(str(path))) == len([m for m in catalogue if m.id])


@pytest.mark.parametrize("page", sorted(PAGES))
def test_translations_keep_their_markup(page):
    problems = [
        f"{problem}: {e.msgstr[:70]!r}"
        for e in polib.pofile(str(PAGES[page])).translated_entries()
        for problem in catalogues.lint(e.msgid, e.msgstr)
    ]
    assert not problems, f"{page}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_is_fully_translated_unless_pending(page):
    translated, fuzzy, total = catalogues.progress(PAGES[page])
    if page in PENDING:
        print(f"{page}: pending, {translated}/{total} translated, {fuzzy} fuzzy")
        return
    assert fuzzy == 0, f"{page}: {fuzzy} fuzzy messages (the English changed): review them"
    assert translated == total, (
        f"{page}: {total - translated} of {total} messages untranslated; translate them or, "
        f"for a page not yet translated, list it in locales/{LANGUAGE}/PENDING"
    )


def test_pending_lists_only_unfinished_pages():
    print(f"pages still pending translation (locales/{LANGUAGE}/PENDING): {len(PENDING)}")
    for page in PENDING:
        print(f"  {page}")
    unknown = [p for p in PENDING if p not in PAGES]
    assert not unknown, f"PENDING names pages without a catalogue: {unknown}"
    finished = [
        p for p in PENDING if catalogues.progress(PAGES[p])[0] == catalogues.progress(PAGES[p])[2]
    ]
    assert not finished, (
        f"fully translated, so take them off locales/{LANGUAGE}/PENDING: {finished}"
    )
    assert len(PENDING) == len(set(PENDING)), "PENDING lists a page twice"


@pytest.mark.parametrize(
    ("msgid", "msgstr"),
    [
        ("An {term}`LSTM <Long short-term memory>` cell.", "{term}`LSTM` 셀."),
        ("A {term}`cell state <Cell state>`.", "{term}`셀 상태 <Cel state>`."),
        ("As {cite:t}`cho2014gru` showed.", "{cite:t}`cho2014gr`가 보였듯이."),
        ("The state $h_t$ here.", "여기서 상태 $h_{t}$."),
        ("$$\nh_t = o_t\n$$", "$$\nh_t = o_t \\odot\n$$"),
        ("\nh_t = o_t \\tag{3.1}\n", "\nh_t = o_t \\tag{3.2}\n"),
        ("Call `fit()` once.", "`fit`을 한 번 호출합니다."),
        ("See [the notation](notation.md).", "[표기법](glossary.md)을 보세요."),
        ("1. Recurrent networks", "1. 순환 신경망"),
        ("Recurrent networks", "1. 순환 신경망"),
        ("Gates", "- 게이트"),
    ],
)
def test_the_lint_catches_broken_translations(msgid, msgstr):
    assert catalogues.lint(msgid, msgstr), f"the lint passed {msgstr!r} for {msgid!r}"


def test_the_lint_passes_good_translations():
    msgid = (
        "The {term}`LSTM <Long short-term memory>` of {cite:t}`hochreiter1997lstm` keeps $c_t$ "
        "in `nn.LSTM`."
    )
    msgstr = (
        "{cite:t}`hochreiter1997lstm`의 {term}`LSTM <long short-term memory>`은 `nn.LSTM`에서 "
        "$c_t$를 유지합니다."
    )
    assert catalogues.lint(msgid, msgstr) == []
    assert catalogues.lint("1. Recurrent networks", "1\\. 순환 신경망") == []


def test_prefill_rule_keeps_only_messages_without_words():
    assert catalogues.needs_no_translation("$$\nh_t = o_t \\odot \\tanh(c_t)\n$$")
    assert catalogues.needs_no_translation("\n\\bar g = \\frac{1}{W} \\sum_r g_r \\tag{13.2}\n")
    assert catalogues.needs_no_translation("`companion.device`")
    assert catalogues.needs_no_translation("(10.1)-(10.6)")
    assert not catalogues.needs_no_translation("`fit()` with progress bars")
    assert not catalogues.needs_no_translation("Summary")


def test_the_sync_check_catches_an_english_edit_without_a_catalogue_refresh(tmp_path):
    """editions.py check compares the templates of the current English with the catalogues: an
    edited paragraph, a new page and a removed page must each be reported."""
    page = "book/intro"
    english = polib.pofile(str(PAGES[page]))
    pot = polib.POFile()
    pot.metadata = english.metadata
    for e in english:
        if not e.obsolete:
            pot.append(polib.POEntry(msgid=e.msgid, msgstr=""))
    pots = tmp_path / "gettext"
    (pots / "book").mkdir(parents=True)
    for other in PAGES:  # every other page as it is now
        if other != page:
            (pots / f"{other}.pot").write_text(PAGES[other].read_text())
    pot.save(str(pots / f"{page}.pot"))
    assert catalogues.out_of_step(pots, LANGUAGE) == []

    pot[-1].msgid += " (edited)"
    pot.save(str(pots / f"{page}.pot"))
    problems = catalogues.out_of_step(pots, LANGUAGE)
    assert any("not in the catalogue" in p for p in problems), problems
    assert any("no longer in the English" in p for p in problems), problems

    (pots / "book" / "99_new_chapter.pot").write_text("")
    (pots / "book" / "bibliography.pot").unlink()
    problems = catalogues.out_of_step(pots, LANGUAGE)
    assert any("99_new_chapter: no catalogue" in p for p in problems), problems
    assert any("bibliography: catalogue of a page no longer" in p for p in problems), problems
