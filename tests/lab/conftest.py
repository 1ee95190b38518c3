"""Fixtures for the lab tests: labs of namespaces made with ettm-lab, each
with its own prefix, always torn down (even when a test fails)."""

import json
import os
import random
import shutil
import string
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(REPO, "lab", "ettm-lab")
BUILD = os.environ.get("ETTM_BUILD", os.path.join(REPO, "build"))
ETTMD = os.path.join(BUILD, "src", "ettmd", "ettmd")
ETTMCTL = os.path.join(BUILD, "src", "ettmctl", "ettmctl")


def run_and_expect(fn, timeout=10.0, interval=0.1, what="condition"):
    """Polls fn() until it returns something true; fails with the last value."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
        except Exception as e:  # noqa: BLE001 - keep polling, report the last
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout} s (last: {last!r})")


class LabHandle:
    def __init__(self, prefix, hosts):
        self.prefix = prefix
        self.hosts = hosts

    def lab(self, *args, check=True, timeout=120):
        p = subprocess.run([LAB] + list(args[:1]) + ["--prefix", self.prefix] + list(args[1:]),
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"ettm-lab {' '.join(args)}: exit {p.returncode}\n{p.stdout}{p.stderr}")
        return p

    def exec(self, name, *cmd, check=True, timeout=60):
        return self.lab("exec", name, "--", *cmd, check=check, timeout=timeout)

    def aee(self, host, *cmd, check=True, timeout=60):
        return self.lab("aee", host, "--", *cmd, check=check, timeout=timeout)

    def popen(self, name, *cmd):
        return subprocess.Popen([LAB, "exec", "--prefix", self.prefix, name, "--"] + list(cmd),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ctl(self, host, *args, check=True):
        return self.lab("ctl", host, "--", *args, check=check)

    def ctl_json(self, host, *args):
        return json.loads(self.ctl(host, "--json", *args).stdout)

    def counters(self, host):
        return self.ctl_json(host, "status")["datapath"]["counters"]

    def nft_counters(self, host):
        out = self.aee(host, "nft", "-j", "list", "counters", "table", "inet", "ettm").stdout
        return {c["counter"]["name"]: c["counter"]["packets"]
                for c in json.loads(out)["nftables"] if "counter" in c}

    def up(self, *args):
        return self.lab("up", *args, timeout=180)

    def down(self):
        return self.lab("down", check=False)


def _prefix():
    return "t" + "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(5))


@pytest.fixture(scope="session", autouse=True)
def _needs_root_and_build():
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces)")
    for path in (ETTMD, ETTMCTL):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} is not built (make build)")
    for tool in ("ovs-vswitchd", "iperf3", "nft"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (scripts/install-deps.sh)")


@pytest.fixture
def make_lab():
    """make_lab(hosts=3, '--switches', '2', ...) brings a lab up; every lab
    made is torn down at the end of the test, whatever happened."""
    made = []

    def make(hosts=3, *args):
        h = LabHandle(_prefix(), hosts)
        made.append(h)
        h.up("--hosts", str(hosts), *args)
        return h
    yield make
    for h in made:
        h.down()
