"""The documentation names only make targets, links and repository paths that exist.

Checked in README.md, CONTRIBUTING.md and every ``docs/*.md``: each ``make <target>`` in code is a
target of the Makefile, each relative Markdown link resolves to a file of the repository (and its
``#anchor`` to a heading there), and each repository path named in code resolves too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC_PAGES = (
    "architecture",
    "adding-a-dataset",
    "events-and-triggering",
    "operating-on-mwaa",
    "benchmarks",
)

# A name in code is a file name when it ends in one of these.
FILE_SUFFIXES = (".py", ".yaml", ".yml", ".md", ".sh", ".json", ".toml", ".txt", ".in", ".cfg")
# Top-level folders that `make`, the stack or a run creates (all git-ignored): a fresh clone has
# none of them, so paths under them are named in the docs but cannot be checked here. `.local/`
# also holds the local lake and the Airflow home.
GENERATED_ROOTS = frozenset(
    {
        ".venv",
        ".venv-spark",
        ".venv-training",
        ".local",
        "build",
        "dist",
        "mlruns",
        "spark-warehouse",
        "metastore_db",
        "test-artifacts",
        ".git",
        ".pytest_cache",
        ".ruff_cache",
        "__pycache__",
    }
)
# File names that are not files of this repository but things a run or a package writes, or
# paths inside another system; the docs name them on purpose.
NOT_REPOSITORY_FILES = {
    "_lake.json": "the lake descriptor lake_setup writes",
    "_manifest.json": "a partition's commit in the lake",
    "manifest.json": "the package manifest make package writes",
    "passwords.json": "the local stack's generated admin password",
    "startup.sh": "scripts/mwaa_startup.sh under its name in the MWAA bucket",
    "python/mwaa/config/airflow.py": "a file of the MWAA image, not of this repository",
    "constraints-3.3.1/constraints-3.12.txt": "Apache Airflow's, named by URL in requirements.txt",
}
# Placeholders (`<dataset>`, `…`), URIs, shell expansions, globs at the start, options and
# absolute paths: not a repository path as written.
PLACEHOLDER = re.compile(r"[<>{}$…]|\.\.\.|://|^[-/~*]")
EDGE_PUNCTUATION = "()[],;:\"'`"

FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)
INLINE_CODE = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.DOTALL)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
MAKE_TARGET = re.compile(
    r"^([A-Za-z0-9][\w.-]*(?:[ \t]+[A-Za-z0-9][\w.-]*)*)[ \t]*:(?!=)", re.MULTILINE
)


@dataclass(frozen=True)
class Repository:
    """What the docs may name: the repository's files and folders, and its make targets."""

    root: Path
    files: frozenset[str]
    top_level: frozenset[str]
    make_targets: frozenset[str]

    @classmethod
    def scan(cls, root: Path) -> Repository:
        files = set()
        for folder, dirs, names in os.walk(root):
            relative = Path(folder).relative_to(root)
            dirs[:] = [d for d in dirs if d not in GENERATED_ROOTS]
            files.update((relative / name).as_posix() for name in names)
        top_level = {p.name for p in root.iterdir() if p.name not in GENERATED_ROOTS}
        makefile = root / "Makefile"
        targets = set()
        if makefile.exists():
            for match in MAKE_TARGET.finditer(makefile.read_text(encoding="utf-8")):
                targets.update(match.group(1).split())
        return cls(root, frozenset(files), frozenset(top_level), frozenset(targets))

    def has_path(self, token: str) -> bool:
        path = token.rstrip("/")
        if any(char in path for char in "*?["):
            return any(self.root.glob(path))
        full = self.root / path
        return full.is_dir() if token.endswith("/") else full.exists()

    def has_file_ending_in(self, name: str) -> bool:
        return any(f == name or f.endswith("/" + name) for f in self.files)


