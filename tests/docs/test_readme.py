"""The README and docs/ say what the code does: their runnable examples run as written
(in a temporary directory), print what their comments say, and their links resolve.

A Python block is runnable when the line before its opening fence is
`<!-- runnable -->`. Each runs in a fresh namespace, with every "/tmp/NAME" string
literal moved under pytest's tmp_path; the ledgers it leaves open are closed after it.
"""

from __future__ import annotations

import pathlib
import re

import pytest

import cardledger

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = re.compile(r"^<!-- runnable -->\n```python\n(.*?)^```", re.S | re.M)
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)
TMP_PATH_LITERAL = re.compile(r"""(["'])/tmp/([A-Za-z0-9_.-]+)\1""")

#: Lines each example must print, in this order (other lines may come between).
#: Keyed by file and the heading the block sits under.
EXPECTED_LINES = {
    "README.md::Quick tour": ["10000", "[0] 7500", "[1]"],
    "README.md::Fares and taps": ["150 CNY CATEGORY", "[  0 300] 4700 300"],
    "docs/fares.md::Example: a version, a bus ride, a metro entry never closed": [
        "[100   0] 800",
        "[100]",
        "[800] 4100 800",
    ],
    "docs/gateways.md::The Committer: group commit": ["0", "[0, 0, 0, 0, 0, 0, 0, 0, 0, 0] 8500"],
    "docs/operations.md::Verify": ["True 1 2 2", "True CARD"],
}

#: The two commands of a fresh machine, exactly as the README gives them.
FRESH_MACHINE_COMMANDS = [
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/cardledger bench --cards 20000",
    "bash .ci/run",
]
README_LINES_MAX = 200


def _runnable_blocks() -> dict[str, str]:
    """'file::heading' -> code of every runnable block (a second one under the same
    heading gets ' #2')."""
    blocks: dict[str, str] = {}
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for m in RUNNABLE.finditer(text):
            headings = HEADING.findall(text, 0, m.start())
            key = f"{path.relative_to(ROOT).as_posix()}::{headings[-1] if headings else ''}"
            n = 2
            while key in blocks:
                key = f"{key.split(' #')[0]} #{n}"
                n += 1
            blocks[key] = m.group(1)
    return blocks


BLOCKS = _runnable_blocks()


@pytest.mark.parametrize("key", sorted(BLOCKS))
def test_runnable_example_runs_and_prints_what_it_says(key, tmp_path, monkeypatch, capsys):
    code = TMP_PATH_LITERAL.sub(lambda m: repr(str(tmp_path / m.group(2))), BLOCKS[key])
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__doc_example__"}
    try:
        exec(compile(code, key, "exec"), namespace)
    finally:
        for value in list(namespace.values()):
            if isinstance(value, cardledger.Ledger):
                value.close()
    out = capsys.readouterr().out.splitlines()
    at = 0
    for want in EXPECTED_LINES.get(key, []):
        found = [i for i in range(at, len(out)) if out[i] == want]
        assert found, f"{key}: expected the line {want!r} after line {at}; it printed:\n" + "\n".join(out)
        at = found[0] + 1


def test_every_expected_output_belongs_to_a_runnable_example():
    """A renamed heading or a lost marker must not silently drop an example's checks."""
    assert set(EXPECTED_LINES) <= set(BLOCKS), sorted(set(EXPECTED_LINES) - set(BLOCKS))


def test_readme_gives_the_two_fresh_machine_commands_and_stays_short():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Fresh machine", 1)[1].split("\n## ", 1)[0]
    commands = [b.strip() for b in re.findall(r"```sh\n(.*?)```", section, re.S)]
    assert commands == FRESH_MACHINE_COMMANDS
    assert (ROOT / ".ci" / "run").is_file()
    assert len(readme.splitlines()) < README_LINES_MAX


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_between_documents_resolve(path):
    text = path.read_text(encoding="utf-8")
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):
            continue  # an outside address
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        assert dest.exists(), f"{path.name}: link to {target!r}: no such file"
        if anchor and dest.suffix == ".md":
            anchors = {_anchor(h) for h in HEADING.findall(dest.read_text(encoding="utf-8"))}
            assert anchor in anchors, f"{path.name}: link to {target!r}: no such heading"
