"""Shared by the benchmark drivers: labs with their own prefixes (always torn
down), the machine's description, medians.

The benchmarks run the build in build-bench/ (ETTM_BUILD overrides it), set up
with `meson setup build-bench -Dbench_hooks=true`: only that option compiles the
benchmarks' commands (store.bench, switch.bench) into ettmd. ensure_build()
sets it up and builds it when it is missing."""

import json
import os
import platform
import re
import random
import socket
import statistics
import string
import subprocess
import time
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(REPO, "lab", "ettm-lab")
BENCH_BUILD = os.path.join(REPO, "build-bench")
BUILD = os.environ.get("ETTM_BUILD", BENCH_BUILD)


def ensure_build():
    """Sets up and builds build-bench (with the bench hooks) if it is missing;
    a build named by ETTM_BUILD is used as it is."""
    if BUILD != BENCH_BUILD or os.path.exists(os.path.join(BUILD, "src", "ettmd", "ettmd")):
        return
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        subprocess.run(["meson", "setup", BUILD, "-Dbench_hooks=true"], cwd=REPO, check=True)
    subprocess.run(["ninja", "-C", BUILD, "-j2"], cwd=REPO, check=True)


def prefix(tag):
    return tag + "".join(random.choice(string.ascii_lowercase) for _ in range(4))


class Lab:
    def __init__(self, tag, *up_args):
        self.prefix = prefix(tag)
        self.up_args = up_args

    def __enter__(self):
        ensure_build()
        try:
            self.lab("up", "--build-dir", BUILD, *self.up_args)
        except BaseException:
            # A start that failed or was interrupted (a time limit's SIGINT)
            # leaves part of the lab behind, and __exit__ is not called.
            self.lab("down", check=False)
            raise
        return self

    def __exit__(self, *exc):
        self.lab("down", check=False)

    def lab(self, cmd, *args, check=True, timeout=300):
        p = subprocess.run([LAB, cmd, "--prefix", self.prefix] + list(args),
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"ettm-lab {cmd} {' '.join(args)}: {p.stderr.strip()}")
        return p

    def ns(self, name):
        return f"{self.prefix}-{name}"

    def exec(self, name, *cmd, timeout=120):
        return self.lab("exec", name, "--", *cmd, timeout=timeout)

    def popen(self, ns, *cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.ns(ns)] + list(cmd), **kw)

    def socket(self, host):
        return f"/run/ettm-lab/{self.prefix}/{host}/ettmd.sock"

    def call(self, host, cmd, args=None, timeout=120):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(self.socket(host))
        s.sendall((json.dumps({"id": 1, "cmd": cmd, "args": args or {}}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            d = s.recv(1 << 16)
            if not d:
                break
            buf += d
        s.close()
        r = json.loads(buf)
        if not r["ok"]:
            raise RuntimeError(f"{host} {cmd}: {r['error']}")
        return r["result"]


def machine():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def header(title, argv):
    return (f"## {title}\n\n"
            f"- command: `{' '.join([os.path.relpath(os.path.abspath(argv[0]), REPO)] + argv[1:])}`\n"
            f"- machine: {machine()}\n"
            f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")


def median(xs):
    return statistics.median(xs)


def wait_listening(lab, ns, port, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["ip", "netns", "exec", lab.ns(ns), "ss", "-ltnu"],
                             capture_output=True, text=True).stdout
        if f":{port} " in out:
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} in {ns}")


def leader(lab, hosts):
    """The host among @hosts whose agent says it leads, or None."""
    for h in hosts:
        try:
            if lab.call(h, "cluster", timeout=2)["state"] == "leader":
                return h
        except (OSError, RuntimeError, ValueError):
            pass
    return None


def wait(what, fn, timeout=30, interval=0.05):
    """fn()'s first true value, polled every @interval for @timeout s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = fn()
        if r:
            return r
        time.sleep(interval)
    raise RuntimeError(f"{what}: not within {timeout} s")


def log_times(lab, host, pattern, after):
    """The times of the lines of @host's agent log that match @pattern,
    after @after (seconds since the epoch)."""
    times = []
    with open(f"/run/ettm-lab/{lab.prefix}/{host}/ettmd.log", errors="replace") as f:
        for line in f:
            if re.search(pattern, line):
                t = datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f")
                t = t.replace(tzinfo=timezone.utc).timestamp()
                if t > after:
                    times.append(t)
    return times


def switches_converged(lab, host, switches=2):
    """One master per switch, and every switch's flows as desired."""
    try:
        sw = lab.call(host, "switches", timeout=5)["switches"]
        if any([a["role"] for a in s["agents"]].count("master") != 1 for s in sw):
            return False
        for s in range(1, switches + 1):
            f = lab.call(host, "flows", {"switch": f"s{s}"}, timeout=5)
            if f["missing"] or f["unexpected"]:
                return False
        return True
    except (OSError, RuntimeError, ValueError):
        return False


def failover(lab, hosts, converged, switches=2):
    """kill -9 of the leader to the last switch reconciled by the new master
    (its log says when the barrier after the reconciliation returned), and
    to its last mastership claim, in ms; the old leader is started again
    and converged(lab, host) awaited."""
    old = wait("a leader", lambda: leader(lab, hosts))
    wait("converged", lambda: converged(lab, old), 60, 0.2)
    voters = [m["name"] for m in lab.call(old, "cluster")["members"] if m["role"] == "voter"]
    rest = [h for h in voters if h != old]
    t0 = time.time()
    lab.lab("kill", old)
    new = wait("a new leader", lambda: leader(lab, rest), 30, 0.02)
    done = wait("reconciled", lambda: (lambda t: t if len(t) >= switches else None)(
        log_times(lab, new, r"switch \d+: reconciled as master of term", t0)), 20)
    claimed = log_times(lab, new, r"switch \d+: master \(term", t0)
    lab.lab("start", old)
    wait("converged again", lambda: converged(lab, new), 60, 0.2)
    return (max(done[:switches]) - t0) * 1000, (max(claimed[:switches]) - t0) * 1000
