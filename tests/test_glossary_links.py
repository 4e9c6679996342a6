"""Every glossary term a chapter uses in its prose is linked with {term}`...` at its first use.

"First use" is counted by markdown cell: the first cell of a chapter that uses a term (or links
it) must link it.

A term is "used" when it appears, case-insensitively and as whole words, in a markdown cell's
prose; code (cells, fences and inline), maths, headings, roles such as {cite:t}`...`, link
targets, HTML comments and directive options do not count. Plurals count ("gates" uses "Gate"),
and so do the abbreviations a definition opens with ("RNN: a network ..." makes "RNN" a use of
"Recurrent neural network"). A longer term hides the shorter terms inside it, so "forget gate"
is a use of "Forget gate", not of "Gate". A link counts for the term it points to, written
either {term}`Gate` or {term}`gates <Gate>`.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "book" / "glossary.md"
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


_TERM_ROLE = re.compile(r"\{term\}`([^`]*)`")
_OTHER_ROLE = re.compile(r"\{[a-z:]+\}`[^`]*`")
_FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.S | re.M)
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.S)
_INLINE_MATH = re.compile(r"(?<!\\)\$[^$\n]+?(?<!\\)\$")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s.*$", re.M)
_LABEL_LINE = re.compile(r"^\s*(\(.*\)=|:[\w-]+:.*)$", re.M)


def glossary_terms(text: str) -> dict[str, list[str]]:
    """Term -> the names a chapter may use for it (the term itself and its abbreviation)."""
    block = re.search(r"```\{glossary\}\n(.*?)\n```", text, re.S)
    if block is None:
        raise ValueError("glossary.md: expected a ```{glossary} block, found none")
    terms: dict[str, list[str]] = {}
    lines = block.group(1).splitlines()
    for line, following in zip(lines, lines[1:] + [""]):
        if line.strip() and not line[0].isspace():
            names = [line.strip()]
            abbreviation = re.match(r"\s+([A-Za-z]{2,8}):\s", following)
            if abbreviation:
                names.append(abbreviation.group(1))
            terms[line.strip()] = names
    return terms


def _target(role_text: str) -> str:
    inside = re.search(r"<([^<>]*)>\s*$", role_text)
    return (inside.group(1) if inside else role_text).strip().lower()


def prose_and_links(markdown: str) -> tuple[str, set[str]]:
    """The prose of a markdown cell with everything that is not prose blanked out, and the
    (lower-cased) terms its {term} roles point to."""
    links = {_target(m) for m in _TERM_ROLE.findall(markdown)}
    text = markdown
    for pattern in (
        _COMMENT,
        _FENCE,
        _DISPLAY_MATH,
        _TERM_ROLE,
        _OTHER_ROLE,
        _INLINE_CODE,
        _INLINE_MATH,
        _LINK_TARGET,
        _HEADING,
        _LABEL_LINE,
    ):
        text = pattern.sub(" ", text)
    return text, links


def _name_pattern(name: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in name.split()]
    words[-1] += r"(?:s|es)?"  # plurals: gates, RNNs, embeddings
    return re.compile(r"(?<![\w-])" + r"[\s-]+".join(words) + r"(?![\w-])", re.I)


def used_terms(prose: str, terms: dict[str, list[str]]) -> set[str]:
    """The terms the prose uses, longest names first, each match hiding what lies inside it."""
    named = sorted(((n, t) for t, names in terms.items() for n in names), key=lambda p: -len(p[0]))
    used = set()
    for name, term in named:
        pattern = _name_pattern(name)
        if pattern.search(prose):
            used.add(term)
            prose = pattern.sub(lambda m: "#" * len(m.group(0)), prose)
    return used


def missing_links(nb_path: Path, terms: dict[str, list[str]]) -> list[str]:
    """The glossary terms a chapter uses without linking any of them once, sorted."""
    nb = nbformat.read(nb_path, as_version=4)
    used, linked = set(), set()
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        prose, links = prose_and_links(cell.source)
        used |= used_terms(prose, terms)
        linked |= links
    return sorted(t for t in used if t.lower() not in linked)


def unlinked_first_uses(nb_path: Path, terms: dict[str, list[str]]) -> list[tuple[int, str]]:
    """(cell index, term) for every term whose first using cell does not link it."""
    nb = nbformat.read(nb_path, as_version=4)
    seen, unlinked = set(), []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        prose, links = prose_and_links(cell.source)
        linked = {t for t in terms if t.lower() in links}
        for term in sorted((used_terms(prose, terms) | linked) - seen):
            seen.add(term)
            if term not in linked:
                unlinked.append((index, term))
    return unlinked


TERMS = glossary_terms(GLOSSARY.read_text(encoding="utf-8"))


def test_glossary_parses():
    assert len(TERMS) > 20
    assert TERMS["Recurrent neural network"] == ["Recurrent neural network", "RNN"]
    assert TERMS["Gate"] == ["Gate"]


@pytest.mark.parametrize("nb_path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_chapter_links_every_glossary_term_it_uses(nb_path: Path):
    missing = missing_links(nb_path, TERMS)
    assert not missing, (
        f"{nb_path.name} uses these glossary terms without linking them once with "
        f"{{term}}`...`: {missing}"
    )


@pytest.mark.parametrize("nb_path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_chapter_links_each_glossary_term_at_its_first_use(nb_path: Path):
    late = unlinked_first_uses(nb_path, TERMS)
    assert not late, (
        f"{nb_path.name}: these glossary terms are used before they are linked (cell, term): {late}"
    )


# The matcher itself, on small made-up cells, so that the chapter test can fail.
_SMALL = {
    "Gate": ["Gate"],
    "Forget gate": ["Forget gate"],
    "Recurrent neural network": ["Recurrent neural network", "RNN"],
    "Time step": ["Time step"],
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The gates decide.", {"Gate"}),
        ("The forget gate decides.", {"Forget gate"}),
        ("Two RNNs and a recurrent neural network.", {"Recurrent neural network"}),
        ("At every time-step.", {"Time step"}),
        ("No use here: `gate`, $gate$, [link](gate.md) and a gateway.", set()),
        ("## The gate\n\nA heading is not prose.", set()),
        ("```python\ngate = 1\n```\n", set()),
        ("$$\n\\text{gate}\n$$", set()),
        ("{cite:t}`gate2020` wrote it.", set()),
    ],
)
def test_used_terms(text, expected):
    prose, _ = prose_and_links(text)
    assert used_terms(prose, _SMALL) == expected


def _chapter(tmp_path: Path, *cells: str) -> Path:
    """A made-up chapter of markdown cells, written to ``tmp_path``."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(c) for c in cells])
    path = tmp_path / "99_x.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_link_counts_for_its_target(tmp_path):
    def chapter(*cells: str) -> Path:
        return _chapter(tmp_path, *cells)

    assert missing_links(chapter("The gate opens.", "Gates again."), _SMALL) == ["Gate"]
    assert missing_links(chapter("A {term}`gate <Gate>` opens.", "Gates again."), _SMALL) == []
    assert (
        missing_links(chapter("An {term}`RNN <Recurrent neural network>`.", "RNNs."), _SMALL) == []
    )
    assert missing_links(chapter("A {term}`Gate`", "One RNN."), _SMALL) == [
        "Recurrent neural network"
    ]


def test_a_link_after_the_first_use_is_late(tmp_path):
    def chapter(*cells: str) -> Path:
        return _chapter(tmp_path, *cells)

    late = chapter("The gate opens.", "A {term}`gate <Gate>` again.")
    assert unlinked_first_uses(late, _SMALL) == [(0, "Gate")]
    assert unlinked_first_uses(chapter("A {term}`gate <Gate>`.", "Gates."), _SMALL) == []
