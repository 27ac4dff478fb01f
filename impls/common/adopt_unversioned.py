"""``python -m impls.common.adopt_unversioned --scale cpu [--apply]``: keep runs trained before run ids
included the implementation version.

Caller: a user, once, after updating to the first code with ``IMPL_VERSION``. Every run id then
changed (the spec gained ``impl_version``), so Snakemake would train every cached run again. A run
trained by the code that is now version "1" of its paper may instead be *adopted*: its directory
``results/<paper>/runs/<old id>/`` is renamed to its new id, and its ``spec.json`` and
``train.json`` name the new spec and id. The next ``snakemake`` then finds those runs trained and
only evaluates them (final.json, the paper's analyses) in their new batches.

Only adopt runs whose training code matches version "1" of their paper (their ``train.json`` names
the commit): the tool cannot tell. Without ``--apply`` it only lists what it would do. A run is
adopted when the directory of its old id holds a ``train.json`` and the spec of that id, and its new
directory does not exist; a run whose new directory exists is left alone.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from impls.common import specs as speclib
from impls.common.io import atomic_write_json, read_json
from impls.common.plan import Plan, build_plan


@dataclass(frozen=True)
class Adoption:
    old_dir: Path
    new_dir: Path
    spec: dict


def unversioned_id(spec: dict) -> str:
    """The id a spec had before ``impl_version`` entered it (the same spec, that key left out)."""
    return speclib.run_id({k: v for k, v in spec.items() if k != "impl_version"})


def adoptions(plan: Plan, results: Path) -> tuple[list[Adoption], int]:
    """Runs of ``plan`` cached under their unversioned id, and how many planned runs have neither
    directory (to train)."""
    found, missing = [], 0
    for run_id, spec in plan.runs.items():
        new_dir = plan.run_dir(results, run_id)
        old_dir = new_dir.with_name(unversioned_id(spec))
        if new_dir.exists():
            continue
        if _trained_as(old_dir, {k: v for k, v in spec.items() if k != "impl_version"}):
            found.append(Adoption(old_dir, new_dir, spec))
        else:
            missing += 1
    return found, missing


def _trained_as(run_dir: Path, spec: dict) -> bool:
    try:
        return (run_dir / "train.json").exists() and read_json(run_dir / "spec.json") == spec
    except (OSError, ValueError):
        return False


def adopt(adoption: Adoption) -> None:
    """Rename the run's directory to its new id, then record the new spec and id in it."""
    os.rename(adoption.old_dir, adoption.new_dir)
    atomic_write_json(adoption.new_dir / "spec.json", adoption.spec)
    record = read_json(adoption.new_dir / "train.json")
    atomic_write_json(adoption.new_dir / "train.json", {**record, "run_id": adoption.new_dir.name})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m impls.common.adopt_unversioned",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--scale", required=True, choices=["smoke", "cpu", "paper"])
    parser.add_argument("--config", type=Path, default=speclib.REPO_ROOT / "config" / "config.yaml")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--apply", action="store_true", help="rename and rewrite (default: only list)")
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    plan = build_plan({**config, "scale": args.scale}, speclib.REPO_ROOT)
    found, missing = adoptions(plan, args.results)
    for adoption in found:
        print(f"{'adopt' if args.apply else 'would adopt'} {adoption.old_dir} -> {adoption.new_dir.name}")
        if args.apply:
            adopt(adoption)
    print(f"{len(found)} runs {'adopted' if args.apply else 'to adopt'}; {missing} planned runs have no cached "
          f"run (to train); {len(plan.runs) - len(found) - missing} already under their new id", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
