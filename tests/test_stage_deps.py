"""Each DVC stage's `deps` name exactly the src/ files its command runs (issue 26): every file the command imports is
covered by a dep, and every src/ dep covers something it imports.

The closure is static (`ast`, nothing imported), at the level of top-level definitions, so that the project's lazy
imports count only where they run:
- a unit is a module's body (its top-level statements, decorators, default values, annotations and class bases: what
  runs on import) or one top-level function or class (its body, its methods);
- a unit reaches the modules its import statements run (with their parent packages), the definitions its names and
  `module.attribute`s resolve to (through re-exports), and, for a module passed around whole, all its definitions;
- a file is in the closure when its module is imported: DVC sees files, and a module's body runs on import;
- the roots of `python -m src X` are src/__main__.py's body (`repro.apply()`, the typer app, every command's options)
  and the function that command X runs; of `python -m src.report`, its body and its callback.
Not required as deps (each rule is checked, so it cannot hide logic):
- src/cli.py: the typer style, `--version` and help texts (not followed: `--version` alone imports src/tracking.py);
- src/__main__.py, for a stage whose command function is thin: no control flow, calls params' `load_params` and one
  stage function (and `typer.echo`, builtins, methods of its values); its options are in the closure through the body;
- a package's __init__.py that holds only a docstring.
One edge is cut: `params.parse_params` builds the models (`model_problems`, importing src/models and torch) only with
`check_models`; it is followed where a reached call passes `check_models=True`.
Files beside a reached module that it names in a string (`Path(__file__).with_name("templates")`) are deps too.
One import is dynamic: src/models/attention.py loads a model's block, src/models/blocks/<attention>.py, by the name
params.yaml gives. A stage that reaches attention.py needs the blocks of the models it builds: a training stage its
cell's (dvc.cells.yaml's `attention`, one check per block), any other stage every study model's.
"""

from __future__ import annotations

import ast
import builtins
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLI_FILES = {"src/cli.py"}  # followed nowhere, required nowhere (see the docstring)
CUT = {("src.params", "model_problems"): "check_models"}  # unit -> the keyword that must be passed True to reach it


# --- the static closure -------------------------------------------------------------------------------------------


def module_path(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if name.split(".")[0] == "src" and path.is_file():
            return path
    return None


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    defs: dict[str, ast.AST] = field(default_factory=dict)
    aliases: dict[str, tuple] = field(default_factory=dict)  # module-level import bindings

    @property
    def package(self) -> str:
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]


@cache
def load(name: str) -> Module | None:
    path = module_path(name)
    if path is None:
        return None
    m = Module(name, path, ast.parse(path.read_text(), str(path)))
    for node in m.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            m.defs[node.name] = node
    for node in m.tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            m.aliases.update(import_bindings(node, m)[0])
    return m


def member(module: str, attr: str) -> tuple:
    """module.attr: a submodule, or a definition (or value) of the module."""
    sub = f"{module}.{attr}"
    return ("mod", sub) if module_path(sub) else ("def", module, attr)


def import_bindings(node: ast.Import | ast.ImportFrom, m: Module) -> tuple[dict[str, tuple], list[str]]:
    """The names an import statement binds to src targets, and the src modules it runs."""
    binds, runs = {}, []
    if isinstance(node, ast.Import):
        for a in node.names:
            if module_path(a.name):
                runs.append(a.name)
                binds[a.asname or a.name.split(".")[0]] = ("mod", a.name if a.asname else a.name.split(".")[0])
        return binds, runs
    base = node.module or ""
    if node.level:
        parts = m.package.split(".")
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    if not module_path(base):
        return binds, runs
    runs.append(base)
    for a in node.names:
        target = member(base, a.name)
        if target[0] == "mod":
            runs.append(target[1])
        binds[a.asname or a.name] = target
    return binds, runs


def signature_nodes(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.AST]:
    a = fn.args
    arguments = [x for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x]
    evaluated = [*a.defaults, *a.kw_defaults, *[x.annotation for x in arguments], fn.returns]
    return [*fn.decorator_list, *[x for x in evaluated if x]]


