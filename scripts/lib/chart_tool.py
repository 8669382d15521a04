"""Lints, renders and validates charts/quarks-job with real Helm (helm-python-sdk: Helm v4's Go
SDK as a library) and the Kubernetes JSON schemas (kubernetes-validate).

Run with the interpreter of target/chart-tools (scripts/lib/setup.sh ensure_chart_tools), as
host/tests/cluster/chart.rs does:

    target/chart-tools/bin/python scripts/lib/chart_tool.py check
    target/chart-tools/bin/python scripts/lib/chart_tool.py render [--values FILE] [--set k=v]... \
        [--include-crds] [--release NAME] [--namespace NS]
    target/chart-tools/bin/python scripts/lib/chart_tool.py install-check --kubeconfig FILE \
        [--values FILE] [--set k=v]... [--release NAME] [--namespace NS]

`check` exits non-zero on any finding and prints one line per check and a closing
"N passed, N failed" line. `render` prints the manifests as one YAML stream (CRDs first).
`install-check` is `helm install --dry-run=server` on that cluster: Helm checks the chart's
kubeVersion against the API server's version and renders; nothing is created. It prints JSON:
the chart's kubeVersion and the release notes.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "quarks-job"
RELEASE = "quarks-job"
NAMESPACE = "quarks-job"
# Kubernetes versions the manifests are validated against (strict: unknown fields fail): the
# oldest schemas kubernetes-validate has (1.25; the 1.24 control plane of the cluster tests takes
# the manifests themselves) and recent ones.
KUBE_VERSIONS = ["1.25.0", "1.32.0", "1.33.0"]
# ... and the versions `helm lint` renders for: the oldest supported one too.
LINT_KUBE_VERSIONS = ["1.24.0", *KUBE_VERSIONS]
# A values file with every key of the Go operator's chart at its defaults.
ORIGINAL_VALUES = ROOT / "host" / "tests" / "cluster" / "original-chart-values.yaml"

Doc = dict[str, Any]


def set_values(assignments: list[str], files: list[str] | None = None) -> dict[str, Any]:
    """Values files (-f), then Helm's own --set parsing, merged left to right."""
    values: dict[str, Any] = {}
    for file in files or []:
        values = merge(values, yaml.safe_load(Path(file).read_text()) or {})
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


def notes(values: dict[str, Any], release: str = RELEASE, namespace: str = NAMESPACE) -> str:
    rendered = helm.Chart.load(CHART).render(values, name=release, namespace=namespace, is_install=True)
    return next(v for k, v in rendered.items() if k.endswith("NOTES.txt"))


