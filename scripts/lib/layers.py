"""The layer check of host/src (scripts/test runs it): imports point one way, and pure modules
use no API client.

Layers, bottom up; a module may use its own layer and those below, never one above:
  0 names, crd, metrics, subset, seal   the shared vocabulary
  1 policy                  the engine, selection, resolver, fair share
  2 output                  files -> Secrets (uses the policy contract)
  3 reconcile               one QuarksJob, as a pipeline
  4 runtime                 the process: watches, leadership, probes
  5 cli, authoring, main    the command line

Pure modules (decisions, names, formats) must not touch the API: no kube client, no Api, no
.await. Prints every violation and exits 1 when there is one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "host" / "src"
LAYERS = {"names": 0, "crd": 0, "metrics": 0, "subset": 0, "seal": 0, "policy": 1, "output": 2, "reconcile": 3,
          "runtime": 4, "cli": 5, "authoring": 5, "main": 5, "lib": 5}
PURE = [
    "names", "crd.rs", "subset.rs", "seal.rs",
    "reconcile/settle.rs", "reconcile/status.rs", "reconcile/events.rs", "reconcile/job.rs",
    "reconcile/references.rs", "reconcile/digest.rs", "reconcile/template.rs",
    "output/pod.rs", "output/staging.rs", "output/files.rs", "output/validate.rs",
    "output/problem.rs",
    "policy/contract.rs", "policy/selection.rs", "policy/fairness.rs", "policy/limits.rs",
    "policy/error.rs",
]
# (kube::api::ObjectMeta is only the metadata type.)
API = re.compile(r"kube::Client|\bApi<|\bApi::|kube::api::(?!ObjectMeta\b)|\.await\b")
USE = re.compile(r"crate::([a-z_]+)")


def top(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def is_pure(path: Path) -> bool:
    rel = path.relative_to(SRC).as_posix()
    return any(rel == p or rel.startswith(p + "/") for p in PURE)


def code_lines(path: Path):
    """(number, line) of the file's code outside `#[cfg(test)]` modules and comments."""
    in_tests = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("#[cfg(test)]"):
            in_tests = True
        if in_tests:
            continue
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        yield number, line


def main() -> int:
    problems = []
    files = sorted(SRC.rglob("*.rs"))
    for path in files:
        layer = LAYERS[top(path)]
        for number, line in code_lines(path):
            for used in USE.findall(line):
                if used in LAYERS and LAYERS[used] > layer:
                    problems.append(f"{path.relative_to(SRC)}:{number}: uses crate::{used}, a layer above")
            if is_pure(path) and API.search(line):
                problems.append(f"{path.relative_to(SRC)}:{number}: pure module touches the API: {line.strip()}")
    missing = [p for p in PURE if not (SRC / p).exists()]
    problems += [f"{p}: listed as pure but does not exist" for p in missing]
    for problem in problems:
        print(problem)
    print(f"layer check: {len(files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
