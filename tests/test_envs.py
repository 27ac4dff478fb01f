"""Every rule's conda env (envs/*.yaml) holds what the rule imports, pinned as in requirements.lock.

`snakemake --software-deployment-method conda` builds these files with conda from conda-forge, which
this project's machines cannot reach (no conda, no conda channels; only PyPI), so no test builds or
solves them. What is checked instead, statically:

- every rule that runs code names a conda env file that exists (read from the loaded workflow, so a
  function such as the train rule's per-paper env is resolved for every configured paper);
- the env lists, pinned to requirements.lock's version, the distribution of every third-party module
  the rule's code can import: the entry module of its shell command (`python -m ...`) or its script,
  plus (figure rule) the "module:function" hooks of the papers' paper.yaml, followed through every
  impls module they import, at the top or inside functions, and through "impls.x:y" strings that
  name code to load (the papers' Impl entries);
- a lazy import that a rule's env may lack is listed in ENV_EXEMPTIONS with the reason the rule never
  reaches it; an exemption must name an import inside a function that the analysis still finds.
"""
from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from tests.conftest import LOCAL_ENV, copy_repo

ROOT = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))

#: the TFDS path's imports: reached only with config data.loader naming tfds, whose packages are the
#: optional extra requirements-tfds.txt, which these envs leave out (profiles/README.md, "Conda envs")
_TFDS_ONLY = "data.loader: tfds only (the optional TFDS extra, requirements-tfds.txt)"
_TFDS_IMPORTS = {("impls.common.tfds_data", "tensorflow_datasets"): _TFDS_ONLY,
                 ("impls.common.tfds_builders", "tensorflow_datasets"): _TFDS_ONLY,
                 ("impls.common.tfds_builders", "PIL"): _TFDS_ONLY}

#: env file name -> {(impls module, top-level import): why the rules using this env never run it}
ENV_EXEMPTIONS = {
    "torch.yaml": {
        ("impls.common.backend", "jax"): "configure_framework's JAX branch: a PyTorch paper's job takes the torch one",
        ("impls.common.provenance", "jax"): "jax_device(), called only by the JAX papers' programs",
        ("impls.common.distributed", "jax"): "joining a multi-process JAX job: the cli does it for the JAX papers only",
        **_TFDS_IMPORTS,
    },
    "report.yaml": {
        ("impls.common.datasets", "torchvision"): "the IDX reader and downloads of the dataset rule; "
                                                  "figures read the cached .npz",
        **_TFDS_IMPORTS,
    },
    "data.yaml": dict(_TFDS_IMPORTS),
    "jax.yaml": {**_TFDS_IMPORTS, ("impls.two_routes.imagenet_tfds", "grain"): _TFDS_ONLY},
}

#: prints what every rule of the workflow in the current directory runs, and its conda env
DUMP_RULES = r'''
import json, re
from pathlib import Path
from types import SimpleNamespace
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ResourceSettings

with SnakemakeApi() as api:
    workflow = api.workflow(resource_settings=ResourceSettings(), snakefile=Path("Snakefile"),
                            workdir=Path.cwd())._workflow
    plan = workflow.globals["PLAN"]
    rows = []
    for rule in workflow.rules:
        if rule.norun:
            continue
        for paper in (list(plan.papers) if "paper" in rule.wildcard_names else [None]):
            env = rule.conda_env
            if callable(env):
                env = env(SimpleNamespace(paper=paper))
            if env is not None:
                env = str((Path(rule.snakefile).parent / str(env)).resolve())
            module = re.search(r"python -m (\S+)", rule.shellcmd or "")
            rows.append({
                "rule": rule.name, "paper": paper, "env": env,
                "module": module.group(1).replace("{wildcards.paper}", paper or "") if module else None,
                "script": str((Path(rule.snakefile).parent / rule.script).resolve()) if rule.script else None,
            })
print("RULES-JSON " + json.dumps(rows))
'''