def body_nodes(m: Module) -> list[ast.AST]:
    """What runs when the module is imported (and what typer evaluates: every command's options)."""
    nodes = []
    for node in m.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            nodes += signature_nodes(node)
        elif isinstance(node, ast.ClassDef):
            nodes += [*node.decorator_list, *node.bases, *[k.value for k in node.keywords]]
            for item in node.body:
                is_fn = isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                nodes += signature_nodes(item) if is_fn else [item]
        else:
            nodes.append(node)
    return nodes


def unit_nodes(m: Module, name: str | None) -> list[ast.AST]:
    if name is None:
        return body_nodes(m)
    node = m.defs[name]
    if isinstance(node, ast.ClassDef):
        return [s for item in node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) for s in item.body]
    return list(node.body)


def references(m: Module, nodes: list[ast.AST]) -> tuple[list[tuple], set[str]]:
    """The targets `nodes` reach, and the keywords they pass True (for CUT)."""
    local, targets, keywords = dict(m.aliases), [], set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import | ast.ImportFrom):
                binds, runs = import_bindings(sub, m)
                local.update(binds)
                targets += [("mod", r) for r in runs]

    def resolve(expr: ast.AST) -> tuple | None:
        if isinstance(expr, ast.Name):
            return local.get(expr.id) or (("def", m.name, expr.id) if expr.id in m.defs else None)
        if isinstance(expr, ast.Attribute):
            base = resolve(expr.value)
            return member(base[1], expr.attr) if base and base[0] == "mod" else None
        return None

    bases = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute):
                bases.add(id(sub.value))
                target = resolve(sub)
                if target:
                    targets.append(target)
            elif isinstance(sub, ast.keyword) and isinstance(sub.value, ast.Constant) and sub.value.value is True:
                keywords.add(sub.arg)
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                target = resolve(sub)
                if target and target[0] == "mod" and id(sub) not in bases:  # a module passed whole
                    targets += [("def", target[1], d) for d in load(target[1]).defs]
                elif target:
                    targets.append(target)
    return targets, keywords


def closure(module: str, roots: list[str | None]) -> set[str]:
    """The src files that running `roots` (top-level names of `module`, None: its body) imports."""
    seen_units, seen_modules, keywords, cut = set(), set(), set(), []
    stack = [("def", module, r) if r else ("mod", module) for r in roots]

    def visit_module(name: str) -> None:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # parent packages run first
            parent = ".".join(parts[:i])
            if parent not in seen_modules and load(parent):
                seen_modules.add(parent)
                stack.append(("unit", parent, None))

    while stack or cut:
        if not stack:  # a cut edge whose keyword some reached call passes
            stack += [("unit", *u) for u in cut if CUT[u] in keywords]
            cut = [u for u in cut if CUT[u] not in keywords]
            if not stack:
                break
        kind, name, *rest = stack.pop()
        if rel(module_path(name)) in CLI_FILES:
            continue
        if kind == "mod":
            visit_module(name)
            continue
        m = load(name)
        if kind == "def":
            visit_module(name)
            attr = rest[0]
            if attr in m.defs:
                stack.append(("unit", name, attr))
            elif attr in m.aliases:  # a re-export
                stack.append(m.aliases[attr])
            continue
        unit = (name, rest[0])
        if unit in seen_units:
            continue
        if unit in CUT and CUT[unit] not in keywords:
            cut.append(unit)
            continue
        seen_units.add(unit)
        targets, found = references(m, unit_nodes(m, rest[0]))
        keywords |= found
        stack += targets
    files = {rel(load(n).path) for n in seen_modules}
    return files | {f for n in seen_modules for f in resources(load(n))}


