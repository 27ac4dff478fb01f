"""Packaging: the wheel carries every data file the code reads, and pyproject.toml, requirements.txt
and requirements.lock describe one environment.

The schemas are read through importlib.resources (``impls.common.specs.load_schema``), so they must
be package data; the slow test builds the wheel and loads them from an unpacked copy, outside this
checkout, the way an installed package runs.
"""
from __future__ import annotations

import ast
import fnmatch
import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from impls.common import specs
from tests.conftest import copy_repo

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
#: packages only the tests use: never a run-time dependency
TEST_ONLY = {"pytest", "pytest-xdist", "playwright"}


def schema_names_in_code() -> set[str]:
    """Schema names passed as string literals to ``load_schema`` / ``validate_against`` in impls/."""
    names = set()
    for path in (REPO / "impls").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            position = {"load_schema": 0, "validate_against": 1}.get(func)
            if position is not None and len(node.args) > position:
                arg = node.args[position]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.add(arg.value)
    return names


def test_every_schema_the_code_loads_is_package_data():
    names = schema_names_in_code()
    assert {"config", "paper", "run_spec"} <= names, names   # the scan finds the known callers
    assert names <= set(specs.schema_names()), f"loaded but not shipped: {names - set(specs.schema_names())}"
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"][specs.SCHEMA_PACKAGE]
    package_dir = REPO / Path(*specs.SCHEMA_PACKAGE.split("."))
    for name in names:
        relative = f"{specs.SCHEMA_FOLDER}/{name}{specs.SCHEMA_SUFFIX}"
        assert (package_dir / relative).is_file()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), f"{relative} matches no package-data glob {patterns}"


def test_unknown_schema_names_what_ships():
    with pytest.raises(FileNotFoundError, match="no schema 'run-spec'.*config, paper, run_spec"):
        specs.load_schema("run-spec")


@pytest.mark.slow
def test_wheel_loads_its_schemas_outside_the_checkout(tmp_path):
    """Build the wheel, unpack it, import impls from there (not this checkout) and validate with it."""
    source = copy_repo(tmp_path / "source")   # setuptools writes build/ next to the sources
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(tmp_path / "dist"), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("creditbench-*.whl")
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(installed)
        assert any(n.endswith("dist-info/licenses/LICENSE") for n in archive.namelist())
    check = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import yaml, impls.common.specs as s\n"
        "assert s.__file__.startswith(sys.argv[1]), s.__file__\n"
        "s.validate_against(yaml.safe_load(open(sys.argv[2])), 'config', 'config')\n"
        "print(' '.join(s.schema_names()))\n")
    # -I: neither the working directory nor PYTHONPATH puts this checkout on sys.path
    run = subprocess.run([sys.executable, "-I", "-c", check, str(installed), str(REPO / "config" / "config.yaml")],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == sorted(schema_names_in_code() | set(specs.schema_names()))
    train_a_batch_outside_the_checkout(installed, tmp_path / "outside")


def train_a_batch_outside_the_checkout(installed: Path, where: Path) -> None:
    """``python -m impls.nodepert run batch.json`` from the unpacked wheel, in a folder with no
    papers/ or config/: the batch file carries everything the command needs (its batch_over too)."""
    import yaml

    from impls.common.io import atomic_write_json
    from impls.common.plan import build_plan

    config = {**yaml.safe_load((REPO / "config" / "config.yaml").read_text()), "scale": "smoke"}
    plan = build_plan(config, REPO)
    batch_id = min((b for b in plan.batches.values() if b.paper == "nodepert"), key=lambda b: len(b.run_ids)).batch_id
    results = where / "results"
    batch_json = plan.batch_file(results, batch_id)
    batch_json.parent.mkdir(parents=True)
    atomic_write_json(batch_json, plan.batch_doc(batch_id))
    main = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); import impls\n"
            "assert impls.__file__.startswith(sys.path[0]), impls.__file__\n"
            "sys.argv[0] = sys.argv.pop(1); runpy.run_module(sys.argv[0], run_name='__main__')")
    prepare = subprocess.run([sys.executable, "-I", "-c", main, str(installed), "impls.common.datasets", "prepare",
                              "digits", "datasets/digits.npz"], cwd=where, capture_output=True, text=True)
    assert prepare.returncode == 0, prepare.stderr[-3000:]
    job = subprocess.run([sys.executable, "-I", "-c", main, str(installed), "impls.nodepert", "run", str(batch_json),
                          "--datasets-dir", "datasets", "--job-file", "job.json"], cwd=where, capture_output=True,
                         text=True, timeout=600)
    assert job.returncode == 0, job.stderr[-3000:]
    evaluated = json.loads((where / "job.json").read_text())["batches"][batch_id]["runs"]
    assert set(evaluated) == set(plan.batches[batch_id].run_ids)
    assert all(r["status"] in ("ok", "diverged") for r in evaluated.values()), evaluated


