"""deploy/k8s and deploy/docker-compose.yml agree with each other and with
raftcache's flags, read as files (no cluster, no Docker).

Kubernetes: every manifest parses; the StatefulSets' selectors match their
pod labels and name the headless Service; the Services and the
PodDisruptionBudget select every raftcache pod; the ports in the args, the
containerPorts, the probes and the Services' targetPorts agree; every $(VAR)
in the args is defined; the --peers list names each pod of the StatefulSet
(member N+1 for pod N, as --id-from-hostname counts) under the headless
Service at the Raft port; the scale-up StatefulSet joins the first three and
numbers its pods after them; the pods run as the image's user; every flag
they pass exists in crates/node/src/config.rs.

Compose: each node advertises its service name, lists the same peers (the
three services at the Raft port), has its own data volume and a distinct
published port, and checks its health with raftcachectl.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "deploy" / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "image" / "Dockerfile"

# raftcache's defaults (crates/node/src/config.rs).
DEFAULT_PORTS = {"--port": 6379, "--admin-port": 7379, "--raft-port": 7380}
PORT_NAMES = {"--port": "resp", "--admin-port": "admin", "--raft-port": "raft"}


# --- reading ------------------------------------------------------------------------


def k8s_objects() -> List[dict]:
    """Every object of every manifest under deploy/k8s (not the kustomization)."""
    objects = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                doc["__file__"] = str(path.relative_to(REPO))
                objects.append(doc)
    return objects


def of_kind(objects: List[dict], kind: str) -> Dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def flags(args: List[str]) -> Dict[str, str]:
    """`--name=value`, `--name value` and bare `--name` → {--name: value or ""}."""
    out: Dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        assert arg.startswith("--"), f"not a flag: {arg!r} in {args}"
        if "=" in arg:
            name, value = arg.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            name, value = arg, args[i + 1]
            i += 1
        else:
            name, value = arg, ""
        assert name not in out, f"{name} given twice in {args}"
        out[name] = value
        i += 1
    return out


def expand(value: str, env: Dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (every VAR must be defined)."""
    def one(m):
        assert m.group(1) in env, f"$({m.group(1)}) is not defined in the container's env"
        return env[m.group(1)]
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, value)


