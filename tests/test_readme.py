"""The README: its Python usage runs as written (in a temporary working directory: it writes nothing else), and its
links and the docs' find their files."""

import re

from .fixtures import REPO


def test_readme_usage_snippet_runs(tmp_path, monkeypatch):
    code = re.search(r"## Usage\n\n```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["out"].loss.isfinite() and int(namespace["model"].ema_num_updates) == 1
    assert list(tmp_path.iterdir()) == []  # the checkpoints went to a temporary folder


def test_every_relative_link_of_the_docs_finds_its_file():
    """Reports link each other and their runs' files; a moved or renamed one would leave a dead link."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "model_cards").rglob("*.md"))]
    dead = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            path = target.split("#")[0]
            if path and not re.match(r"[a-z]+:", path) and not (page.parent / path).exists():
                dead.append(f"{page.relative_to(REPO)} -> {target}")
    assert len(pages) > 10 and dead == []