def resources(m: Module) -> set[str]:
    """Files and folders beside the module (not Python) that it names in a string: its data."""
    strings = {n.value for n in ast.walk(m.tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    beside = [p for p in m.path.parent.iterdir() if p.suffix != ".py" and not (p / "__init__.py").exists()]
    return {rel(p) for p in beside if p.name in strings}


# --- the stages ---------------------------------------------------------------------------------------------------


def command_function(m: Module, command: str) -> str:
    """The function that typer runs for `python -m src <command>` (a top-level command of the module's `app`)."""
    for name, node in m.defs.items():
        for d in getattr(node, "decorator_list", []):
            if isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command":
                if isinstance(d.func.value, ast.Name) and d.func.value.id == "app":
                    given = d.args[0].value if d.args else name.replace("_", "-")
                    if given == command:
                        return name
    raise AssertionError(f"{m.name} has no command {command}")


def callbacks(m: Module) -> list[str]:
    return [
        name
        for name, node in m.defs.items()
        for d in getattr(node, "decorator_list", [])
        if isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "callback"
    ]


def thin(m: Module, name: str) -> list[str]:
    """Why command function `name` is not thin (empty: it is): see the module docstring."""
    fn, problems, stage_calls = m.defs[name], [], set()
    body = fn.body[1:] if ast.get_docstring(fn) else fn.body
    for stmt in body:
        if not isinstance(stmt, ast.Import | ast.ImportFrom | ast.Assign | ast.AnnAssign | ast.Expr | ast.Return):
            problems.append(f"line {stmt.lineno}: {type(stmt).__name__}")
    src_names, other_names = dict(m.aliases), set()  # what the module and the function import
    for stmt in [*m.tree.body, *body]:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            src_names.update(import_bindings(stmt, m)[0])
            other_names |= {a.asname or a.name.split(".")[0] for a in stmt.names}
    for call in (n for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Call)):
        f = call.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):  # module.function(...)
            f, name = f.value, f"{f.value.id}.{f.attr}"
            if name == "typer.echo" or f.id not in other_names:  # printing, or a method of a value
                continue
        else:
            name = getattr(f, "id", None)
        if name is None or (name not in other_names and hasattr(builtins, name)):
            continue  # a builtin, or a method of a value
        if src_names.get(f.id) == ("def", "src.params", "load_params"):
            continue
        if f.id in src_names:
            stage_calls.add(name)
        elif f.id in m.defs:
            problems.append(f"line {call.lineno}: calls {name} of the command line")
        else:
            problems.append(f"line {call.lineno}: calls {name}, not of src")
    if len(stage_calls) > 1:
        problems.append(f"calls {len(stage_calls)} functions of src besides load_params: {sorted(stage_calls)}")
    return problems


@dataclass
class Stage:
    name: str
    cmd: str
    deps: list[str]
    blocks: tuple[str, ...] = ()  # the attention blocks it builds, loaded by name (default: every study model's)

    def __post_init__(self):
        self.blocks = self.blocks or tuple(m["attention"] for m in PARAMS["study"]["models"].values())

    def required(self) -> set[str]:
        """The src files the stage's deps must cover."""
        words = shlex.split(self.cmd)
        assert words[:2] == ["python", "-m"], f"{self.name}: a command this test cannot read: {self.cmd}"
        m = load(words[2])
        assert m is not None and m.path.name in ("__main__.py", "__init__.py"), f"{self.name}: not a src command"
        if m.path.name == "__init__.py":  # `python -m src` runs src/__main__.py
            m = load(f"{words[2]}.__main__")
        command = next((w for w in words[3:] if not w.startswith("-")), None)
        roots = [None, *callbacks(m)] + ([command_function(m, command)] if command else [])
        files = closure(m.name, roots)
        if "src/models/attention.py" in files:  # the dynamic import (see the module docstring)
            files |= {f for block in self.blocks for f in closure(f"src.models.blocks.{block}", [None])}
        if command and not thin(m, command_function(m, command)):
            files.discard(rel(m.path))
        return {f for f in files if f not in CLI_FILES and not package_marker(f)}


def package_marker(path: str) -> bool:
    """An __init__.py with nothing but a docstring."""
    if Path(path).name != "__init__.py":
        return False
    body = ast.parse((REPO / path).read_text()).body
    return all(isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) for s in body)