def pinned(path: Path) -> dict[str, str]:
    """{normalised name: version} of the ``name==version`` lines of a requirements file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{path.name}: {line!r} is not pinned with =="
            pins[normalise(requirement.name)] = spec.version
    return pins


def normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


#: extras pinned in a requirements file of their own, installed on top of requirements.lock
SEPARATE_EXTRAS = {"tfds": REPO / "requirements-tfds.txt"}


def declared(extras=None) -> dict[str, tuple[str, Requirement]]:
    """{normalised name: (where, requirement)} of pyproject's dependencies and extras (default: those
    pinned in requirements.txt, i.e. all but SEPARATE_EXTRAS)."""
    project = PYPROJECT["project"]
    out = {normalise(Requirement(r).name): ("dependencies", Requirement(r)) for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        if (extra in extras) if extras is not None else extra not in SEPARATE_EXTRAS:
            out.update({normalise(Requirement(r).name): (f"extra {extra}", Requirement(r)) for r in requirements})
    return out


def test_pyproject_declares_every_requirement_at_its_pinned_version():
    pins, lock, decl = pinned(REPO / "requirements.txt"), pinned(REPO / "requirements.lock"), declared()
    assert set(pins) == set(decl), (f"in requirements.txt only: {set(pins) - set(decl)}; "
                                     f"in pyproject.toml only: {set(decl) - set(pins)}")
    for name, version in pins.items():
        where, requirement = decl[name]
        assert requirement.specifier.contains(version), f"{name}=={version} is outside pyproject's {requirement}"
        assert lock.get(name) == version, f"requirements.lock pins {name} at {lock.get(name)}, requirements.txt at {version}"
    runtime = {name for name, (where, _) in decl.items() if where == "dependencies"}
    assert not runtime & TEST_ONLY, f"test-only packages among the run-time dependencies: {runtime & TEST_ONLY}"
    assert TEST_ONLY <= {name for name, (where, _) in decl.items() if where == "extra test"}


@pytest.mark.parametrize("extra", sorted(SEPARATE_EXTRAS))
def test_separate_extra_adds_packages_and_moves_no_pin(extra):
    """requirements-<extra>.txt pins pyproject's extra at versions it allows, plus what they pull in, and
    no package requirements.lock pins: installed with the lock as constraints it cannot move a pin."""
    pins, lock = pinned(SEPARATE_EXTRAS[extra]), pinned(REPO / "requirements.lock")
    assert not set(pins) & set(lock), f"{SEPARATE_EXTRAS[extra].name} re-pins {sorted(set(pins) & set(lock))}"
    for name, (where, requirement) in declared({extra}).items():
        if where == f"extra {extra}":
            assert name in pins, f"pyproject's extra {extra} names {name}, which {SEPARATE_EXTRAS[extra].name} does not pin"
            assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside pyproject's {requirement}"
