"""
The package's layout, read from its source with `ast` (nothing is executed): no import cycle, no import of the
scripts around it (`examples/`, `benchmarks/`, `tests/` or their helper modules), no module far over 600 lines, no
image processor imported where a text or speech run would load it.
"""

import ast
from pathlib import Path

import pytest

from .fixtures import BENCHMARKS, EXAMPLES, REPO


PACKAGE = REPO / "d2v_hf"
MAX_MODULE_LINES = 620  # "no module much over 600 lines"
# Top-level names that belong to the checkout, not to the installed package.
OUTSIDE = {"examples", "benchmarks", "tests"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path) -> dict[str, set[str]]:
    """`{module: {imported name}}` for every module of `package`, every import statement (lazy ones too)."""
    modules = {module_name(path, package): path for path in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolved against this module's package
                    base = name.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    candidate = f"{source}.{alias.name}"
                    edges.add(candidate if candidate in modules else source)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle among the graph's own modules (as a list of names, first == last), or `None`."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node] & graph.keys()):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def script_helper_names() -> set[str]:
    """The modules beside the example scripts and benchmarks, which those import by their bare names."""
    return {path.stem for folder in (EXAMPLES, BENCHMARKS) for path in folder.rglob("*.py")}


def outside_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    forbidden = OUTSIDE | script_helper_names()
    return sorted(
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if target.split(".")[0] in forbidden
    )


def test_no_import_cycle_in_the_package():
    graph = import_graph(PACKAGE)
    assert "d2v_hf.modeling_data2vec_pretraining" in graph and "d2v_hf.finetuning.training" in graph
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_package_imports_nothing_from_the_checkout():
    graph = import_graph(PACKAGE)
    assert outside_imports(graph) == []
    # nor does it load files by path (the study once executed examples/*.py from inside the package)
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "spec_from_file_location" not in text and "runpy" not in text, path


def test_the_method_never_imports_the_data_layer_or_finetuning():
    """The model, masks, collators, EMA and trainer stand alone: no dataset loaders, no fine-tuning logic; the
    models do not even import the collators."""
    graph = import_graph(PACKAGE)
    core = [module_name(path, PACKAGE) for path in [*PACKAGE.glob("*.py"), *(PACKAGE / "trainer").glob("*.py")]]
    assert "d2v_hf.modeling_data2vec2" in core and "d2v_hf.trainer.pretraining_trainer" in core
    for name in core:
        if name == "d2v_hf":  # the package's __init__ re-exports the demo corpus and the BPE trainer
            continue
        data_layer = {t for t in graph[name] if t.startswith(("d2v_hf.data.", "d2v_hf.finetuning"))}
        data_layer |= {t for t in graph[name] if t == "d2v_hf.data"}
        if name.startswith("d2v_hf.modeling"):
            data_layer |= {t for t in graph[name] if t == "d2v_hf.data_collator"}
        assert not data_layer, f"{name} imports {sorted(data_layer)}"


@pytest.mark.parametrize("folder", [PACKAGE, EXAMPLES, BENCHMARKS], ids=["d2v_hf", "examples", "benchmarks"])
def test_no_module_much_over_600_lines(folder):
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
        for path in folder.rglob("*.py")
    }
    assert {path: n for path, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def top_level_image_processor_imports(path: Path) -> list[str]:
    """Image processor names imported from transformers at a module's top level: without torchvision, importing
    one warns ("requires torchvision (not installed)"), so a text or speech run that loads the module would show it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transformers")
        for alias in node.names
        if alias.name.endswith("ImageProcessor") and alias.name != "AutoImageProcessor"  # the Auto class does not warn
    ]


@pytest.mark.parametrize("folder", [PACKAGE, EXAMPLES, BENCHMARKS], ids=["d2v_hf", "examples", "benchmarks"])
def test_image_processors_are_imported_where_a_vision_run_needs_them(folder):
    found = {str(path.relative_to(REPO)): top_level_image_processor_imports(path) for path in folder.rglob("*.py")}
    assert {path: names for path, names in found.items() if names} == {}


def test_the_checks_can_fail(tmp_path):
    """The reader above finds a planted cycle (relative and absolute imports) and a planted examples import."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .a import f\n")
    (package / "a.py").write_text("from .sub import b\n\ndef f():\n    import examples.run\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def g():\n    from pkg.a import f\n")
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b", "examples.run"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    assert outside_imports(graph) == [("pkg.a", "examples.run")]
    (package / "sub" / "b.py").write_text("import numpy\n")
    assert find_cycle(import_graph(package)) is None
    (package / "c.py").write_text("from transformers import AutoImageProcessor, ViTImageProcessor\n")
    assert top_level_image_processor_imports(package / "c.py") == ["ViTImageProcessor"]