def selects(selector: Dict[str, str], labels: Dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def parse_peers(value: str) -> Dict[int, Tuple[str, int]]:
    """--peers `1=host:7380,…` → {1: (host, 7380)}."""
    out = {}
    for item in value.split(","):
        member, addr = item.split("=", 1)
        host, port = addr.rsplit(":", 1)
        out[int(member)] = (host, int(port))
    return out


def parse_addrs(value: str) -> List[Tuple[str, int]]:
    return [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in value.split(",")]


def image_uid() -> int:
    user = re.search(r"^USER\s+(\S+)", DOCKERFILE.read_text(), re.M).group(1)
    return int(user.split(":")[0])


# --- Kubernetes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s():
    objects = k8s_objects()
    return {
        "all": objects,
        "sts": of_kind(objects, "StatefulSet"),
        "svc": of_kind(objects, "Service"),
        "pdb": of_kind(objects, "PodDisruptionBudget"),
        "cm": of_kind(objects, "ConfigMap"),
    }


class Pod:
    """A StatefulSet's pod template, with its args expanded for one pod."""

    def __init__(self, sts: dict, configmaps: Dict[str, dict]):
        self.sts = sts
        spec = sts["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in spec["containers"]}
        assert list(containers) == ["raftcache"], containers
        self.spec = spec
        self.c = containers["raftcache"]
        self.labels = sts["spec"]["template"]["metadata"]["labels"]
        self.ports = {p["name"]: p["containerPort"] for p in self.c["ports"]}
        self.env: Dict[str, str] = {}
        self.env_refs: Dict[str, dict] = {}
        for source in self.c.get("envFrom", []):
            name = source["configMapRef"]["name"]
            assert name in configmaps, f"envFrom names ConfigMap {name}, which is not defined"
            self.env.update(configmaps[name]["data"])
        for e in self.c.get("env", []):
            if "value" in e:
                self.env[e["name"]] = e["value"]
            else:
                self.env_refs[e["name"]] = e["valueFrom"]

    def flags(self, pod_name: str) -> Dict[str, str]:
        env = dict(self.env)
        assert self.env_refs.get("POD_NAME") == {"fieldRef": {"fieldPath": "metadata.name"}}
        env["POD_NAME"] = pod_name
        return {k: expand(v, env) for k, v in flags(self.c["args"]).items()}

    def pod_names(self) -> List[str]:
        start = self.sts["spec"].get("ordinals", {}).get("start", 0)
        return [f"{self.sts['metadata']['name']}-{i}"
                for i in range(start, start + self.sts["spec"]["replicas"])]


def member_from_hostname(pod_name: str) -> int:
    """What --id-from-hostname makes of a hostname: the trailing -N, + 1."""
    return int(pod_name.rsplit("-", 1)[1]) + 1


def test_every_manifest_parses_with_the_expected_objects(k8s):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in k8s["all"])
    assert kinds == [
        ("ConfigMap", "raftcache-config"),
        ("PodDisruptionBudget", "raftcache"),
        ("Service", "raftcache"),
        ("Service", "raftcache-headless"),
        ("StatefulSet", "raftcache"),
        ("StatefulSet", "raftcache-join"),
    ], kinds
    for o in k8s["all"]:
        assert "namespace" not in o["metadata"], f"{o['__file__']}: pinned to a namespace"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = sorted(kustomization["resources"])
    top = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert listed == top, "the kustomization applies every top-level manifest (not scale-up/)"


def test_statefulsets_select_their_pods_and_name_the_headless_service(k8s):
    headless = k8s["svc"]["raftcache-headless"]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    formed = k8s["sts"]["raftcache"]["spec"]
    assert formed["replicas"] == 3 and formed["podManagementPolicy"] == "Parallel"
    selectors = []
    for name, sts in k8s["sts"].items():
        spec = sts["spec"]
        assert spec["serviceName"] == "raftcache-headless", name
        match = spec["selector"]["matchLabels"]
        assert selects(match, spec["template"]["metadata"]["labels"]), name
        selectors.append((name, match))
        # Every pod is selected by both Services and the PDB.
        labels = spec["template"]["metadata"]["labels"]
        for svc_name, svc in k8s["svc"].items():
            assert selects(svc["spec"]["selector"], labels), (svc_name, name)
        pdb = k8s["pdb"]["raftcache"]["spec"]
        assert pdb["maxUnavailable"] == 1
        assert selects(pdb["selector"]["matchLabels"], labels), name
        # The volume the data directory is on.
        claims = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
        mounts = {m["name"]: m["mountPath"] for m in Pod(sts, k8s["cm"]).c["volumeMounts"]}
        assert "data" in claims and mounts["data"] == "/data", (claims, mounts)
    # No StatefulSet's selector takes the other's pods.
    for name, match in selectors:
        for other, sts in k8s["sts"].items():
            if other != name:
                assert not selects(match, sts["spec"]["template"]["metadata"]["labels"]), (
                    f"{name}'s selector also matches {other}'s pods")


def test_ports_agree_between_args_container_probes_and_services(k8s):
    for name, sts in k8s["sts"].items():
        pod = Pod(sts, k8s["cm"])
        f = pod.flags(pod.pod_names()[0])
        for flag, port_name in PORT_NAMES.items():
            port = int(f.get(flag, DEFAULT_PORTS[flag]))
            assert pod.ports[port_name] == port, (name, flag, pod.ports)
        assert pod.ports["metrics"] == 9379  # --metrics-port's default
        assert pod.c["readinessProbe"]["grpc"]["port"] == pod.ports["admin"]
        for probe in ("livenessProbe", "startupProbe"):
            assert pod.c[probe]["tcpSocket"]["port"] in (pod.ports["resp"], "resp"), probe
        assert f["--bind"] == "0.0.0.0"
        for svc_name, svc in k8s["svc"].items():
            for p in svc["spec"]["ports"]:
                target = p.get("targetPort", p["port"])
                number = pod.ports[target] if isinstance(target, str) else target
                assert number in pod.ports.values(), (svc_name, p)
                assert p["name"] in pod.ports and pod.ports[p["name"]] == number, (svc_name, p)
    client = {p["name"]: p["port"] for p in k8s["svc"]["raftcache"]["spec"]["ports"]}
    assert client == {"resp": 6379}
    headless = {p["name"] for p in k8s["svc"]["raftcache-headless"]["spec"]["ports"]}
    assert headless >= {"admin", "raft"}


def test_peers_are_the_statefulset_pods_under_the_headless_service(k8s):
    sts = k8s["sts"]["raftcache"]
    pod = Pod(sts, k8s["cm"])
    raft_port = pod.ports["raft"]
    names = pod.pod_names()
    expected = {member_from_hostname(n): (f"{n}.raftcache-headless", raft_port) for n in names}
    assert expected.keys() == {1, 2, 3}
    for name in names:
        f = pod.flags(name)
        assert "--id-from-hostname" in f and "--id" not in f
        assert "--join" not in f
        assert parse_peers(f["--peers"]) == expected
        assert f["--advertise"] == f"{name}.{sts['spec']['serviceName']}"
        assert f["--data-dir"] == "/data"
        assert f["--appendfsync"] in ("always", "everysec", "no")


def test_scale_up_joins_the_first_members_with_the_next_ids(k8s):
    formed = Pod(k8s["sts"]["raftcache"], k8s["cm"])
    joined_sts = k8s["sts"]["raftcache-join"]
    joined = Pod(joined_sts, k8s["cm"])
    # Its pods are numbered after the first StatefulSet's: members 4, 5.
    assert joined_sts["spec"]["ordinals"]["start"] == k8s["sts"]["raftcache"]["spec"]["replicas"]
    first_ids = [member_from_hostname(n) for n in formed.pod_names()]
    new_ids = [member_from_hostname(n) for n in joined.pod_names()]
    assert new_ids == [4, 5] and not set(first_ids) & set(new_ids)
    peers = parse_peers(formed.flags(formed.pod_names()[0])["--peers"])
    for name in joined.pod_names():
        f = joined.flags(name)
        assert "--peers" not in f
        assert parse_addrs(f["--join"]) == [peers[m] for m in sorted(peers)]
        assert f["--advertise"] == f"{name}.raftcache-headless"
    # The same container otherwise: same image, ports, probes, env.
    for key in ("image", "ports", "readinessProbe", "livenessProbe", "startupProbe", "env",
                "envFrom", "volumeMounts", "securityContext"):
        assert formed.c[key] == joined.c[key], key
    strip = lambda args: [a for a in args if not a.startswith(("--peers", "--join"))]  # noqa: E731
    assert strip(formed.c["args"]) == strip(joined.c["args"])


def test_pods_run_as_the_image_user_with_secrets_from_a_secret(k8s):
    uid = image_uid()
    for name, sts in k8s["sts"].items():
        pod = Pod(sts, k8s["cm"])
        sc = pod.spec["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["runAsUser"] == uid and sc["fsGroup"] == uid, (name, sc)
        assert pod.c["securityContext"]["allowPrivilegeEscalation"] is False
        for var in ("RAFTCACHE_PEER_SECRET", "RAFTCACHE_ADMIN_TOKEN", "RAFTCACHE_REQUIREPASS"):
            ref = pod.env_refs[var]["secretKeyRef"]
            assert ref["name"] == "raftcache-secrets" and ref["optional"] is True, (name, var)
        # A secret never sits in the ConfigMap.
        assert not {"RAFTCACHE_PEER_SECRET", "RAFTCACHE_ADMIN_TOKEN",
                    "RAFTCACHE_REQUIREPASS"} & set(pod.env)


# --- Compose ------------------------------------------------------------------------------


def test_compose_nodes_address_each_other_by_service_name():
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert sorted(services) == ["node1", "node2", "node3"]
    published = set()
    expected_peers = None
    for i, (name, svc) in enumerate(sorted(services.items()), start=1):
        f = flags([str(a) for a in svc["command"]])
        assert f["--id"] == str(i)
        assert f["--advertise"] == name and f["--bind"] == "0.0.0.0"
        assert f["--data-dir"] == "/data" and f["--appendfsync"] == "everysec"
        raft_port = int(f.get("--raft-port", DEFAULT_PORTS["--raft-port"]))
        peers = parse_peers(f["--peers"])
        expected_peers = expected_peers or {m: (f"node{m}", raft_port) for m in (1, 2, 3)}
        assert peers == expected_peers, name
        assert svc["volumes"] == [f"{name}-data:/data"]
        assert f"{name}-data" in doc["volumes"]
        assert svc["networks"] == ["raftcache"] and "raftcache" in doc["networks"]
        assert svc["restart"] == "unless-stopped"
        assert svc["healthcheck"]["test"] == [
            "CMD", "/usr/local/bin/raftcachectl", "--endpoints",
            f"127.0.0.1:{int(f.get('--admin-port', DEFAULT_PORTS['--admin-port']))}", "health"]
        [port] = svc["ports"]
        m = re.fullmatch(r"\$\{RAFTCACHE_PUBLISH_ADDR:-127\.0\.0\.1\}:"
                         r"\$\{RAFTCACHE_PORT_(\d):-(\d+)\}:(\d+)", port)
        assert m, port
        assert int(m.group(1)) == i and int(m.group(2)) == 6378 + i
        assert int(m.group(3)) == int(f.get("--port", DEFAULT_PORTS["--port"]))
        published.add(m.group(2))
        assert svc["image"] == "${RAFTCACHE_IMAGE:-raftcache:dev}"
    assert len(published) == 3


def test_every_flag_in_the_manifests_exists(k8s, helpers):
    known = helpers.node_flags()
    for name, sts in k8s["sts"].items():
        for flag in flags(sts["spec"]["template"]["spec"]["containers"][0]["args"]):
            assert flag in known, f"{name}: raftcache has no flag {flag}"
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, svc in compose["services"].items():
        for flag in flags([str(a) for a in svc["command"]]):
            assert flag in known, f"{name}: raftcache has no flag {flag}"
