"""Which code cells of executed notebooks differ from the stored ones, and which raised.

    .venv/bin/python tests/replay/compare.py _build/replay/t1 _build/replay/t2 ...

For every folder written by ``tests/replay/execute.py`` it prints, per notebook, the code cells
(numbered as nbval numbers them: code cells only, from 0) whose outputs differ from the stored
notebook in ``book/`` after the sanitising regexes of ``tests/nbval_sanitize.cfg``, marked
``[ignored]`` where the cell carries ``nbval-ignore-output``, and the cells that raised (an assert
that failed is a claim that did not hold there). ``--json FILE`` writes the same as data.
"""

from __future__ import annotations

import argparse
import configparser
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
# What nbval leaves out of a comparison (images are never compared, see TOOLCHAIN.md).
SKIPPED = {"image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json"}


def sanitizers(path: Path = ROOT / "tests" / "nbval_sanitize.cfg") -> list[tuple[str, str]]:
    config = configparser.ConfigParser()
    config.read(path)
    return [(config[s]["regex"], config[s]["replace"]) for s in config.sections()]


def _texts(cell, patterns: list[tuple[str, str]]) -> list[str]:
    """The compared text of a cell's outputs, sanitised; streams joined by name, as nbval does
    (how a stream was cut into outputs depends on timing)."""
    streams: dict[str, str] = {}
    texts = []
    for output in cell.get("outputs", []):
        kind = output["output_type"]
        if kind == "stream":
            streams[output["name"]] = streams.get(output["name"], "") + output["text"]
            continue
        if kind == "error":
            text = f"error: {output['ename']}: {output['evalue']}"
        else:
            data = output.get("data", {})
            text = "\n".join(f"{k}: {v}" for k, v in sorted(data.items()) if k not in SKIPPED)
        texts.append(text)
    texts += [f"{name}: {text}" for name, text in sorted(streams.items())]
    for regex, replace in patterns:
        texts = [re.sub(regex, replace, text) for text in texts]
    return texts


def compare(stored_path: Path, fresh_path: Path) -> list[dict]:
    """One record per code cell that differs or raised."""
    patterns = sanitizers()
    stored = nbformat.read(stored_path, as_version=4)
    fresh = nbformat.read(fresh_path, as_version=4)
    code = [c for c in stored.cells if c.cell_type == "code"]
    fresh_code = [c for c in fresh.cells if c.cell_type == "code"]
    records = []
    for number, (old, new) in enumerate(zip(code, fresh_code)):
        errors = [o for o in new.get("outputs", []) if o["output_type"] == "error"]
        differs = _texts(old, patterns) != _texts(new, patterns)
        if not (differs or errors):
            continue
        records.append(
            {
                "cell": number,
                "ignored": "nbval-ignore-output" in old.metadata.get("tags", []),
                "differs": differs,
                "error": f"{errors[0]['ename']}: {errors[0]['evalue']}"[:200] if errors else None,
            }
        )
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="also write the records here")
    args = parser.parse_args(argv)
    everything = {}
    for folder in args.folders:
        print(f"== {folder}")
        for fresh in sorted(folder.glob("*.ipynb")):
            records = compare(ROOT / "book" / fresh.name, fresh)
            everything.setdefault(str(folder), {})[fresh.stem] = records
            for r in records:
                tag = " [ignored]" if r["ignored"] else ""
                raised = f" RAISED {r['error']}" if r["error"] else ""
                what = ("differs" if r["differs"] else "") + raised
                if r["differs"] and r["ignored"] and not r["error"]:
                    continue  # an ignored cell that differs is what the tag is for
                print(f"{fresh.stem} cell {r['cell']}{tag}: {what}")
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
