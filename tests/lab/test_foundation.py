"""The foundation: guests reach each other through their AEEs, the agents'
rules count and filter, the datapath survives its agent, and the lab cleans
up after itself."""

import json
import os
import re
import subprocess
import time

from conftest import LAB, LabHandle, _prefix, run_and_expect


def running(pid):
    """A zombie waiting for its adopter to reap it does not run."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_ping_and_tcp_go_through_both_aees(make_lab):
    lab = make_lab(3, "--devices", "0")
    before1, before2 = lab.counters("h1"), lab.counters("h2")
    lab.exec("h1", "ping", "-c", "5", "-i", "0.2", "-W", "1", "10.77.1.2")
    after1, after2 = lab.counters("h1"), lab.counters("h2")
    # h1's AEE forwarded the requests out, h2's forwarded them in.
    assert after1["guest_tx"]["packets"] >= before1["guest_tx"]["packets"] + 5
    assert after2["guest_rx"]["packets"] >= before2["guest_rx"]["packets"] + 5
    assert after2["guest_tx"]["packets"] >= before2["guest_tx"]["packets"] + 5
    # The same counters, read from the kernel's own table.
    assert lab.nft_counters("h2")["guest_rx"] == lab.counters("h2")["guest_rx"]["packets"]

    server = lab.popen("h2", "iperf3", "-s", "-1", "-p", "5301")
    try:
        run_and_expect(lambda: "5301" in lab.exec("h2", "ss", "-ltn").stdout, 5,
                       what="iperf3 listening")
        out = lab.exec("h1", "iperf3", "-c", "10.77.1.2", "-p", "5301", "-t", "2", "-J",
                       timeout=30).stdout
    finally:
        server.wait(timeout=10)
    sent = json.loads(out)["end"]["sum_received"]["bytes"]
    assert sent > 10_000_000
    assert lab.counters("h1")["guest_tx"]["bytes"] >= sent
    assert lab.counters("h2")["guest_rx"]["bytes"] >= sent


def test_spoofed_source_is_dropped(make_lab):
    lab = make_lab(2, "--devices", "0")
    lab.exec("h1", "ip", "addr", "add", "10.77.1.99/16", "dev", "eth0")
    rx_before = lab.counters("h2")["guest_rx"]["packets"]
    p = lab.exec("h1", "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "10.77.1.99", "10.77.1.2",
                 check=False)
    assert p.returncode != 0, "a spoofed ping got an answer"
    assert lab.counters("h1")["spoofed"]["packets"] >= 3
    assert lab.counters("h2")["guest_rx"]["packets"] == rx_before
    # The guest's own address still works.
    lab.exec("h1", "ping", "-c", "1", "-W", "1", "10.77.1.2")


def test_datapath_survives_its_agent(make_lab):
    lab = make_lab(2, "--devices", "0")
    # Settled: both hosts hold their NAT blocks, so the ruleset is final.
    run_and_expect(lambda: {b["owner"] for b in lab.ctl_json("h1", "nat")["blocks"]} ==
                   {"h1", "h2"}, 15, 0.2, what="NAT blocks for both hosts")
    time.sleep(0.5)
    generation = lab.ctl_json("h1", "status")["datapath"]["generation"]
    server = lab.popen("h2", "iperf3", "-s", "-1", "-p", "5302")
    run_and_expect(lambda: "5302" in lab.exec("h2", "ss", "-ltn").stdout, 5,
                   what="iperf3 listening")
    client = lab.popen("h1", "iperf3", "-c", "10.77.1.2", "-p", "5302", "-t", "6", "-b", "100M")
    try:
        time.sleep(1)
        lab.lab("kill", "h1")
        # Fail-static: the kernel keeps forwarding with the last rules.
        lab.exec("h1", "ping", "-c", "2", "-W", "1", "10.77.1.2")
        lab.lab("start", "h1")
        assert lab.counters("h1")["guest_tx"]["packets"] > 0
        out, err = client.communicate(timeout=30)
        assert client.returncode == 0, f"the connection did not survive: {out}{err}"
    finally:
        for p in (client, server):
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
    # The restarted agent reconciled onto the same ruleset generation.
    run_and_expect(lambda: lab.ctl_json("h1", "status")["datapath"]["state"] == "ok", 10,
                   what="the datapath reconciled")
    time.sleep(1)
    assert lab.ctl_json("h1", "status")["datapath"]["generation"] == generation


def test_agent_restores_a_removed_table(make_lab):
    lab = make_lab(1, "--devices", "0")
    lab.aee("h1", "nft", "delete", "table", "inet", "ettm")
    run_and_expect(lambda: lab.aee("h1", "nft", "list", "table", "inet", "ettm",
                                   check=False).returncode == 0, 10,
                   what="the agent to restore its table")


def test_agent_undoes_an_edit_by_hand(make_lab, tmp_path):
    """A change of the agent's own sends only what differs, so an edit by
    hand would stay: the agent sees that nftables changed outside it and
    makes its tables whole again. Its own steering rules (iptables-nft, at
    a policy change) are not taken for an edit."""
    lab = make_lab(1, "--devices", "0")

    def spoof_rule():
        out = lab.aee("h1", "nft", "-a", "list", "chain", "inet", "ettm", "forward").stdout
        return next((line.rsplit("# handle ", 1)[1] for line in out.splitlines()
                     if 'iifname "g0" counter name "spoofed" drop' in line), None)

    handle = spoof_rule()
    assert handle
    lab.aee("h1", "nft", "delete", "rule", "inet", "ettm", "forward", "handle", handle)
    assert spoof_rule() is None
    run_and_expect(lambda: spoof_rule() is not None, 12, 0.5,
                   what="the agent to put its rule back")
    assert lab.log("h1").count("nftables changed outside the agent") == 1
    # A policy by program: a new table of the agent's and new steering.
    policy = tmp_path / "app.policy"
    policy.write_text("default outbound allow\ndefault inbound deny\n"
                      "allow from app curl on h1 to internet tcp/80\n")
    lab.ctl("h1", "policy", "apply", str(policy))
    time.sleep(6)  # a watch of the agent's (every 5 s) went by
    assert lab.log("h1").count("nftables changed outside the agent") == 1


def test_down_leaves_nothing(make_lab):
    lab = make_lab(2)
    st = json.loads(lab.lab("status", "--json").stdout)
    pids = [h["pid"] for h in st["hosts"]]
    lab.down()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not re.search(rf"^{lab.prefix}-", names, re.M)
    assert not os.path.exists(f"/run/ettm-lab/{lab.prefix}")
    for pid in pids:
        assert not running(pid), f"agent {pid} still runs"
    # A second down has nothing to do, and says so.
    assert "nothing to remove" in lab.down().stdout


def test_two_labs_at_once(make_lab):
    a = make_lab(2, "--devices", "0")
    b = make_lab(2, "--devices", "0")
    a.exec("h1", "ping", "-c", "1", "-W", "1", "10.77.1.2")
    b.exec("h1", "ping", "-c", "1", "-W", "1", "10.77.1.2")
    a.down()
    b.exec("h2", "ping", "-c", "1", "-W", "1", "10.77.1.1")


def test_failed_up_cleans_up(tmp_path):
    fake = tmp_path / "build"
    (fake / "src" / "ettmd").mkdir(parents=True)
    (fake / "src" / "ettmctl").mkdir(parents=True)
    agent = fake / "src" / "ettmd" / "ettmd"
    agent.write_text("#!/bin/sh\necho 'this agent does not start' >&2\nexit 1\n")
    agent.chmod(0o755)
    prefix = _prefix()
    p = subprocess.run([LAB, "up", "--prefix", prefix, "--hosts", "2", "--build-dir", str(fake)],
                       capture_output=True, text=True, timeout=120)
    try:
        assert p.returncode == 1
        assert "h1: agent not healthy" in p.stderr
        assert "this agent does not start" in p.stderr
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not re.search(rf"^{prefix}-", names, re.M)
        assert not os.path.exists(f"/run/ettm-lab/{prefix}")
    finally:
        LabHandle(prefix, 0).down()


def test_bare_lab_has_no_aees(make_lab):
    lab = make_lab(2, "--bare", "--devices", "0")
    lab.exec("h1", "ping", "-c", "1", "-W", "1", "10.77.1.2")
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{lab.prefix}-h1-aee" not in names
    assert "bare" in lab.lab("ctl", "h1", "--", "status", check=False).stderr


def test_bridge_switch(make_lab):
    lab = make_lab(2, "--devices", "0", "--switch", "bridge")
    lab.exec("h1", "ping", "-c", "1", "-W", "1", "10.77.1.2")
    assert "Linux bridge" in lab.lab("status").stdout
    assert lab.counters("h1")["guest_tx"]["packets"] >= 1
