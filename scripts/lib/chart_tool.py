"""Lints, renders and validates charts/quarks-job with real Helm (helm-python-sdk: Helm v4's Go
SDK as a library) and the Kubernetes JSON schemas (kubernetes-validate).

Run with the interpreter of target/chart-tools (scripts/lib/setup.sh ensure_chart_tools), as
host/tests/cluster/chart.rs does:

    target/chart-tools/bin/python scripts/lib/chart_tool.py check
    target/chart-tools/bin/python scripts/lib/chart_tool.py render [--set k=v]... [--include-crds] \
        [--release NAME] [--namespace NS]

`check` exits non-zero on any finding and prints one line per check and a closing
"N passed, N failed" line. `render` prints the manifests as one YAML stream (CRDs first).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "quarks-job"
RELEASE = "quarks-job"
NAMESPACE = "quarks-job"
# Kubernetes versions the manifests are validated against (strict: unknown fields fail).
KUBE_VERSIONS = ["1.32.0", "1.33.0"]

Doc = dict[str, Any]


def set_values(assignments: list[str]) -> dict[str, Any]:
    """Helm's own --set parsing, merged left to right."""
    values: dict[str, Any] = {}
    for assignment in assignments:
        values = merge(values, helm.parse_set_string(assignment))
    return values


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# The order in which `helm install` creates kinds (Helm's InstallOrder, the kinds this chart has),
# so that `kubectl apply -f` of the stream creates namespaces and accounts before their users.
INSTALL_ORDER = ["Namespace", "ServiceAccount", "Secret", "ConfigMap", "CustomResourceDefinition",
                 "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment"]


def install_order(doc: Doc) -> int:
    return INSTALL_ORDER.index(doc["kind"]) if doc["kind"] in INSTALL_ORDER else len(INSTALL_ORDER)


def render(values: dict[str, Any], include_crds: bool, release: str = RELEASE,
           namespace: str = NAMESPACE) -> list[Doc]:
    chart = helm.Chart.load(CHART)
    docs: list[Doc] = []
    if include_crds:
        for crd in chart.crds:
            docs.extend(d for d in yaml.safe_load_all(crd["data"]) if d)
    rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(rendered[path]) if d)
    return sorted(docs, key=install_order)


def notes(values: dict[str, Any]) -> str:
    rendered = helm.Chart.load(CHART).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(v for k, v in rendered.items() if k.endswith("NOTES.txt"))


def kind(docs: list[Doc], k: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == k]


def the(docs: list[Doc], k: str) -> Doc:
    found = kind(docs, k)
    assert len(found) == 1, f"expected one {k}, found {len(found)}"
    return found[0]


def args_of(docs: list[Doc]) -> list[str]:
    return the(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def run(self, name: str, check: Callable[[], None]) -> None:
        try:
            check()
        except Exception as error:  # noqa: BLE001 - every failure is reported, then counted
            self.failed += 1
            print(f"FAIL  {name}: {type(error).__name__}: {error}", flush=True)
        else:
            self.passed += 1
            print(f"ok    {name}", flush=True)


def lint(values: dict[str, Any]) -> None:
    for kube_version in KUBE_VERSIONS:
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + [
            {"error": e} for e in report.get("errors") or []
        ]
        assert report["total_charts_linted"] == 1, report
        assert not problems, f"helm lint (Kubernetes {kube_version}): {problems}"


def validate(docs: list[Doc]) -> None:
    """Every manifest against the Kubernetes JSON schemas, strictly (CRDs included: they are
    apiextensions.k8s.io/v1 objects)."""
    assert docs, "nothing rendered"
    for doc in docs:
        for kube_version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, kube_version, strict=True)
            except kubernetes_validate.ValidationError as error:
                raise AssertionError(
                    f"{doc['kind']} {doc['metadata'].get('name')} (Kubernetes {kube_version}): {error.message} at {list(error.path)}"
                ) from None
        if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"):
            assert doc["metadata"].get("namespace"), f"{doc['kind']} {doc['metadata']['name']} has no namespace"