def _blank(text: str, start: int, end: int) -> str:
    """``text`` with ``start:end`` turned to spaces, line breaks kept (so offsets keep lines)."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def blank_fences(text: str) -> tuple[list[tuple[int, str]], str]:
    """The fenced code blocks, each with the line of its opening fence (the block's text starts
    with the fence's info string), and the text with the blocks blanked out."""
    fenced = []
    fences = list(FENCE.finditer(text))
    for opening, closing in zip(fences[::2], fences[1::2], strict=False):
        line = text.count("\n", 0, opening.start()) + 1
        fenced.append((line, text[opening.end() : closing.start()]))
    for opening, closing in reversed(list(zip(fences[::2], fences[1::2], strict=False))):
        text = _blank(text, opening.start(), closing.end())
    return fenced, text


def split_code(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]], str]:
    """Fenced blocks and inline code spans, each with its line number, and the prose left over."""
    fenced, prose = blank_fences(text)
    spans = list(INLINE_CODE.finditer(prose))
    inline = [(prose.count("\n", 0, m.start()) + 1, m.group(2)) for m in spans]
    for match in reversed(spans):
        prose = _blank(prose, match.start(), match.end())
    return fenced, inline, prose


def make_targets_named(code: str) -> list[str]:
    """The target of every ``make …`` command in a piece of code (variables such as NAME=x and
    options skipped); a bare ``make`` names none."""
    targets = []
    for match in re.finditer(r"(?<![\w./-])make((?:[ \t]+\S+)+)", code):
        words = [w for w in match.group(1).split() if "=" not in w and not w.startswith("-")]
        if words and re.fullmatch(r"[a-z][\w.-]*", words[0]):
            targets.append(words[0])
    return targets


