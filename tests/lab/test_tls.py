"""The agents' channels are mutual TLS 1.3 (docs/trust.md, "Who may speak"):
a capture on a switch port while the store takes writes holds no row in
clear text, only TLS records on the Raft and peer API ports; a host the
admin revokes stops replicating and its requests are refused within one
re-attestation interval, until it is admitted again."""

import hashlib
import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import host_key, make_key, peer_call, run_and_expect, spki_hex

REATTEST_S = 5  # the lab's trust.reattest-interval-ms


@pytest.fixture(autouse=True)
def _needs_tools():
    for tool in ("swtpm", "tcpdump"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (scripts/install-deps.sh)")


def applied(lab, host):
    return lab.ctl_json(host, "status")["store"]["applied_index"]


def label(lab, host, name, text, check=True):
    return lab.ctl(host, "call", "labels.set", f"name={name}", f"text={text}", check=check)


def test_a_capture_holds_no_row_in_clear(make_lab, tmp_path):
    lab = make_lab(3, "--devices", "0")
    leader = lab.ctl_json("h1", "cluster")["leader"]
    follower = next(h for h in ("h1", "h2", "h3") if h != leader)
    # Capture on the switch's port of a follower's uplink: Raft from the
    # leader, and the follower's forwarded proposals to it.
    pcap = str(tmp_path / "port.pcap")
    os.chmod(tmp_path, 0o755)
    cap = subprocess.Popen(
        ["ip", "netns", "exec", f"{lab.prefix}-s1", "timeout", "12", "tcpdump", "-i",
         follower, "-U", "-s", "0", "-w", pcap, "tcp port 7700 or tcp port 7701"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        run_and_expect(lambda: os.path.exists(pcap), timeout=5, what="tcpdump started")
        time.sleep(1)
        marker = "rowtext-" + uuid.uuid4().hex[:12]
        names = []
        for i in range(10):
            names.append(f"tlsrow{i}")
            # Half through the follower (forwarded to the leader over the
            # peer API), half on the leader (replicated over Raft).
            label(lab, follower if i % 2 else leader, names[-1], f"{marker}-{i}")
        run_and_expect(lambda: len(lab.ctl_json(follower, "call", "labels")["labels"]) >= 10,
                       what="the rows on the follower")
    finally:
        err = cap.communicate(timeout=30)[1]
    data = open(pcap, "rb").read()
    # The capture saw the traffic: the writes went through this port.
    assert len(data) > 2000, (len(data), err)
    out = subprocess.run(["tcpdump", "-nr", pcap], capture_output=True, text=True).stdout
    assert ".7700" in out and ".7701" in out, out[:2000]
    # No row, as it is or in the hex of a forwarded command, and no table
    # name; the payloads are TLS 1.3 application data records (type 23,
    # legacy version 3.3: RFC 8446, 5.1).
    for needle in [marker, marker.encode().hex(), "labels", "tlsrow1"]:
        assert needle.encode() not in data, needle
    assert data.count(b"\x17\x03\x03") >= 10


def test_a_revoked_host_stops_speaking_within_one_interval(make_lab):
    lab = make_lab(3, "--devices", "0")
    leader = lab.ctl_json("h1", "cluster")["leader"]
    others = [h for h in ("h1", "h2", "h3") if h != leader]
    victim, witness = others
    label(lab, leader, "before", "x")
    # The store commits all the time (attestations, topology): a replica
    # is caught up when it has applied what the leader had a moment ago.
    target = applied(lab, leader)
    run_and_expect(lambda: applied(lab, victim) >= target, what="all caught up")
    lab.ctl(leader, "hosts", "revoke", victim)
    # Within one interval its Raft connections are closed: writes made
    # after it are not applied on the revoked host, but on the others.
    time.sleep(REATTEST_S)
    frozen = applied(lab, victim)
    for i in range(5):
        label(lab, leader, f"after{i}", "y")
    target = applied(lab, leader)
    run_and_expect(lambda: applied(lab, witness) >= target, what="the witness applies")
    time.sleep(2)
    assert applied(lab, victim) == frozen, "the revoked host still replicates"
    assert applied(lab, leader) > frozen
    # It hears of no leader any more, and a write it tries is not taken.
    r = label(lab, victim, "evil", "z", check=False)
    assert r.returncode != 0, r.stdout
    # Its key is heard on the peer API only for the join protocol.
    n = int(victim[1:])
    r = peer_call(lab, victim, f"10.77.0.{leader[1:]}", "store.propose",
                  {"command": "00"}, *host_key(lab, n))
    assert not r["ok"] and "is no admitted host's" in r["error"], r
    # Admitted again, it attests, replicates again and catches up.
    lab.ctl(leader, "hosts", "admit", victim)
    target = applied(lab, leader)
    run_and_expect(lambda: applied(lab, victim) >= target, timeout=15,
                   what="the host admitted again catches up")
    names = {l["name"] for l in lab.ctl_json(victim, "call", "labels")["labels"]}
    assert {f"after{i}" for i in range(5)} <= names and "evil" not in names


# Speaks to a Raft port as server id ID (libraft's handshake, then the
# generation fence, then TLS with the given key) and prints "closed" when
# the agent ends the connection after the handshake, "open" when it is
# still heard 3 s later, or the error.
RAFT_AS = r"""
import socket, ssl, struct, sys
to, me, sid, generation, cert, key = sys.argv[1:7]
s = socket.create_connection((to, 7700), timeout=3)
addr = me.encode() + b"\0"
pad = (len(addr) + 7) // 8 * 8
s.sendall(struct.pack("<QQQ", 1, int(sid), pad) + addr.ljust(pad, b"\0"))
s.sendall(struct.pack(">QQ", 0x4554544d47454e31, int(generation)))
if len(s.recv(16)) != 16:
    sys.exit("no fence answer")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.load_cert_chain(cert, key)
try:
    t = ctx.wrap_socket(s)
    t.settimeout(3)
    print("closed" if t.recv(1) == b"" else "data")
except socket.timeout:
    print("open")
except (OSError, ssl.SSLError) as e:
    print("closed", type(e).__name__)
"""


def test_a_stranger_that_joins_replicates_nothing(make_lab, tmp_path):
    """Anyone may ask to join the store (a new host must), and becomes a
    spare member; but until it is admitted by attestation no agent speaks
    Raft with its key, so it reads no table."""
    lab = make_lab(3, "--devices", "0")
    c = lab.ctl_json("h1", "cluster")
    leader, generation = c["leader"], c["generation"]
    leader_addr = f"10.77.0.{leader[1:]}"
    other = next(h for h in ("h1", "h2", "h3") if h != leader)
    me = f"10.77.0.{other[1:]}"
    cert, key, _ = make_key(str(tmp_path))
    join = {"id": 9, "name": "h9", "address": f"{me}:17700", "peer": f"{me}:17701",
            "raft_version": c["raft_version"]}
    r = peer_call(lab, other, leader_addr, "store.join", join, cert, key)
    assert r["ok"] and r["result"]["accepted"] is True, r
    # The leader names the key it speaks Raft with, for the joining host.
    leader_spki = spki_hex(host_key(lab, int(leader[1:]))[1])
    assert r["result"]["leader_key"] == hashlib.sha256(bytes.fromhex(leader_spki)).hexdigest(), r
    run_and_expect(lambda: any(m["name"] == "h9" for m in lab.ctl_json(leader, "cluster")
                               ["members"]), what="h9 a member")
    # Raft in h9's name with the stranger's key: the leader ends it.
    p = lab.aee(other, "python3", "-c", RAFT_AS, leader_addr, f"{me}:17700", "9",
                str(generation), cert, key)
    assert p.stdout.split()[0] == "closed", p.stdout
    log = lab.log(leader)
    assert "Raft connection from server 9 refused" in log and "was never admitted" in log
    # The same key under an admitted host's id is refused too.
    p = lab.aee(other, "python3", "-c", RAFT_AS, leader_addr, f"{me}:7700", other[1:],
                str(generation), cert, key)
    assert p.stdout.split()[0] == "closed", p.stdout
    # h9 never votes, and the cluster goes on.
    time.sleep(2)
    h9 = next(m for m in lab.ctl_json(leader, "cluster")["members"] if m["name"] == "h9")
    assert h9["role"] != "voter" and not h9["reachable"], h9
    label(lab, leader, "after", "x")
