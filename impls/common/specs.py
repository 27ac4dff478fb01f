"""Run specs: validation, canonical form and stable run ids.

Caller: ``impls.common.plan`` (when the Snakefile expands figures into runs) and every
impl's ``train`` entry (which re-validates what it is asked to run).
Returns: plain dicts, canonicalised so that equal runs compare and hash equal.

A run id is a readable prefix plus a hash of the canonical spec, e.g.
``np-lr0.001-s0-1b2c3d4e5f``: two figures that need the same run get the same id,
so the run is trained once. Every validated spec carries ``impl_version``, the version of its
paper's implementation (``IMPL_VERSION`` in ``impls/<paper>/__init__.py``), so the id changes, and
the run is trained again, when a change to the code is declared to move its numbers.
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.resources
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

from impls.common.errors import SpecError, describe_schema_error

REPO_ROOT = Path(__file__).resolve().parents[2]
#: the JSON schemas of config.yaml, paper.yaml and run specs: package data of ``impls.common``
#: (impls/common/schemas/), read through importlib.resources so an installed wheel finds them too
SCHEMA_PACKAGE = "impls.common"
SCHEMA_FOLDER = "schemas"
SCHEMA_SUFFIX = ".schema.yaml"


def schema_names() -> list[str]:
    """The schemas shipped with the package: ``<name>`` of every ``schemas/<name>.schema.yaml``."""
    folder = importlib.resources.files(SCHEMA_PACKAGE) / SCHEMA_FOLDER
    return sorted(entry.name[:-len(SCHEMA_SUFFIX)] for entry in folder.iterdir()
                  if entry.name.endswith(SCHEMA_SUFFIX))


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """Load ``impls/common/schemas/<name>.schema.yaml`` (package data, so it ships with the wheel)."""
    resource = importlib.resources.files(SCHEMA_PACKAGE) / SCHEMA_FOLDER / f"{name}{SCHEMA_SUFFIX}"
    if not resource.is_file():
        raise FileNotFoundError(f"no schema {name!r} in {SCHEMA_PACKAGE}/{SCHEMA_FOLDER}; "
                                f"shipped schemas: {', '.join(schema_names()) or 'none'}")
    return yaml.safe_load(resource.read_text(encoding="utf-8"))


#: JSON Schema 2020-12, except that ``integer`` means a Python int: 3.0 is a number, not an integer
#: (so a count or index written as a float is refused rather than passed on), and true is neither
Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)))


def validate_against(document: Any, schema: str | Mapping[str, Any], where: str) -> None:
    """Raise ``SpecError`` naming the first offending key (sorted by path, so stable).

    ``schema`` is a schema name (``impls/common/schemas/<schema>.schema.yaml``) or a schema dict, e.g. a
    paper's ``impls.<paper>.options.SCHEMA``; both go through the same validator and messages.
    """
    validator = Validator(load_schema(schema) if isinstance(schema, str) else schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise SpecError(describe_schema_error(errors[0], where))


def _normalise(value: Any) -> Any:
    """Make numbers canonical: integral floats stay floats, but ints in float slots are
    left alone; tuples become lists; mapping keys are strings."""
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, float):
        return float(repr(value))
    return value


def canonical_json(spec: Mapping[str, Any]) -> str:
    return json.dumps(_normalise(spec), sort_keys=True, separators=(",", ":"))


def short_hash(obj: Any, n: int = 10) -> str:
    text = obj if isinstance(obj, str) else canonical_json(obj)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def _format_number(x: float) -> str:
    return f"{x:.4g}"


def run_id(spec: Mapping[str, Any]) -> str:
    """Stable id: ``<rule>-lr<lr>-s<seed>-<hash of the canonical spec>``."""
    lr = _format_number(float(spec["hparams"]["lr"]))
    return f"{spec['rule']}-lr{lr}-s{spec['seed']}-{short_hash(spec)}"


def impl_version(paper: str) -> str:
    """``IMPL_VERSION`` of ``impls/<paper>/__init__.py``: bumped by hand when a code change moves numbers."""
    try:
        package = importlib.import_module(f"impls.{paper}")
    except ModuleNotFoundError as err:
        raise SpecError(f"run spec: key 'paper' is {paper!r}, which has no impls/{paper} package") from err
    version = getattr(package, "IMPL_VERSION", None)
    if not isinstance(version, str) or not version:
        raise SpecError(f"impls/{paper}/__init__.py: IMPL_VERSION is {version!r}; expected a non-empty string "
                        f"such as \"1\" (the implementation version that enters every run id of {paper})")
    return version


def check_impl_version(spec: Mapping[str, Any]) -> dict:
    """``spec`` with ``impl_version`` set to its paper's current version; a spec that names another
    version was planned for other code, and training it with this code would mislabel the run."""
    current = impl_version(spec["paper"])
    stated = spec.get("impl_version", current)
    if stated != current:
        raise SpecError(f"run spec: key 'impl_version' is {stated!r} but impls/{spec['paper']} is at IMPL_VERSION "
                        f"{current!r}: the spec was planned for other code; plan it again (Snakemake rewrites "
                        f"the batch files when it starts)")
    return {**spec, "impl_version": current}


def spec_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    """The first dotted key (sorted) where two specs differ, e.g. ``hparams.lr``; None when equal."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                return dotted
            found = spec_difference(a[key], b[key], dotted)
            if found is not None:
                return found
        return None
    return None if a == b else (prefix or "<top level>")


