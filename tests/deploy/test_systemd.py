"""deploy/systemd: the unit has the settings a raftcache node needs (its own
user, a read-only system but for its data directory, restart on failure, a
file-descriptor limit), its ExecStart uses only flags raftcache has and only
variables the example environment file sets, and `systemd-analyze verify`
accepts it (Debian's `systemd` package, which scripts/test.sh installs; never skipped).
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "raftcache.service"
DEFAULTS = REPO / "deploy" / "systemd" / "raftcache.default"
SYSUSERS = REPO / "deploy" / "systemd" / "raftcache.sysusers"
BINARY = "/usr/local/bin/raftcache"


def read_unit() -> Dict[str, Dict[str, List[str]]]:
    """The unit as {section: {key: [values]}} (a key may repeat)."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None,
                                          comment_prefixes=("#", ";"), delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    sections: Dict[str, Dict[str, List[str]]] = {}
    current = None
    # configparser would merge repeated keys: read the lines ourselves, and
    # let configparser check the syntax.
    parser.read_string(UNIT.read_text())
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def env_file() -> Dict[str, str]:
    out = {}
    for line in DEFAULTS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key] = value
    return out


def test_unit_has_the_required_settings():
    unit = read_unit()
    assert set(unit) == {"Unit", "Service", "Install"}
    service = {k: v[-1] for k, v in unit["Service"].items()}
    assert service["User"] == "raftcache" and service["Group"] == "raftcache"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/raftcache"
    assert service["StateDirectory"] == "raftcache"
    assert service["NoNewPrivileges"] == "yes" and service["PrivateTmp"] == "yes"
    assert service["Restart"] == "on-failure"
    assert int(service["LimitNOFILE"]) >= 10_000  # --maxclients 10000 and then some
    assert service["EnvironmentFile"] == "/etc/default/raftcache"
    assert service["KillSignal"] == "SIGTERM"  # a clean stop: the node restarts as itself
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0]
    # The user comes from the sysusers file.
    assert re.search(r"^u raftcache\s", SYSUSERS.read_text(), re.M)


def test_exec_start_uses_real_flags_and_the_env_file_variables(helpers):
    unit = read_unit()
    [exec_start] = unit["Service"]["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == BINARY
    known = helpers.node_flags()
    for arg in argv[1:]:
        if arg.startswith("--"):
            assert arg in known, f"raftcache has no flag {arg}"
    joined = " ".join(argv)
    assert "--data-dir /var/lib/raftcache" in joined
    # Every variable it uses is set by Environment= or the example file.
    defaults = {}
    for line in unit["Service"].get("Environment", []):
        for item in shlex.split(line):
            k, v = item.split("=", 1)
            defaults[k] = v
    example = env_file()
    used = set(re.findall(r"\$\{?(\w+)\}?", exec_start))
    assert used, exec_start
    for var in used:
        assert var in example or var in defaults, f"${var} is set nowhere"
    for required in ("RAFTCACHE_ID", "RAFTCACHE_PEERS", "RAFTCACHE_ADVERTISE"):
        assert example.get(required), required
    # The example file's flags, expanded as systemd would, parse.
    env = {**defaults, **example}
    expanded = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], exec_start)
    expanded = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], expanded)
    args = shlex.split(expanded)
    assert "--peers" in args and args[args.index("--id") + 1] == "1"
    assert all(a in known for a in args[1:] if a.startswith("--"))


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    # Never skipped: scripts/test.sh installs Debian's systemd when it is missing.
    assert shutil.which("systemd-analyze"), (
        "systemd-analyze is not installed (Debian: apt-get install systemd)"
    )
    # verify checks that ExecStart's program exists: point it at a stand-in.
    stand_in = tmp_path / "raftcache"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    unit = tmp_path / "raftcache.service"
    unit.write_text(UNIT.read_text().replace(BINARY, str(stand_in)))
    p = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    # Unknown keys and bad values are warnings with exit code 0: any output fails.
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", (p.stdout, p.stderr)
