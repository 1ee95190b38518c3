"""The chaos test's short seeded run (tests/chaos/chaos.py): a lab of its
own, random faults, and the check that no acknowledged write is lost, no
term has two leaders, no switch two masters, and all hosts agree at the end.

CHAOS_SECONDS, CHAOS_SEED and CHAOS_KINDS in the environment change the
run; `make chaos SECONDS=600` runs it long."""

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("ETTM_BUILD", os.path.join(REPO, "build"))

# The seed and the kinds of the short run in `make check` (tests/chaos/README.md
# says why): every kind of fault; seed 20 draws kills and four majority
# losses recovered by hand among them (it failed when a kill -9 leaked a
# TPM object). CHAOS_KINDS=a,b limits the kinds.
SECONDS = int(os.environ.get("CHAOS_SECONDS", "100"))
SEED = int(os.environ.get("CHAOS_SEED", "20"))
KINDS = os.environ.get("CHAOS_KINDS", "all")


def test_chaos_short_seeded_run(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the chaos test needs root (its lab makes network namespaces)")
    for path in (os.path.join(BUILD, "src", "ettmd", "ettmd"),
                 os.path.join(BUILD, "src", "ettmctl", "ettmctl")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} is not built (make build)")
    for tool in ("ovs-vswitchd", "swtpm", "nft", "ping"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (scripts/install-deps.sh)")
    cmd = [sys.executable, os.path.join(HERE, "chaos.py"), "--seconds", str(SECONDS),
           "--seed", str(SEED), "--hosts", "5", "--build-dir", BUILD,
           "--out", str(tmp_path / "chaos")]
    if KINDS != "all":
        cmd += ["--kinds", KINDS]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=SECONDS + 420)
    report = tmp_path / "chaos" / "report.md"
    text = report.read_text() if report.exists() else p.stdout + p.stderr
    assert p.returncode == 0, f"chaos run failed (exit {p.returncode}):\n{text}"