def restricted_pod_security(docs: list[Doc]) -> None:
    pod = the(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "add" not in sc["capabilities"]
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert any(p["name"] == "metrics" for p in container["ports"])
    for volume in pod.get("volumes", []):
        assert set(volume) <= {"name", "emptyDir", "configMap", "secret", "projected"}, volume


def defaults(docs: list[Doc]) -> None:
    args = args_of(docs)
    monitored = f"--monitored-id={RELEASE}"
    assert monitored in args, args
    assert f"--operator-namespace={NAMESPACE}" in args, args
    assert "--leader-election" not in args, args
    assert "--apply-crd" not in args, "the chart installs the CRD from crds/"
    image = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert f"--persist-output-image={image}" in args, "the output helper must run the operator's image"
    namespace = the(docs, "Namespace")
    assert namespace["metadata"]["name"] == "staging"
    assert namespace["metadata"]["labels"]["quarks.cloudfoundry.org/monitored"] == RELEASE
    helper = [d for d in docs if d["metadata"].get("namespace") == "staging"]
    assert sorted(d["kind"] for d in helper) == ["Role", "RoleBinding", "ServiceAccount"], helper
    assert len(kind(docs, "Role")) == 1, "no leader-election Role with one replica"
    crb = the(docs, "ClusterRoleBinding")
    sa_names = {d["metadata"]["name"] for d in kind(docs, "ServiceAccount") if d["metadata"]["namespace"] == NAMESPACE}
    assert crb["subjects"][0]["name"] in sa_names, (crb["subjects"], sa_names)
    assert the(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] in sa_names


def no_single_namespace(docs: list[Doc]) -> None:
    assert not kind(docs, "Namespace"), "global.singleNamespace.create=false creates no namespace"
    assert not [d for d in docs if d["metadata"].get("namespace") == "staging"]
    assert kind(docs, "ClusterRole"), "the operator's RBAC is still there"


def two_replicas(docs: list[Doc]) -> None:
    deployment = the(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "--leader-election" in args_of(docs)
    roles = [r for r in kind(docs, "Role") if r["metadata"]["namespace"] == NAMESPACE]
    assert len(roles) == 1, roles
    leases = [rule for rule in roles[0]["rules"] if "leases" in rule["resources"]]
    assert any(f"quarks-job-{RELEASE}" in rule.get("resourceNames", []) for rule in leases), leases
    bindings = [b for b in kind(docs, "RoleBinding") if b["metadata"]["namespace"] == NAMESPACE]
    assert [b["roleRef"]["name"] for b in bindings] == [roles[0]["metadata"]["name"]]


def custom_monitored_id(docs: list[Doc]) -> None:
    assert "--monitored-id=team-a" in args_of(docs)
    labels = the(docs, "Namespace")["metadata"]["labels"]
    assert labels["quarks.cloudfoundry.org/monitored"] == "team-a", labels


def invalid_values_are_refused() -> None:
    chart = helm.Chart.load(CHART)
    for bad in [{"logFormat": "xml"}, {"maxWorkers": 0}, {"unknownKey": 1}, {"global": {"monitoredID": "not a label"}}]:
        try:
            chart.render(bad, name=RELEASE, namespace=NAMESPACE, is_install=True)
        except helm.HelmError:
            continue
        raise AssertionError(f"values {bad} rendered; values.schema.json should refuse them")


def crds_match_code() -> None:
    chart = helm.Chart.load(CHART)
    names = sorted(c["name"] for c in chart.crds)
    assert names == ["crds/quarksjobs.quarks.cloudfoundry.org.yaml"], names


def dockerfile_matches_chart() -> None:
    """The image runs as the chart's runAsUser and has the binary where the operator's output
    helper container expects it (command /usr/local/bin/quarks-job)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    pod = the(render({}, include_crds=False), "Deployment")["spec"]["template"]["spec"]
    user = pod["securityContext"]["runAsUser"]
    assert f"USER {user}:{user}" in dockerfile, f"Dockerfile USER is not {user}"
    assert 'ENTRYPOINT ["/usr/local/bin/quarks-job"]' in dockerfile
    assert "COPY --from=build /quarks-job /usr/local/bin/quarks-job" in dockerfile


def every_rbac_rule_says_why() -> None:
    """In the templates, each rule of a Role/ClusterRole follows a comment saying why."""
    for template in sorted((CHART / "templates").glob("*.yaml")):
        lines = template.read_text().splitlines()
        for number, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:"):
                before = lines[number - 1].strip() if number else ""
                assert before.startswith("#"), f"{template.name}:{number + 1}: a rule without a comment saying why"


def check() -> int:
    value_sets: list[tuple[str, list[str], Callable[[list[Doc]], None]]] = [
        ("default values", [], defaults),
        ("global.singleNamespace.create=false", ["global.singleNamespace.create=false"], no_single_namespace),
        ("replicas=2", ["replicas=2"], two_replicas),
        ("global.monitoredID=team-a", ["global.monitoredID=team-a"], custom_monitored_id),
    ]
    checks = Checks()
    print(f"Helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), "
          f"schemas of Kubernetes {', '.join(KUBE_VERSIONS)}", flush=True)
    for name, assignments, expect in value_sets:
        values = set_values(assignments)
        checks.run(f"helm lint --strict ({name})", lambda: lint(values))
        docs: list[Doc] = []

        def rendered() -> None:
            docs.extend(render(values, include_crds=True))

        checks.run(f"helm template ({name})", rendered)
        if not docs:
            continue
        checks.run(f"{len(docs)} manifests valid against the Kubernetes schemas ({name})", lambda: validate(docs))
        checks.run(f"restricted Pod Security, probes, requests ({name})", lambda: restricted_pod_security(docs))
        checks.run(f"what {name} means", lambda: expect(docs))
        checks.run(f"NOTES.txt renders ({name})", lambda: notes(values))
    checks.run("values.schema.json refuses invalid values", invalid_values_are_refused)
    checks.run("the chart ships the CRD", crds_match_code)
    checks.run("the Dockerfile matches the chart", dockerfile_matches_chart)
    checks.run("every RBAC rule has a comment saying why", every_rbac_rule_says_why)
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check")
    render_parser = sub.add_parser("render")
    render_parser.add_argument("--set", action="append", default=[], dest="assignments")
    render_parser.add_argument("--include-crds", action="store_true")
    # Another release name and namespace, so that several installs can share one cluster.
    render_parser.add_argument("--release", default=RELEASE)
    render_parser.add_argument("--namespace", default=NAMESPACE)
    args = parser.parse_args()
    if args.command == "check":
        return check()
    docs = render(set_values(args.assignments), include_crds=args.include_crds,
                  release=args.release, namespace=args.namespace)
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HELM_LOG_LEVEL", "error")
    sys.exit(main())
