"""The embedded default English pretraining corpus, built offline from the installed Python's own documentation."""

from __future__ import annotations

import ast
import functools
import gc
import platform
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path


# Stdlib sub-trees that are tests, GUIs, demos or vendored data rather than documented API.
_SKIPPED_PARTS = {"test", "tests", "idle_test", "idlelib", "turtledemo", "lib2to3", "ensurepip", "site-packages"}
# C modules whose docstrings add English the .py sources lack; importing them has no side effects.
_C_MODULES = ("builtins", "sys", "math", "cmath", "itertools", "time", "gc", "marshal", "errno", "array", "zlib")
_CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.|\$ |\.\. )")  # doctest prompts, shell prompts, reST directives
_RULE_LINE = re.compile(r"\s*[=*~^#-]{3,}\s*")  # heading underlines
_WORD = re.compile(r"[A-Za-z]+")


def _clean_paragraphs(doc: str) -> Iterator[str]:
    """Splits a docstring or help topic into prose paragraphs, dropping code, doctests, markup and fragments."""
    for block in re.split(r"\n\s*\n", doc):
        lines = [line for line in block.splitlines() if line.strip() and not _RULE_LINE.fullmatch(line)]
        # An indented first line is a code/grammar block (after "::" or in pydoc topics).
        if not lines or lines[0][:1].isspace() or any(_CODE_LINE.match(line) for line in lines):
            continue
        text = " ".join(" ".join(lines).split()).replace("::", ":")
        words = _WORD.findall(text)
        if len(words) < 8 or not text[:1].isalpha():
            continue
        # Prose test: mostly letters and spaces, mostly ASCII, few code-ish symbols.
        letters = sum(c.isalpha() or c.isspace() for c in text)
        if letters < 0.85 * len(text) or sum(c in "()[]{}=_<>" for c in text) > 0.03 * len(text):
            continue
        if sum(ord(c) < 128 for c in text) < 0.98 * len(text):
            continue
        yield text


def _source_docstrings(stdlib: Path) -> Iterator[str]:
    definitions = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)

    def visit(node) -> Iterator[str]:
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield doc
        for child in node.body:
            # Definitions nested in if/try (platform variants) are documented API too.
            for sub in [child] if isinstance(child, definitions) else getattr(child, "body", []):
                if isinstance(sub, definitions):
                    yield from visit(sub)

    files = sorted(
        p
        for p in stdlib.rglob("*.py")
        if not _SKIPPED_PARTS.intersection(p.relative_to(stdlib).parts) and "pydoc_data" not in p.parts
    )
    gc_was_enabled = gc.isenabled()
    gc.disable()  # ast.parse allocates millions of acyclic nodes; cyclic GC passes over them cost ~40% of the time
    try:
        for path in files:
            try:
                # Parsing (not importing): no side effects (antigravity, this, tkinter) and no display needed.
                tree = ast.parse(path.read_bytes(), filename=str(path))
            except (SyntaxError, ValueError, OSError):
                continue
            yield from visit(tree)
    finally:
        if gc_was_enabled:
            gc.enable()


def _pydoc_topics(stdlib: Path) -> Iterator[str]:
    """The Python Language Reference help topics shipped in `pydoc_data/topics.py` (a literal dict of str)."""
    path = stdlib / "pydoc_data" / "topics.py"
    try:
        tree = ast.parse(path.read_bytes())
        topics = next(
            ast.literal_eval(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "topics"
        )
    except (OSError, SyntaxError, ValueError, StopIteration):
        return
    for key in sorted(topics):
        yield topics[key]


def _c_module_docstrings() -> Iterator[str]:
    for name in _C_MODULES:
        try:
            module = __import__(name)
        except ImportError:
            continue
        yield module.__doc__ or ""
        for attr in sorted(dir(module)):
            obj = getattr(module, attr, None)
            if attr.startswith("_") or not callable(obj):
                continue
            yield getattr(obj, "__doc__", None) or ""
            if isinstance(obj, type) and name == "builtins":
                for method in sorted(vars(obj)):
                    yield getattr(vars(obj)[method], "__doc__", None) or ""


@functools.lru_cache(maxsize=1)
def _full_corpus() -> tuple[str, ...]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    seen, paragraphs = set(), []
    for doc in (*_pydoc_topics(stdlib), *_source_docstrings(stdlib), *_c_module_docstrings()):
        for paragraph in _clean_paragraphs(doc):
            if paragraph not in seen:  # exact duplicates are common (inherited/overridden method docs)
                seen.add(paragraph)
                paragraphs.append(paragraph)
    return tuple(paragraphs)


def build_default_corpus(max_chars: int | None = 2_000_000) -> list[str]:
    """The embedded default pretraining corpus: English prose from the installed Python's own documentation.

    Sources, in this order: the Python Language Reference help topics (`pydoc_data/topics.py`), the module, class
    and function docstrings of the standard library sources (read with `ast`, never imported, so no module side
    effects; tests, idlelib, turtledemo, lib2to3 and ensurepip are skipped), and the docstrings of a few C modules
    (`builtins`, `sys`, `math`, ...). Texts are split into paragraphs; code blocks, doctests, reST markup,
    non-ASCII-heavy and short (< 8 words) paragraphs are dropped; lines are joined and exact duplicates removed.
    Nothing is downloaded. On CPython 3.11.7 this gives about 8,400 paragraphs, 1.18 MB (193k words), in about 4 s;
    the result is deterministic for a given Python version (and cached in-process after the first call).

    Args:
        max_chars (`int`, *optional*, defaults to 2,000,000): stop before the paragraph that would exceed this
            many characters; `None` for everything.

    Returns:
        `list[str]`: paragraphs, one example each.

    Raises:
        ValueError: no documentation could be found (a Python installed without its sources).
    """
    corpus = _full_corpus()
    if not corpus:
        raise ValueError(f"no documentation found in the Python standard library at {sysconfig.get_paths()['stdlib']}")
    if max_chars is None:
        return list(corpus)
    out, total = [], 0
    for paragraph in corpus:
        if total + len(paragraph) > max_chars:
            break
        out.append(paragraph)
        total += len(paragraph)
    return out


def default_corpus_info(max_chars: int | None = 2_000_000) -> dict:
    """Describes [`build_default_corpus`] for model cards.

    Args:
        max_chars (`int`, *optional*, defaults to 2,000,000): as in [`build_default_corpus`].

    Returns:
        `dict` with `source`, `num_paragraphs`, `num_chars`, `num_words`, `python_version` and `max_chars`.
    """
    corpus = build_default_corpus(max_chars)
    return {
        "source": (
            "English documentation of the Python standard library, built offline from the installed interpreter: "
            "Language Reference help topics (pydoc_data), module/class/function docstrings, C module docstrings; "
            "code, doctests and markup removed, deduplicated"
        ),
        "num_paragraphs": len(corpus),
        "num_chars": sum(len(p) for p in corpus),
        "num_words": sum(len(p.split()) for p in corpus),
        "python_version": platform.python_version(),
        "max_chars": max_chars,
    }


__all__ = ["build_default_corpus", "default_corpus_info"]