def install_check(values: dict[str, Any], kubeconfig: str, release: str, namespace: str,
                  kube_version: str | None = None) -> dict[str, Any]:
    """`helm install --dry-run=server`: Helm reads the API server's version and refuses a chart
    whose kubeVersion excludes it (before rendering); nothing is created. `kube_version` replaces
    the chart's constraint (in a copy), to show that Helm does refuse."""
    chart_dir = CHART
    if kube_version is not None:
        chart_dir = Path(tempfile.mkdtemp()) / CHART.name
        shutil.copytree(CHART, chart_dir)
        chart_yaml = chart_dir / "Chart.yaml"
        metadata = yaml.safe_load(chart_yaml.read_text())
        metadata["kubeVersion"] = kube_version
        chart_yaml.write_text(yaml.safe_dump(metadata))
    chart = helm.Chart.load(chart_dir)
    with helm.Config(namespace=namespace, kubeconfig_path=kubeconfig) as config:
        release_info = config.install(chart, release, values, namespace=namespace, dry_run="server")
    return {"kubeVersion": chart.metadata.get("kubeVersion"), "notes": release_info.get("notes", "")}


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
    for kube_version in LINT_KUBE_VERSIONS:
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
    # Helm never upgrades crds/: the operator applies its CRD (over the Go operator's too).
    assert "--apply-crd=true" in args, args
    image = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert f"--persist-output-image={image}" in args, "the output helper must run the operator's image"
    namespace = the(docs, "Namespace")
    assert namespace["metadata"]["name"] == "staging"
    assert namespace["metadata"]["labels"]["quarks.cloudfoundry.org/monitored"] == RELEASE
    helper = [d for d in docs if d["metadata"].get("namespace") == "staging"]
    assert sorted(d["kind"] for d in helper) == ["RoleBinding", "RoleBinding", "ServiceAccount"], helper
    # The output helper's ClusterRole (persistOutputClusterRole, the original's default name),
    # passed to the operator, bound to the helper's account in staging; the operator holds only
    # `bind` on it, and none of its pod rights.
    helper_role = "qjob-persist-output"
    assert f"--persist-output-cluster-role={helper_role}" in args, args
    helper_rules = [c for c in kind(docs, "ClusterRole") if c["metadata"]["name"] == helper_role][0]["rules"]
    assert helper_rules == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
                            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}], helper_rules
    assert [b["roleRef"] for b in helper if b["kind"] == "RoleBinding" and b["metadata"]["name"] == "quarks-job-persist-output"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": helper_role}], helper
    operator_rules = [r for c in kind(docs, "ClusterRole") + kind(docs, "Role") if c["metadata"]["name"] != helper_role
                      for r in c["rules"]]
    assert not [r for r in operator_rules if "pods" in r["resources"] or "roles" in r["resources"]], operator_rules
    binds = [r for r in operator_rules if "bind" in r["verbs"]]
    assert binds == [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                      "resourceNames": [helper_role], "verbs": ["bind"]}], binds
    # The operator's rights in staging come from a RoleBinding to its namespace ClusterRole.
    namespace_role = f"{RELEASE}-namespace"
    assert f"--namespace-cluster-role={namespace_role}" in args, args
    assert [b["roleRef"] for b in helper if b["kind"] == "RoleBinding" and b["metadata"]["name"] != "quarks-job-persist-output"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": namespace_role}], helper
    assert not [r for r in kind(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")], \
        "no leader-election Role with one replica"
    crb = the(docs, "ClusterRoleBinding")
    assert crb["roleRef"]["name"] == RELEASE, "only the cluster-wide ClusterRole is bound cluster-wide"
    cluster_rules = the(docs, "ClusterRoleBinding") and [
        c for c in kind(docs, "ClusterRole") if c["metadata"]["name"] == RELEASE][0]["rules"]
    assert not [r for r in cluster_rules if {"secrets", "jobs", "configmaps"} & set(r["resources"])], cluster_rules
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
    roles = [r for r in kind(docs, "Role") if r["metadata"]["namespace"] == NAMESPACE
             and r["metadata"]["name"].endswith("-leader-election")]
    assert len(roles) == 1, roles
    leases = [rule for rule in roles[0]["rules"] if "leases" in rule["resources"]]
    assert any(f"quarks-job-{RELEASE}" in rule.get("resourceNames", []) for rule in leases), leases
    bindings = [b for b in kind(docs, "RoleBinding") if b["metadata"]["namespace"] == NAMESPACE
                and b["metadata"]["name"].endswith("-leader-election")]
    assert [b["roleRef"]["name"] for b in bindings] == [roles[0]["metadata"]["name"]]


def custom_monitored_id(docs: list[Doc]) -> None:
    assert "--monitored-id=team-a" in args_of(docs)
    labels = the(docs, "Namespace")["metadata"]["labels"]
    assert labels["quarks.cloudfoundry.org/monitored"] == "team-a", labels


# The credentials the original-values checks add (global.image.credentials).
CREDENTIALS = {"username": "robot", "password": "s3cret", "servername": "registry.example:5000"}


def original_values(docs: list[Doc]) -> None:
    """The Go operator's chart's values: each key honoured, mapped or (NOTES) deprecated."""
    args = args_of(docs)
    pod = the(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # The default monitored id is the original's (release quarks-job in namespace quarks-job).
    assert f"--monitored-id={RELEASE}" in args, args
    assert the(docs, "Namespace")["metadata"]["labels"]["quarks.cloudfoundry.org/monitored"] == RELEASE
    # applyCRD, maxWorkers, logLevel honoured.
    assert "--apply-crd=true" in args and "--max-workers=1" in args and "--log-level=debug" in args, args
    # image.org cfcontainerization (the Go operator's) is mapped to this operator's image.
    image = container["image"]
    assert image.startswith("ghcr.io/quarks-job/quarks-job:") and "foobar" not in image, image
    assert f"--persist-output-image={image}" in args, args
    # global.image.pullPolicy: the operator's container and the output helper's.
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert "--persist-output-image-pull-policy=IfNotPresent" in args, args
    # global.image.credentials: a dockerconfigjson Secret (the original's name and content) for
    # the operator's pod and, in the created namespace too, for the helper in pods with output.
    sa = pod["serviceAccountName"]
    pull_secret = f"{sa}-pull-secret"
    secrets = kind(docs, "Secret")
    assert sorted((d["metadata"]["namespace"], d["metadata"]["name"]) for d in secrets) == sorted(
        [(NAMESPACE, pull_secret), ("staging", pull_secret)]), secrets
    for secret in secrets:
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
        auth = base64.b64encode(f"{CREDENTIALS['username']}:{CREDENTIALS['password']}".encode()).decode()
        assert config == {"auths": {CREDENTIALS["servername"]: {
            "username": CREDENTIALS["username"], "password": CREDENTIALS["password"], "auth": auth}}}, config
    assert pod["imagePullSecrets"] == [{"name": pull_secret}], pod.get("imagePullSecrets")
    assert f"--persist-output-image-pull-secret={pull_secret}" in args, args
    # persistOutputClusterRole.*: the helper's ClusterRole under the original's name, bound in the
    # created namespace and passed to the operator; no namespace label naming its account.
    cluster_wide = the(docs, "ClusterRoleBinding")["roleRef"]["name"]
    assert [d["metadata"]["name"] for d in kind(docs, "ClusterRole")] == [
        cluster_wide, f"{cluster_wide}-namespace", "qjob-persist-output"]
    assert "--persist-output-cluster-role=qjob-persist-output" in args, args
    assert "quarks.cloudfoundry.org/qjob-service-account" not in the(docs, "Namespace")["metadata"]["labels"]


def original_values_notes() -> None:
    """NOTES.txt names every key of the original chart that has no effect any more, and only
    when it is set."""
    values = set_values([], [str(ORIGINAL_VALUES)])
    text = notes(values)
    for key in ["image.org=cfcontainerization", "global.contextTimeout",
                "global.meltdownDuration and global.meltdownRequeueAfter"]:
        assert f"  - {key}" in text, f"NOTES.txt does not mention {key}:\n{text}"
    # persistOutputClusterRole.* is honoured again: no "no effect" line.
    assert "  - persistOutputClusterRole" not in text, text
    assert "Image pull secret" not in text, "no credentials, no pull secret"
    with_credentials = notes(merge(values, {"global": {"image": {"credentials": CREDENTIALS}}}))
    assert "Image pull secret quarks-job-pull-secret" in with_credentials, with_credentials
    assert CREDENTIALS["password"] not in with_credentials, "NOTES.txt must not print the password"
    plain = notes({})
    assert "Go operator" not in plain, plain


def monitored_id_follows_the_original_rule() -> None:
    """The default monitored id is the Go operator's chart's full name for the same release and
    namespace: the namespace when it contains the chart name, else <release>-<chart name>."""
    cases = [
        ("quarks-job", "quarks-job", {}, "quarks-job"),
        ("relname1", "quarks", {}, "relname1-quarks-job"),
        ("quarks-job", "quarks", {}, "quarks-job-quarks-job"),
        ("foo", "quarks-job-system", {}, "quarks-job-system"),
        ("foo", "ns", {"nameOverride": "qj"}, "foo-qj"),
        ("foo", "qj-ns", {"nameOverride": "qj"}, "qj-ns"),
        ("foo", "ns", {"fullnameOverride": "bar-"}, "bar"),
        ("r" * 60, "ns", {}, ("r" * 60 + "-quarks-job")[:63]),
        ("foo", "quarks-job", {"global": {"monitoredID": "team-a"}}, "team-a"),
    ]
    for release, namespace, values, expected in cases:
        docs = render(values, include_crds=False, release=release, namespace=namespace)
        args = args_of(docs)
        assert f"--monitored-id={expected}" in args, (release, namespace, values, args)
        label = the(docs, "Namespace")["metadata"]["labels"]["quarks.cloudfoundry.org/monitored"]
        assert label == expected, (release, namespace, values, label)


def single_namespace_parts() -> None:
    """singleNamespace.createNamespace / createAccount (the original chart's) pick the parts."""
    no_namespace = render({"singleNamespace": {"createNamespace": False}}, include_crds=False)
    assert not kind(no_namespace, "Namespace")
    assert sorted(d["kind"] for d in no_namespace if d["metadata"].get("namespace") == "staging") == [
        "RoleBinding", "RoleBinding", "ServiceAccount"]
    no_account = render({"singleNamespace": {"createAccount": False}}, include_crds=False)
    assert the(no_account, "Namespace")["metadata"]["name"] == "staging"
    # Only the operator's own RoleBinding there.
    assert [(d["kind"], d["roleRef"]["kind"]) for d in no_account if d["metadata"].get("namespace") == "staging"] == [
        ("RoleBinding", "ClusterRole")]


def persist_output_cluster_role() -> None:
    """persistOutputClusterRole.name names the helper's ClusterRole everywhere (the operator's flag,
    its `bind` rule, the created namespace's RoleBinding); create=false leaves it out (NOTES says
    it must exist)."""
    docs = render({"persistOutputClusterRole": {"name": "team-helper"}}, include_crds=False)
    assert "--persist-output-cluster-role=team-helper" in args_of(docs)
    assert "team-helper" in [c["metadata"]["name"] for c in kind(docs, "ClusterRole")]
    assert [r["resourceNames"] for c in kind(docs, "ClusterRole") for r in c["rules"] if "bind" in r["verbs"]] == [
        ["team-helper"]]
    assert [b["roleRef"]["name"] for b in kind(docs, "RoleBinding") if b["metadata"]["name"] == "quarks-job-persist-output"] == [
        "team-helper"]
    values = {"persistOutputClusterRole": {"create": False}}
    without = render(values, include_crds=False)
    assert "qjob-persist-output" not in [c["metadata"]["name"] for c in kind(without, "ClusterRole")]
    assert "--persist-output-cluster-role=qjob-persist-output" in args_of(without)
    assert "quarks-job persist-output-cluster-role --name qjob-persist-output" in notes(values)
    assert "persist-output-cluster-role --name" not in notes({})


def oci_registry_flags() -> None:
    """operator.oci.* become the operator's registry flags; none by default."""
    default_args = args_of(render({}, include_crds=False))
    assert not [a for a in default_args if a.startswith(("--policy-allow-registry", "--policy-allow-private"))]
    args = args_of(render({"operator": {"oci": {"allowedRegistries": ["ghcr.io", "registry.local:5000"],
                                                "allowPrivateAddresses": True}}}, include_crds=False))
    assert [a for a in args if a.startswith("--policy-allow-")] == [
        "--policy-allow-registry=ghcr.io", "--policy-allow-registry=registry.local:5000",
        "--policy-allow-private-addresses"], args


def invalid_values_are_refused() -> None:
    chart = helm.Chart.load(CHART)
    for bad in [{"logFormat": "xml"}, {"maxWorkers": 0}, {"unknownKey": 1}, {"global": {"monitoredID": "not a label"}},
                {"global": {"image": {"credentials": {"username": "u", "password": "p"}}}},
                {"persistOutputClusterRole": {"nmae": "x"}}, {"singleNamespace": {"create": True}},
                {"operator": {"oci": {"allowedRegistries": ["https://ghcr.io/x"]}}}]:
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
    credentials = [f"global.image.credentials.{k}={v}" for k, v in CREDENTIALS.items()]
    value_sets: list[tuple[str, list[str], list[str], Callable[[list[Doc]], None]]] = [
        ("default values", [], [], defaults),
        ("global.singleNamespace.create=false", ["global.singleNamespace.create=false"], [], no_single_namespace),
        ("replicas=2", ["replicas=2"], [], two_replicas),
        ("global.monitoredID=team-a", ["global.monitoredID=team-a"], [], custom_monitored_id),
        ("the original chart's values and credentials", credentials, [str(ORIGINAL_VALUES)], original_values),
    ]
    checks = Checks()
    print(f"Helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), "
          f"schemas of Kubernetes {', '.join(KUBE_VERSIONS)}, lint for {', '.join(LINT_KUBE_VERSIONS)}", flush=True)
    for name, assignments, files, expect in value_sets:
        values = set_values(assignments, files)
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
    checks.run("NOTES.txt names the original chart's keys without effect", original_values_notes)
    checks.run("the default monitored id follows the original chart's rule", monitored_id_follows_the_original_rule)
    checks.run("singleNamespace.createNamespace/createAccount", single_namespace_parts)
    checks.run("persistOutputClusterRole.create/name", persist_output_cluster_role)
    checks.run("operator.oci.* become --policy-allow-* flags", oci_registry_flags)
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
    render_parser.add_argument("--values", "-f", action="append", default=[], dest="files")
    render_parser.add_argument("--set", action="append", default=[], dest="assignments")
    render_parser.add_argument("--include-crds", action="store_true")
    # Another release name and namespace, so that several installs can share one cluster.
    render_parser.add_argument("--release", default=RELEASE)
    render_parser.add_argument("--namespace", default=NAMESPACE)
    install_parser = sub.add_parser("install-check")
    install_parser.add_argument("--kubeconfig", required=True)
    install_parser.add_argument("--values", "-f", action="append", default=[], dest="files")
    install_parser.add_argument("--set", action="append", default=[], dest="assignments")
    install_parser.add_argument("--release", default=RELEASE)
    install_parser.add_argument("--namespace", default=NAMESPACE)
    install_parser.add_argument("--chart-kube-version", help="check a copy of the chart with this kubeVersion")
    args = parser.parse_args()
    if args.command == "check":
        return check()
    if args.command == "install-check":
        result = install_check(set_values(args.assignments, args.files), args.kubeconfig,
                               args.release, args.namespace, args.chart_kube_version)
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    docs = render(set_values(args.assignments, args.files), include_crds=args.include_crds,
                  release=args.release, namespace=args.namespace)
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HELM_LOG_LEVEL", "error")
    sys.exit(main())