def path_problem(token: str, repo: Repository, *, inline: bool) -> str | None:
    """Why ``token`` names a repository path that does not exist, or None.

    A token is checked when it starts with a top-level folder or file of the repository (it must
    exist exactly); in inline code, also when it ends in a file suffix (it must be the end of a
    repository file's path, e.g. ``train.py`` or ``dq/rules.py``, or a known non-repository name).
    """
    token = token.strip(EDGE_PUNCTUATION)
    if not token or PLACEHOLDER.search(token) or token in NOT_REPOSITORY_FILES:
        return None
    first = token.split("/", 1)[0]
    if first in GENERATED_ROOTS:
        return None
    if first in repo.top_level and ("/" in token or (repo.root / first).is_file()):
        return None if repo.has_path(token) else f"`{token}` does not exist"
    # A leading dot is a bare suffix (`.json`, `.quality.yaml`), not a file name.
    is_file_name = (
        token.endswith(FILE_SUFFIXES)
        and not token.startswith(".")
        and not any(c in token for c in "*?[")
    )
    if inline and is_file_name and not repo.has_file_ending_in(token):
        return f"`{token}` is not a file of the repository"
    return None


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a page (lower case, punctuation dropped, spaces to
    hyphens, a -N suffix for repeats)."""
    _, prose = blank_fences(markdown)
    anchors, seen = set(), {}
    for match in HEADING.finditer(prose):
        title = match.group(1).strip().lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def link_problem(target: str, doc: Path, repo: Repository) -> str | None:
    if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
        return None
    if target.startswith("/"):
        return f"link {target!r} is absolute: use a path relative to {doc.name}"
    path_part, _, anchor = target.partition("#")
    resolved = (doc.parent / path_part).resolve() if path_part else doc.resolve()
    if not resolved.is_relative_to(repo.root.resolve()):
        return f"link {target!r} leaves the repository"
    if not resolved.exists():
        return f"link {target!r} does not resolve ({resolved.relative_to(repo.root.resolve())})"
    if (
        anchor
        and resolved.suffix == ".md"
        and anchor not in heading_anchors(resolved.read_text(encoding="utf-8"))
    ):
        return f"link {target!r}: {resolved.name} has no heading #{anchor}"
    return None


def doc_problems(text: str, doc: Path, repo: Repository) -> list[str]:
    """Every make target, link and repository path in one page that does not exist."""
    name = doc.relative_to(repo.root).as_posix() if doc.is_relative_to(repo.root) else doc.name
    fenced, inline, prose = split_code(text)
    problems: list[tuple[int, str]] = []
    pieces = [(line, code, True) for line, code in inline] + [
        (line + offset, code_line, False)
        for line, code in fenced
        for offset, code_line in enumerate(code.splitlines())
    ]
    for line, code, is_inline in pieces:
        for target in make_targets_named(code):
            if target not in repo.make_targets:
                problems.append((line, f"`make {target}`: no such Makefile target"))
        for token in code.split():
            if problem := path_problem(token, repo, inline=is_inline):
                problems.append((line, problem))
    for match in LINK.finditer(prose):
        if problem := link_problem(match.group(1), doc, repo):
            problems.append((prose.count("\n", 0, match.start()) + 1, problem))
    return [f"{name}:{line}: {problem}" for line, problem in sorted(problems, key=lambda p: p[0])]


def doc_files() -> list[Path]:
    return [
        REPO_ROOT / "README.md",
        REPO_ROOT / "CONTRIBUTING.md",
        *sorted((REPO_ROOT / "docs").glob("*.md")),
    ]


@pytest.fixture(scope="module")
def repository() -> Repository:
    return Repository.scan(REPO_ROOT)


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_target_link_and_path_a_page_names_exists(doc, repository):
    assert doc_problems(doc.read_text(encoding="utf-8"), doc, repository) == []


def test_the_docs_pages_exist_and_the_readme_links_each():
    pages = {p.stem for p in (REPO_ROOT / "docs").glob("*.md")}
    assert set(DOC_PAGES) <= pages
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    linked = {Path(t.partition("#")[0]).stem for t in LINK.findall(readme) if t.startswith("docs/")}
    assert pages <= linked, f"README.md links no page for {sorted(pages - linked)}"


def test_the_readme_test_command_is_what_ci_runs():
    fenced, _, _ = split_code((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert any("make test" in code for _, code in fenced)
    ci_commands = [
        line.strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci_commands[-1] == "make test"


def test_the_makefile_targets_are_read(repository):
    expected = {"test", "demo", "up", "down", "new-pipeline", "package", "deploy"}
    assert expected <= repository.make_targets
    assert not any(t.startswith(("$", ".")) for t in repository.make_targets)


@pytest.fixture
def tiny_repo(tmp_path) -> Repository:
    (tmp_path / "Makefile").write_text("demo: envs\n\techo\n\nenvs:\n\ttrue\nX := 1\n")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "real.py").write_text("")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Set it up\n")
    (tmp_path / "README.md").write_text("")
    return Repository.scan(tmp_path)


def test_the_checker_flags_what_does_not_exist(tiny_repo):
    page = tiny_repo.root / "docs" / "page.md"
    text = (
        "Run `make demo` and `make dmeo NAME=x`, then `python scripts/real.py`.\n"
        "Edit `scripts/missing.py` and `nowhere.py`, and read `README.md`.\n"
        "See [the guide](guide.md#set-it-up), [a typo](guid.md), [no anchor](guide.md#nope),\n"
        "[outside](../../elsewhere/DESIGN.md) and [absolute](/docs/guide.md).\n"
        "```bash\nmake envs\nmake deploy DRY_RUN=1\npython scripts/gone.py --out .local/x\n```\n"
    )
    assert doc_problems(text, page, tiny_repo) == [
        "docs/page.md:1: `make dmeo`: no such Makefile target",
        "docs/page.md:2: `scripts/missing.py` does not exist",
        "docs/page.md:2: `nowhere.py` is not a file of the repository",
        "docs/page.md:3: link 'guid.md' does not resolve (docs/guid.md)",
        "docs/page.md:3: link 'guide.md#nope': guide.md has no heading #nope",
        "docs/page.md:4: link '../../elsewhere/DESIGN.md' leaves the repository",
        "docs/page.md:4: link '/docs/guide.md' is absolute: use a path relative to page.md",
        "docs/page.md:7: `make deploy`: no such Makefile target",
        "docs/page.md:8: `scripts/gone.py` does not exist",
    ]


def test_placeholders_generated_folders_and_other_systems_are_not_paths(tiny_repo):
    text = (
        "`scripts/<name>.py`, `dags/<stage>_dags.py`, `.local/lake/landing/_inbox`,\n"
        "`.venv/bin/python`, `build/mwaa/`, `<lake>/landing/<dataset>/ds=…/`, `file:///tmp/x`,\n"
        "`s3://bucket/lake`, `_lake.json`, `python/mwaa/config/airflow.py`, `scripts/*.py`,\n"
        "`landing/churn/ds=2026-01-07/`, `x.csv.tmp` and the suffixes `.json` and `.quality.yaml`.\n"
    )
    assert doc_problems(text, tiny_repo.root / "README.md", tiny_repo) == []


def test_a_glob_must_match_and_a_folder_must_be_a_folder(tiny_repo):
    assert path_problem("scripts/re*.py", tiny_repo, inline=True) is None
    assert path_problem("scripts/no*.py", tiny_repo, inline=True) is not None
    assert path_problem("scripts/", tiny_repo, inline=True) is None
    assert path_problem("scripts/real.py/", tiny_repo, inline=True) is not None