def check_run_spec_file(path: str | Path, spec: Mapping[str, Any]) -> None:
    """Refuse a run's ``spec.json`` that is not the spec its run id was made from (edited by hand,
    or copied from another run): the run's results were computed for the spec of its id.

    Raises ``SpecError`` naming the file and the first differing key. A missing file passes (the run
    was not started).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    try:
        on_disk = json.loads(text)
    except ValueError as err:
        raise SpecError(f"{path}: not valid JSON ({err}); it should hold the spec of run "
                        f"{path.parent.name!r}: delete the run's directory to train it again") from None
    if not isinstance(on_disk, dict):
        raise SpecError(f"{path}: holds a JSON {type(on_disk).__name__}, not the spec of run {path.parent.name!r}; "
                        f"delete the run's directory to train it again")
    key = spec_difference(on_disk, _normalise(dict(spec)))
    if key is not None:
        mine, theirs = get_dotted(on_disk, key, "<absent>"), get_dotted(spec, key, "<absent>")
        raise SpecError(f"{path}: key '{key}' is {mine!r} there but {theirs!r} in the spec of run "
                        f"{path.parent.name!r} (the spec its id was made from, which its results belong to). "
                        f"spec.json is a record, not an input: to change a run, edit "
                        f"papers/{spec['paper']}/paper.yaml; to keep this run, restore the file; to train it "
                        f"again, delete the run's directory")


def paper_options(paper: str):
    """The paper's option registry (``impls.<paper>.options``): pure Python, no JAX/torch."""
    try:
        return importlib.import_module(f"impls.{paper}.options")
    except ModuleNotFoundError as err:
        raise SpecError(f"run spec: key 'paper' is {paper!r}, which has no impls.{paper}.options module") from err


def validate_spec(spec: Mapping[str, Any]) -> dict:
    """Validate a run spec and return it canonical (validation never changes a value; it adds
    ``impl_version``, the paper's current implementation version, where the spec has none).

    Four checks, first failure wins: ``run_spec.schema.yaml`` (every paper), the implementation
    version (a spec stating another one is refused: it was planned for other code), the paper's
    ``options.SCHEMA`` (what its specs may name: rules, datasets, keys, choices, types, ranges; optional),
    then the paper's ``options.validate`` (what a schema cannot say: how keys depend on each other).
    """
    spec = _normalise(copy.deepcopy(dict(spec)))
    validate_against(spec, "run_spec", "run spec")
    spec = check_impl_version(spec)
    options = paper_options(spec["paper"])
    if getattr(options, "SCHEMA", None) is not None:
        validate_against(spec, options.SCHEMA, "run spec")
    options.validate(spec)
    return spec


def set_dotted(spec: dict, dotted: str, value: Any) -> None:
    """``set_dotted(s, "hparams.lr", 0.1)`` sets ``s["hparams"]["lr"] = 0.1``."""
    *parents, leaf = dotted.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise SpecError(f"grid factor '{dotted}': '{key}' is not a mapping")
    node[leaf] = value


def get_dotted(spec: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = spec
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict:
    """Recursively merge ``override`` into a copy of ``base`` (override wins; lists replace)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
