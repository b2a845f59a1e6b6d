"""The README's Python usage runs as written (in a temporary working directory: it writes nothing else)."""

import re

from .fixtures import REPO


def test_readme_usage_snippet_runs(tmp_path, monkeypatch):
    code = re.search(r"## Usage\n\n```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["out"].loss.isfinite() and int(namespace["model"].ema_num_updates) == 1
    assert list(tmp_path.iterdir()) == []  # the checkpoints went to a temporary folder
