"""The Korean edition's message catalogues (locales/<lang>/LC_MESSAGES/book/<page>.po), read with
polib: where they are, whether they hold the current English, how much of each is translated, and
whether each translation keeps the markup of its English (the .po lint). Used by editions.py and
tests/test_translations.py; nothing here builds the book.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import polib

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "locales"

ROLE = re.compile(r"\{([a-z:-]+)\}`([^`]*)`")
MATHS = re.compile(r"(?<![\\$])\$(?!\$)([^$\n]+?)(?<!\\)\$")
DISPLAY_MATHS = re.compile(r"\$\$(.+?)\$\$", re.S)
CODE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\]\(([^)]*)\)")
BLOCK = re.compile(r"^(\d+\.|[-*+]|#{1,6}|>)\s")
GLOSSARY = "book/glossary"


def messages_dir(language: str) -> Path:
    return LOCALES / language / "LC_MESSAGES"


def po_path(language: str, page: str) -> Path:
    return messages_dir(language) / f"{page}.po"


def pages(language: str) -> dict[str, Path]:
    """Every page's catalogue (page name as in _toc.yml -> .po file); not the theme's sphinx.po."""
    found = sorted(messages_dir(language).glob("book/**/*.po"))
    return {p.relative_to(messages_dir(language)).with_suffix("").as_posix(): p for p in found}


def _msgids(path: Path) -> set[str]:
    return {e.msgid for e in polib.pofile(str(path)) if not e.obsolete and e.msgid}


def stale_pages(pots: Path, language: str) -> list[str]:
    """Pages with a catalogue but no longer any template: gone from the book."""
    return [page for page in pages(language) if not (pots / f"{page}.pot").exists()]


def out_of_step(pots: Path, language: str) -> list[str]:
    """How the catalogues differ from the templates of the current English (empty if in step)."""
    stale = stale_pages(pots, language)
    problems = [f"{page}: catalogue of a page no longer in the book" for page in stale]
    for pot in sorted(pots.rglob("*.pot")):
        page = pot.relative_to(pots).with_suffix("").as_posix()
        po = po_path(language, page)
        if not po.exists():
            problems.append(f"{page}: no catalogue {po.relative_to(ROOT)}")
            continue
        english, catalogue = _msgids(pot), _msgids(po)
        for msgid in sorted(english - catalogue):
            problems.append(f"{page}: English message not in the catalogue: {msgid[:70]!r}")
        for msgid in sorted(catalogue - english):
            problems.append(f"{page}: catalogue message no longer in the English: {msgid[:70]!r}")
    return problems


def progress(path: Path) -> tuple[int, int, int]:
    """(translated, fuzzy, total) messages of one catalogue; a fuzzy message is untranslated."""
    entries = [e for e in polib.pofile(str(path)) if not e.obsolete and e.msgid]
    fuzzy = sum("fuzzy" in e.flags for e in entries)
    translated = sum(bool(e.msgstr) and "fuzzy" not in e.flags for e in entries)
    return translated, fuzzy, len(entries)


def is_display_maths(msgid: str) -> bool:
    """A display equation ($$ ... $$, {math}): its message is the LaTeX between newlines."""
    return msgid.startswith("\n")


def needs_no_translation(msgid: str) -> bool:
    """Display maths, code, numbers: a message with no words outside its maths, code and roles."""
    if is_display_maths(msgid):
        return True
    rest = DISPLAY_MATHS.sub("", msgid)
    rest = ROLE.sub("", MATHS.sub("", CODE.sub("", rest)))
    return re.search(r"[A-Za-z]{2,}", rest) is None


def prefill(language: str) -> int:
    """Fill what needs no translator: verbatim copies of messages with no words, and a message
    translated (not fuzzy) on one page copied to the same untranslated message on another."""
    paths = pages(language)
    catalogues = {page: polib.pofile(str(path), wrapwidth=0) for page, path in paths.items()}
    known = {}
    for po in catalogues.values():
        for e in po.translated_entries():
            known.setdefault(e.msgid, e.msgstr)
    filled = 0
    for page, po in catalogues.items():
        changed = False
        for e in po:
            if e.obsolete or e.msgstr or "fuzzy" in e.flags:
                continue
            if needs_no_translation(e.msgid):
                e.msgstr = e.msgid
            elif e.msgid in known and page != GLOSSARY:  # its terms read "Korean (English)"
                e.msgstr = known[e.msgid]
            else:
                continue
            filled += 1
            changed = True
        if changed:
            po.save(str(paths[page]))
    return filled


def role_targets(text: str) -> Counter:
    """The roles of a message and what they point at ({term} targets compared case-blind)."""
    out: Counter = Counter()
    for name, body in ROLE.findall(text):
        match = re.search(r"<([^<>]*)>\s*$", body)
        target = (match.group(1) if match else body).strip()
        out[(name, target.lower() if name == "term" else target)] += 1
    return out


def lint(msgid: str, msgstr: str) -> list[str]:
    """What a translation changed that it must keep: roles and their targets, maths, code, links;
    and a start that MyST would read as a list or heading (Sphinx then silently keeps English)."""
    if is_display_maths(msgid):
        return [] if msgstr == msgid else ["display maths must be copied unchanged"]
    found = []
    if role_targets(msgid) != role_targets(msgstr):
        english, translated = sorted(role_targets(msgid)), sorted(role_targets(msgstr))
        found.append(f"roles differ: {english} vs {translated}")
    if Counter(DISPLAY_MATHS.findall(msgid)) != Counter(DISPLAY_MATHS.findall(msgstr)):
        found.append("display maths differs")
    if Counter(MATHS.findall(msgid)) != Counter(MATHS.findall(msgstr)):
        found.append("inline maths differs")
    if Counter(CODE.findall(ROLE.sub("", msgid))) != Counter(CODE.findall(ROLE.sub("", msgstr))):
        found.append("inline code differs")
    if Counter(LINK.findall(msgid)) != Counter(LINK.findall(msgstr)):
        found.append("link targets differ")
    if BLOCK.match(msgstr):  # a heading "1. Title" too: its msgid starts so, but needs "1\\. "
        found.append("starts like a list or heading (escape it: '1\\. ...')")
    return found


def pending(language: str) -> list[str]:
    """Pages still waiting for their translation (locales/<lang>/PENDING, one page a line)."""
    path = LOCALES / language / "PENDING"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