def stages(path: Path = REPO / "dvc.yaml") -> list[Stage]:
    """dvc.yaml's stages; a `foreach` over dvc.cells.yaml once per attention block its cells use (train[cbam])."""
    raw = yaml.safe_load(path.read_text())["stages"]
    cells = yaml.safe_load((REPO / "dvc.cells.yaml").read_text())["cells"]
    found = []
    for name, s in raw.items():
        if "foreach" not in s:
            found.append(Stage(name, s["cmd"], src_deps(name, s.get("deps", []))))
            continue
        table = s["foreach"].removeprefix("${cells.").removesuffix("}")
        for block in dict.fromkeys(c["attention"] for c in cells[table].values()):
            deps = [d.replace("${item.attention}", block) for d in s["do"].get("deps", [])]
            found.append(Stage(f"{name}[{block}]", s["do"]["cmd"], src_deps(name, deps), (block,)))
    return found


def src_deps(name: str, deps: list) -> list[str]:
    found = [d for d in deps if isinstance(d, str) and d.split("/")[0] == "src"]
    assert not any("${" in d for d in found), f"{name}: a templated src dep this test does not expand: {found}"
    return found


def gaps(stage: Stage) -> tuple[list[str], list[str]]:
    """(missing, extra): imported files no dep covers; deps, or files of folder deps, that the command never imports."""
    required = stage.required()
    covered = lambda f, d: f == d or f.startswith(d.rstrip("/") + "/")  # noqa: E731
    missing = sorted(f for f in required if not any(covered(f, d) for d in stage.deps))
    extra = []
    for d in stage.deps:
        assert (REPO / d).exists(), f"{stage.name}: dep {d} does not exist"
        extra += [f for f in files_of(d) if not any(covered(f, r) for r in required) and not package_marker(f)]
    return missing, sorted(extra)


def files_of(dep: str) -> list[str]:
    path = REPO / dep
    return [dep] if path.is_file() else [rel(p) for p in path.rglob("*") if p.is_file() and p.suffix != ".pyc"]


PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
STAGES = stages()


def test_every_stage_is_checked():
    assert {s.name.split("[")[0] for s in STAGES} == {"data", "split", "train", "replicate", "rerun", "report"}
    blocks = {m["attention"] for m in PARAMS["study"]["models"].values()}
    assert {s.name for s in STAGES if s.name.startswith("train")} == {f"train[{b}]" for b in blocks}


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_deps_are_the_files_the_command_imports(stage):
    missing, extra = gaps(stage)
    assert not missing, f"{stage.name}: its command imports {missing}; add them to its deps in dvc.yaml"
    assert not extra, f"{stage.name}: its deps name {extra}, which its command does not import"


def test_the_closure_follows_lazy_imports_and_cuts_only_what_is_not_run():
    data = Stage("data", "python -m src data", []).required()
    assert {"src/data/synth.py", "src/data/portal.py", "src/repro.py"} <= data  # lazy (per source) and the CLI's body
    assert not any(f.startswith("src/models") for f in data)  # load_params() without check_models builds no model
    report = Stage("report", "python -m src.report", []).required()
    assert {"src/models/blocks/cbam.py", "src/report/templates", "src/report/paper_claims.yaml"} <= report
    assert "src/report/compare.py" not in report  # `compare` is another command
    assert "src/__main__.py" not in Stage("train", "python -m src train --cell x", []).required()  # thin
    assert "src/__main__.py" in Stage("predict", "python -m src predict", []).required()  # its logic is in the CLI


def test_a_dep_dropped_or_added_is_named():
    data = next(s for s in STAGES if s.name == "data")
    fewer = Stage("data", data.cmd, [d for d in data.deps if d != "src/params.py"])
    assert gaps(fewer) == (["src/params.py"], [])
    more = Stage("data", data.cmd, [*data.deps, "src/data/split.py", "src/report"])
    assert gaps(more)[1][0] == "src/data/split.py" and "src/report/build.py" in gaps(more)[1]
