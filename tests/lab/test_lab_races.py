"""ettm-lab's own state: commands run at once against one lab lose nothing
of each other's changes, and an interrupted `up` leaves no process behind."""

import glob
import json
import os
import signal
import subprocess
import time

from conftest import LAB, _prefix, run_and_expect


def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def ns_pids(ns):
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return {int(x) for x in out.split()}


def lab_processes(prefix):
    """Every process whose command line names the lab's run directory."""
    mine = f"/run/ettm-lab/{prefix}/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if mine in cmd and running(int(entry)):
            found.append((int(entry), cmd))
    return found


def at_once(lab, commands):
    """Runs ettm-lab commands (lists of arguments) concurrently; returns
    each one's completed process."""
    procs = [subprocess.Popen([LAB, c[0], "--prefix", lab.prefix] + c[1:],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    out = []
    for c, p in zip(commands, procs):
        stdout, stderr = p.communicate(timeout=120)
        out.append((c, p.returncode, stdout + stderr))
    return out


def test_concurrent_commands_keep_the_state_intact(make_lab):
    lab = make_lab(5, "--no-trust", "--devices", "0")
    state_file = f"/run/ettm-lab/{lab.prefix}/lab.json"
    for _ in range(2):
        # Down four agents at once (kill and stop read the state only), and
        # take a link down and up meanwhile.
        res = at_once(lab, [["kill", "h2"], ["stop", "h3"], ["kill", "h4"], ["stop", "h5"],
                            ["unplug", "h1"]])
        assert all(rc == 0 for _, rc, _ in res), res
        # Start all four at once: each records its agent's pid in lab.json.
        res = at_once(lab, [["start", "h2"], ["start", "h3"], ["start", "h4"], ["start", "h5"],
                            ["plug", "h1"]])
        assert all(rc == 0 for _, rc, _ in res), res
        assert "Traceback" not in "".join(o for _, _, o in res)
        with open(state_file) as f:
            state = json.load(f)  # intact: parses
        for n in range(1, 6):
            pid = state["agents"][str(n)]["pid"]
            # The pid recorded is the agent that runs in the host's AEE.
            assert running(pid), f"h{n}: recorded pid {pid} does not run"
            assert pid in ns_pids(f"{lab.prefix}-h{n}-aee"), f"h{n}: pid {pid} not in its AEE"
        assert not glob.glob(f"/run/ettm-lab/{lab.prefix}/lab.json.*tmp"), "a temporary file left"
    status = json.loads(lab.lab("status", "--json").stdout)
    assert all(h["alive"] for h in status["hosts"]), status


def test_interrupted_up_leaves_nothing():
    prefix = _prefix()
    up = subprocess.Popen([LAB, "up", "--prefix", prefix, "--hosts", "3"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Interrupt it while a swtpm_setup (and the swtpm it runs) provisions.
        def provisioning():
            return any("swtpm" in cmd for _, cmd in lab_processes(prefix))
        run_and_expect(provisioning, 30, 0.02, what="swtpm_setup running")
        up.send_signal(signal.SIGTERM)
        _, err = up.communicate(timeout=60)
        assert up.returncode != 0
        assert "up failed" in err, err
        left = lab_processes(prefix)
        assert not left, f"left running after an interrupted up: {left}"
        assert not os.path.exists(f"/run/ettm-lab/{prefix}")
        ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not [line for line in ns.splitlines() if line.startswith(prefix + "-")]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        subprocess.run([LAB, "down", "--prefix", prefix], capture_output=True)
        time.sleep(0)