@pytest.fixture(scope="module")
def rule_envs(tmp_path_factory) -> list[dict]:
    """One row per rule that runs code (per paper for the train rule): its env and entry point."""
    root = copy_repo(tmp_path_factory.mktemp("envs") / "repo")
    proc = subprocess.run([sys.executable, "-c", DUMP_RULES], cwd=root, capture_output=True, text=True,
                          timeout=900, env={**os.environ, **LOCAL_ENV})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RULES-JSON "))
    rows = json.loads(line.removeprefix("RULES-JSON "))
    for row in rows:  # paths of the copy -> paths of this checkout
        for key in ("env", "script"):
            if row[key]:
                row[key] = str(ROOT / Path(row[key]).relative_to(root))
    return rows


# ---- what code can import: a static closure over impls/ ----


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=None)
def _imports(path: Path, module: str) -> tuple[tuple[str, bool], ...]:
    """(imported module, whether at module level) of every import in ``path``, plus the modules that
    "impls.x.y:name" strings name (code loaded by importlib); relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if n is not f}
    found = []
    for node in ast.walk(tree):
        top = id(node) not in nested
        if isinstance(node, ast.Import):
            found += [(alias.name, top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module
            found.append((base, top))
            found += [(f"{base}.{alias.name}", top) for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and re.fullmatch(r"impls(\.\w+)+:\w+", node.value):
            found.append((node.value.split(":")[0], False))
    return tuple(found)


def import_closure(entries: list[str], scripts: list[Path] = ()) -> dict[tuple[str, str], bool]:
    """{(impls module or script, third-party top-level module): imported at module level} of
    everything reachable from the ``entries`` modules and ``scripts``."""
    found: dict[tuple[str, str], bool] = {}
    seen: set[str] = set()
    todo = [(name, _module_file(name)) for name in entries] + [(str(s), Path(s)) for s in scripts]
    while todo:
        name, path = todo.pop()
        if name in seen or path is None:
            continue
        seen.add(name)
        for imported, top in _imports(path, name):
            head = imported.split(".")[0]
            if head == "impls":
                parts = imported.split(".")
                todo += [(".".join(parts[:i]), _module_file(".".join(parts[:i]))) for i in range(1, len(parts) + 1)]
            elif head not in sys.stdlib_module_names and head != "__future__":
                found[(name, head)] = found.get((name, head), False) or top
    return found


def paper_hook_modules() -> list[str]:
    """Modules of the "module:function" hooks (aggregate, plot kind) the paper.yaml files name."""
    text = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "papers").glob("*/paper.yaml")))
    return sorted(set(re.findall(r"\b(impls(?:\.\w+)+):\w+", text)))


def rule_closure(row: dict) -> dict[tuple[str, str], bool]:
    entries, scripts = [], []
    if row["module"]:
        module = row["module"]
        entries.append(f"{module}.__main__" if _module_file(f"{module}.__main__") else module)
    if row["script"]:
        scripts.append(Path(row["script"]))
    if row["rule"] == "figure":
        entries += paper_hook_modules()
    return import_closure(entries, scripts)


# ---- env files and requirements.lock ----


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache(maxsize=1)
def locked_versions() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([\w.+-]+)\s*$", line.strip())
        if m:
            pins[_normal(m.group(1))] = m.group(2)
    return pins


def env_pip_pins(path: Path) -> dict[str, str]:
    """{normalised distribution: version} of the env's pip section (every entry must be NAME==VERSION)."""
    env = yaml.safe_load(path.read_text())
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, f"{path.name}: expected one pip section"
    pins = {}
    for spec in sections[0]:
        if spec.startswith("-"):  # --index-url and other pip options
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[\w,-]+\])?==([\w.+-]+)", spec)
        assert m, f"{path.name}: {spec!r} is not pinned as NAME==VERSION"
        pins[_normal(m.group(1))] = m.group(3)
    return pins


@lru_cache(maxsize=None)
def distribution_of(module: str) -> str:
    """The installed distribution that provides top-level ``module`` (sklearn -> scikit-learn)."""
    dists = _packages_distributions().get(module)
    assert dists, f"no installed distribution provides {module!r}; is it in requirements.txt?"
    return _normal(dists[0])


@lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


# ---- tests ----


def test_import_closure_follows_lazy_imports_and_impl_strings():
    # guards the analysis the env checks rely on: two_routes reaches torchvision only through the
    # "impls.two_routes.train:make_program" string of its Impl, then a function-level import
    closure = rule_closure({"rule": "train", "module": "impls.two_routes", "script": None})
    assert ("impls.two_routes.imagenet", "torchvision") in closure
    assert closure[("impls.common.jax_state", "jax")] is True          # module-level import
    assert closure[("impls.common.backend", "torch")] is False         # inside a function
    figure = rule_closure({"rule": "figure", "module": None, "script": str(ROOT / "workflow/scripts/figure.py")})
    assert ("impls.common.plotting", "matplotlib") in figure
    assert any(m.startswith("impls.nodepert.") and pkg == "jax" for m, pkg in figure)  # a paper.yaml hook


def test_every_rule_that_runs_code_has_an_env_file(rule_envs):
    assert {row["rule"] for row in rule_envs} >= {"dataset", "train", "figure", "scorecard"}
    for row in rule_envs:
        where = f"rule {row['rule']}" + (f" (paper {row['paper']})" if row["paper"] else "")
        assert row["env"], f"{where} has no conda: directive"
        assert Path(row["env"]).is_file(), f"{where}: conda env {row['env']} does not exist"
        assert Path(row["env"]).parent == ROOT / "envs", f"{where}: env {row['env']} is not under envs/"
        assert row["module"] or row["script"], f"{where}: neither `python -m MODULE` nor a script found"


def test_every_env_covers_the_imports_of_its_rules(rule_envs):
    missing = []
    for row in rule_envs:
        env = Path(row["env"])
        pins = env_pip_pins(env)
        exempt = ENV_EXEMPTIONS.get(env.name, {})
        for (module, package), _ in sorted(rule_closure(row).items()):
            if (module, package) in exempt:
                continue
            if distribution_of(package) not in pins:
                missing.append(f"envs/{env.name} (rule {row['rule']}{', ' + row['paper'] if row['paper'] else ''}) "
                               f"lacks {distribution_of(package)}, imported by {module}")
    assert not missing, "\n".join(sorted(set(missing)))


def test_env_exemptions_name_lazy_imports_still_there(rule_envs):
    """An exemption must be an import inside a function (module-level imports run whenever the module
    loads) that some rule using that env still reaches; a stale one would hide nothing and mislead."""
    reached: dict[str, dict] = {}
    for row in rule_envs:
        reached.setdefault(Path(row["env"]).name, {}).update(rule_closure(row))
    for env_name, exemptions in ENV_EXEMPTIONS.items():
        assert env_name in reached, f"ENV_EXEMPTIONS names envs/{env_name}, which no rule uses"
        for key, reason in exemptions.items():
            assert key in reached[env_name], f"envs/{env_name}: exemption {key} ({reason}) is no longer reached"
            assert reached[env_name][key] is False, f"envs/{env_name}: {key} is a module-level import, not lazy"


def test_envs_are_all_used(rule_envs):
    used = {Path(row["env"]).name for row in rule_envs}
    assert used == {p.name for p in ENV_FILES}, f"env files no rule names: {sorted({p.name for p in ENV_FILES} - used)}"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_pins_the_locked_versions(path):
    env = yaml.safe_load(path.read_text())
    assert env["channels"][0] == "conda-forge" and "nodefaults" in env["channels"]
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert conda_deps == ["python=3.11", "pip"], f"{path.name}: conda part {conda_deps}; the rest goes through pip"
    pins, locked = env_pip_pins(path), locked_versions()
    assert pins
    for name, version in pins.items():
        assert name in locked, f"{path.name}: {name} is not in requirements.lock"
        assert version == locked[name], f"{path.name}: {name}=={version}, requirements.lock has {locked[name]}"


def test_locked_versions_parse():
    # guards the test above: the lock is read, with names normalised
    assert locked_versions()["pyyaml"] == "6.0.3"
    assert locked_versions()["scikit-learn"]
