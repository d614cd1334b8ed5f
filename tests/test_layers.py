"""Imports flow one way (docs/architecture.md), read from the source with `ast`, not by importing it.

    streams            decoding and chunking: no torch, no model code, nothing of the project above it
    omnisift           the method: no Ray, no operators, pipeline; of streams only `streams.chunk` (the media
                       constants a chunk and the model share: 2 s, 2 fps, 16 kHz; numpy only)
    operators          per-chunk stages: no Ray, no pipeline
    pipeline.session   one live context: no Ray, of pipeline only messages
    pipeline.offline   files and datasets: not the Ray system, the network faces or the CLI
    pipeline.serve     network faces: no Ray, no torch; of pipeline only config and messages
    pipeline.config, pipeline.messages: no torch, no Ray, nothing else of pipeline
    benchmarks, pipeline.cli: imported by nothing but themselves (and tests)

and no two modules import each other, directly or round a loop, not even for type annotations alone
(`if TYPE_CHECKING:`): a loop of annotations is still two modules that cannot be read apart.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("streams", "operators", "omnisift", "pipeline", "benchmarks")
MODEL_CODE = ("torch", "torchaudio", "torchvision", "transformers", "safetensors")

# (importing module prefix, forbidden imported module prefixes)
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("streams", MODEL_CODE + ("omnisift", "operators", "pipeline")),
    ("omnisift", ("ray", "streams", "operators", "pipeline")),
    ("operators", ("ray", "pipeline")),
    ("pipeline.session", ("ray", "pipeline.ray", "pipeline.serve", "pipeline.offline", "pipeline.cli",
                          "pipeline.viz", "pipeline.config")),
    ("pipeline.serve", ("ray", "torch", "pipeline.ray", "pipeline.session", "pipeline.offline", "pipeline.cli")),
    ("pipeline.offline", ("pipeline.ray", "pipeline.serve", "pipeline.cli")),
    ("pipeline.config", ("ray", "torch", "pipeline.ray", "pipeline.session", "pipeline.serve")),
    ("pipeline.messages", ("ray", "torch", "pipeline.ray", "pipeline.session", "pipeline.serve")),
]
ONLY_FROM_WITHIN = ("benchmarks", "pipeline.cli")  # imported by nothing outside themselves
# (importing module prefix, imported module) allowed although a rule above forbids its prefix
EXCEPTIONS = [("omnisift", "streams.chunk")]


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every module `path` imports, anywhere in the file (functions included), as absolute names."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.append(Import(name, base, node.lineno))
            # `from pkg import submodule` imports the submodule too
            found += [Import(name, f"{base}.{a.name}", node.lineno) for a in node.names
                      if (root / Path(*f"{base}.{a.name}".split("."))).with_suffix(".py").exists()
                      or (root / Path(*f"{base}.{a.name}".split(".")) / "__init__.py").exists()]
    return found


def project_imports(root: Path) -> list[Import]:
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")) if (root / package).is_dir() else []:
            out += imports_of(path, root)
    return out


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def rule_violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        for importer, forbidden in RULES:
            if within(imp.importer, importer) and not any(
                    within(imp.importer, a) and imp.imported == b for a, b in EXCEPTIONS):
                bad += [f"{imp.importer}:{imp.line} imports {imp.imported}"
                        for f in forbidden if within(imp.imported, f)]
        for closed in ONLY_FROM_WITHIN:
            if within(imp.imported, closed) and not within(imp.importer, closed):
                bad.append(f"{imp.importer}:{imp.line} imports {imp.imported} ({closed} is imported by nothing)")
    return bad


def cycles(imports: list[Import], modules: set[str]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), over imports between project modules."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.imported in modules and imp.imported != imp.importer:
            # importing a package runs its __init__; importing a module also runs its packages' __init__s
            graph[imp.importer].add(imp.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def all_modules(root: Path) -> set[str]:
    return {module_name(p, root) for pkg in PACKAGES if (root / pkg).is_dir() for p in (root / pkg).rglob("*.py")}


def test_every_layer_imports_only_what_is_below_it():
    assert rule_violations(project_imports(ROOT)) == []


def test_no_two_modules_import_each_other():
    assert cycles(project_imports(ROOT), all_modules(ROOT)) == []


ARCHITECTURE = ROOT / "docs" / "architecture.md"


def layer_of(module: str, layers: list[str]) -> str | None:
    """The longest layer name `module` is within (pipeline.serve.http.app -> pipeline.serve)."""
    found = [layer for layer in layers if within(module, layer)]
    return max(found, key=len) if found else None


def documented_imports(text: str) -> dict[str, set[str]]:
    """docs/architecture.md's folder table: layer -> the project parts its last column lists."""
    table = {}
    for line in text.split("## The folders", 1)[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        layer = cells[0].strip("`").removesuffix("/").removesuffix(".py").replace("/", ".")
        table[layer] = set() if cells[3] == "none" else {name.strip().strip("`") for name in cells[3].split(",")}
    return table


def actual_imports(imports: list[Import], layers: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {layer: set() for layer in layers}
    for imp in imports:
        importer, imported = layer_of(imp.importer, layers), layer_of(imp.imported, layers)
        if importer is not None and imported is not None and importer != imported:
            found[importer].add(imported)
    return found


def test_the_architecture_table_lists_exactly_what_each_layer_imports():
    documented = documented_imports(ARCHITECTURE.read_text())
    assert len(documented) >= 12, sorted(documented)
    assert actual_imports(project_imports(ROOT), sorted(documented)) == documented


def test_the_table_check_sees_an_import_the_table_omits(tmp_path):
    root = write(tmp_path, {"streams/__init__.py": "", "operators/__init__.py": "import streams\nimport omnisift\n",
                            "omnisift/__init__.py": ""})
    table = "## The folders\n| `streams/` | a | b | none |\n| `operators/` | a | b | `streams` |\n" \
            "| `omnisift/` | a | b | none |\n"
    documented = documented_imports(table)
    assert documented == {"streams": set(), "operators": {"streams"}, "omnisift": set()}
    assert actual_imports(project_imports(root), sorted(documented))["operators"] == {"streams", "omnisift"}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_forbidden_import_added_anywhere_in_a_file_is_found(tmp_path):
    root = write(tmp_path, {
        "streams/__init__.py": "", "streams/decode.py": "def f():\n    import torch.nn\n",
        "pipeline/__init__.py": "", "pipeline/session/__init__.py": "from . import context\n",
        "pipeline/session/context.py": "from ray.util import x\n",
        "omnisift/__init__.py": "from benchmarks import method\n", "benchmarks/__init__.py": "",
        "benchmarks/method.py": "",
    })
    assert sorted(rule_violations(project_imports(root))) == [
        "omnisift:1 imports benchmarks (benchmarks is imported by nothing)",
        "omnisift:1 imports benchmarks.method (benchmarks is imported by nothing)",
        "pipeline.session.context:1 imports ray.util",
        "streams.decode:2 imports torch.nn",
    ]


def test_an_import_cycle_is_found_through_from_imports_and_type_checking_blocks(tmp_path):
    root = write(tmp_path, {
        "pipeline/__init__.py": "", "pipeline/a.py": "from pipeline.b import B\n",
        "pipeline/b.py": "from pipeline import c\n", "pipeline/c.py": "import pipeline.a\n",
        "pipeline/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipeline.e import E\n",
        "pipeline/e.py": "from pipeline.d import D\n", "pipeline/f.py": "from pipeline.a import A\n",
    })
    assert cycles(project_imports(root), all_modules(root)) == [["pipeline.a", "pipeline.b", "pipeline.c"],
                                                                ["pipeline.d", "pipeline.e"]]
