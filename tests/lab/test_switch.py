"""Switch control from the edge, on labs of five hosts over two switches:
forwarding across switches, the LLDP topology, the switches' flows against
the desired set (read with Open vSwitch's own ovs-ofctl), admission, leader
failover with the switch fencing the deposed master, and recovery by fiat
that tells a power loss from a partition."""

import json
import os
import re
import struct
import subprocess
import sys
import time
from datetime import datetime, timezone

from conftest import OF_CONNECT, RUN_ROOT, of_env, run_and_expect

HOSTS = ["h1", "h2", "h3", "h4", "h5"]
ETTM_COOKIE = "0xe77d000000000000/0xffffffff00000000"
STARTUP_COOKIE = "0xe77b000000000001"


def five_over_two(make_lab, *extra):
    return make_lab(5, "--switches", "2", "--devices", "1", *extra)


def pings(lab, src, dst_addr):
    return lab.exec(src, "ping", "-c", "1", "-W", "1", dst_addr, check=False).returncode == 0


# ---- the switch, as Open vSwitch itself reports it ----

def ovs_flows(lab, s):
    """ETTM's flows on switch s, read with ovs-ofctl, as comparable tuples."""
    d = os.path.join(RUN_ROOT, lab.prefix, f"s{s}")
    out = subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-s{s}", "ovs-ofctl", "-O",
                          "OpenFlow13", "dump-flows", "--no-stats", f"unix:{d}/br0.mgmt",
                          f"cookie={ETTM_COOKIE}"], capture_output=True, text=True,
                         check=True).stdout
    flows = set()
    for line in out.splitlines():
        line = line.strip()
        if not line.startswith("cookie="):
            continue
        head, actions = line.split(" actions=")
        fields = [f.strip() for f in head.split(",")[1:] if f.strip()]
        table = 0
        prio = None
        match = []
        for f in fields:
            if f.startswith("table="):
                table = int(f[6:])
            elif f.startswith("priority="):
                prio = int(f[9:])
            else:
                match.append(f)
        flows.add((table, prio, frozenset(match), actions))
    return flows


OURS_TO_OVS = {"eth_src": "dl_src", "eth_dst": "dl_dst", "ipv4_src": "nw_src",
               "ipv4_dst": "nw_dst"}


def desired_flows(lab, host, s):
    """The desired set of switch s, as an agent computes it, in ovs-ofctl's terms."""
    r = lab.ctl_json(host, "flows", f"s{s}")
    flows = set()
    for f in r["flows"]:
        if f["state"] == "unexpected" or f["cookie"] == STARTUP_COOKIE:
            continue  # ovs_flows() reads ETTM's cookie only
        m = re.fullmatch(r"table=(\d+) priority=(\d+) (\S+) (\S+)", f["flow"])
        assert m, f["flow"]
        table, prio, match, actions = int(m[1]), int(m[2]), m[3], m[4]
        kvs = dict(kv.split("=") for kv in ([] if match == "any" else match.split(",")))
        fields = []
        proto = {"6": "tcp", "17": "udp"}.get(kvs.pop("ip_proto", None))
        eth_type = kvs.pop("eth_type", None)
        if eth_type == "0x0806":
            fields.append("arp")
        elif eth_type == "0x0800":
            fields.append(proto or "ip")
        for k, v in kvs.items():
            if k in ("tcp_dst", "udp_dst"):
                k = "tp_dst"
                if "/" in v:
                    port, mask = v.split("/")
                    v = f"{int(port):#x}/{mask}"
            if k == "in_port" and v == "4294967294":
                v = "LOCAL"  # OpenFlow's reserved port, by Open vSwitch's name
            fields.append(f"{OURS_TO_OVS.get(k, k)}={v}")
        acts = []
        for a in (actions.split(",") if actions != "drop" else []):
            if a == "output:normal":
                acts.append("NORMAL")
            elif a == "output:in_port":
                acts.append("IN_PORT")
            elif a == "output:controller/65535":
                acts.append("CONTROLLER:65535")
            elif a.startswith("set_field:"):
                k, v = a[len("set_field:"):].split("=")
                acts.append(f"set_field:{v}->{k}")
            else:
                acts.append(a)
        flows.add((table, prio, frozenset(fields), ",".join(acts) or "drop"))
    return flows


def flows_converged(lab, host="h1"):
    return all(ovs_flows(lab, s) == desired_flows(lab, host, s) for s in (1, 2))


def switches(lab, host):
    return lab.ctl_json(host, "switches")["switches"]


def masters(lab, host):
    """The master of each switch, as every agent reports its own role."""
    return [[a["host"] for a in s["agents"] if a["role"] == "master"] for s in switches(lab, host)]


def leader_of(lab, hosts):
    for h in hosts:
        try:
            if lab.ctl_json(h, "cluster")["state"] == "leader":
                return h
        except AssertionError:
            continue
    return None


# ---- tests ----

def _voters(lab, host):
    return [m["name"] for m in lab.ctl_json(host, "cluster")["members"] if m["role"] == "voter"]



def test_every_guest_reaches_every_other_across_switches(make_lab):
    lab = five_over_two(make_lab)
    for a in HOSTS:
        for b in HOSTS:
            if a != b:
                assert pings(lab, a, f"10.77.1.{b[1:]}"), f"{a} cannot reach {b}"

    topo = lab.ctl_json("h3", "topology")
    links = {(l["dpid"][-1], l["peer_dpid"][-1]) for l in topo["links"]}
    assert links == {("1", "2"), ("2", "1")}
    where = {h["host"]: h["dpid"][-1] for h in topo["hosts"]}
    assert where == {"h1": "1", "h2": "2", "h3": "1", "h4": "2", "h5": "1"}
    assert all(h["admitted"] for h in topo["hosts"])

    # What Open vSwitch holds is exactly what the store asks for.
    for s in (1, 2):
        assert ovs_flows(lab, s) == desired_flows(lab, "h4", s)
        assert len(ovs_flows(lab, s)) > 10
    # Every agent's view: one master per switch, the others slaves.
    for s in switches(lab, "h2"):
        roles = sorted(a["role"] for a in s["agents"])
        assert roles == ["master"] + ["slave"] * 4, s
        assert s["flows"] >= 10 and s["ports"]


def test_switch_drift_is_repaired(make_lab):
    lab = five_over_two(make_lab)
    d = os.path.join(RUN_ROOT, lab.prefix, "s2")
    master = masters(lab, "h1")[1][0]

    def flow_mods():
        return lab.ctl_json(master, "call", "switch.local")["switches"][1]["flow_mods"]
    before, n = flow_mods(), len(ovs_flows(lab, 2))
    subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-s2", "ovs-ofctl", "-O", "OpenFlow13",
                    "del-flows", f"unix:{d}/br0.mgmt", f"cookie={ETTM_COOKIE}"], check=True)
    # The master may have put them back already (the start-up flows tell it
    # when they are removed): what it sent says it repaired them.
    run_and_expect(lambda: flows_converged(lab), 5, 0.2, what="flows repaired")
    assert flow_mods() - before >= n - 6, (before, flow_mods(), n)
    assert pings(lab, "h2", "10.77.1.1")


def test_unadmitted_port_reaches_no_guest_and_not_the_uplink(make_lab):
    lab = five_over_two(make_lab)
    # An address on the uplink side, for guests to try to reach.
    lab.exec("isp", "ip", "addr", "add", "10.77.3.1/16", "dev", "up0")
    assert pings(lab, "h5", "10.77.3.1")
    assert pings(lab, "h5", "10.77.1.2")

    lab.ctl("h2", "hosts", "revoke", "h5")
    run_and_expect(lambda: flows_converged(lab), 5, 0.2, what="h5's flows gone")
    assert not pings(lab, "h5", "10.77.1.2")
    assert not pings(lab, "h5", "10.77.1.1")
    assert not pings(lab, "h5", "10.77.3.1")
    assert not pings(lab, "h1", "10.77.1.5")
    # The unmanaged device has never been admitted either.
    assert not pings(lab, "d1", "10.77.1.1")
    # The others hold the revocation; h5's own key is refused on Raft and
    # on the peer API from now on (test_tls.py), so its replica need not.
    assert not lab.ctl_json("h1", "hosts")["hosts"][4]["admitted"]

    lab.ctl("h3", "hosts", "admit", "h5")
    run_and_expect(lambda: pings(lab, "h5", "10.77.1.2"), 5, 0.2, what="h5 admitted again")


def _log_times(lab, host, pattern):
    """Times (epoch seconds) of the lines of host's agent log matching pattern."""
    times = []
    with open(os.path.join(RUN_ROOT, lab.prefix, host, "ettmd.log"), errors="replace") as f:
        for line in f:
            if re.search(pattern, line):
                stamp = datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f")
                times.append(stamp.replace(tzinfo=timezone.utc).timestamp())
    return times


# A raw OpenFlow 1.3 controller, run in a switch's namespace: hello, then a
# role request; prints the answer (a role reply, or an error's type and code).
ROLE_REQUEST = OF_CONNECT + r"""
import struct, sys
addr, role, generation = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with of_connect(addr) as s:
    s.sendall(struct.pack("!BBHIHHI", 4, 0, 16, 1, 1, 8, 1 << 4))
    s.sendall(struct.pack("!BBHIIIQ", 4, 24, 24, 2, role, 0, generation))
    buf = b""
    while True:
        while len(buf) < 8 or len(buf) < struct.unpack("!H", buf[2:4])[0]:
            chunk = s.recv(4096)
            if not chunk:
                sys.exit("closed")
            buf += chunk
        n = struct.unpack("!H", buf[2:4])[0]
        msg, buf = buf[:n], buf[n:]
        if msg[1] == 1 and msg[4:8] == struct.pack("!I", 2):
            print("error", *struct.unpack("!HH", msg[8:12]))
            break
        if msg[1] == 25:
            print("role_reply", *struct.unpack("!I", msg[8:12]))
            break
"""


def role_request(lab, s, role, generation):
    """With h1's key (an old master's would do the same)."""
    return subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-s{s}", sys.executable, "-c",
                           ROLE_REQUEST, f"10.77.255.{s}", str(role), str(generation)],
                          capture_output=True, text=True, timeout=20, env=of_env(lab, 1))


def test_leader_kill_moves_mastership_and_keeps_traffic(make_lab):
    lab = five_over_two(make_lab)
    # Three voters first, so that two are left when the leader dies.
    run_and_expect(lambda: len(_voters(lab, "h1")) == 3, 10, what="three voters")
    old = leader_of(lab, HOSTS)
    old_term = lab.ctl_json(old, "cluster")["term"]
    # Two other hosts on different switches carry a TCP flow across.
    rest = [h for h in HOSTS if h != old]
    a = next(h for h in rest if int(h[1:]) % 2 == 1)
    b = next(h for h in rest if int(h[1:]) % 2 == 0)
    server = lab.popen(b, "iperf3", "-s", "-1", "-p", "5302")
    try:
        run_and_expect(lambda: "5302" in lab.exec(b, "ss", "-ltn").stdout, 5,
                       what="iperf3 listening")
        client = lab.popen(a, "iperf3", "-c", f"10.77.1.{b[1:]}", "-p", "5302", "-t", "6",
                           "-b", "200M", "-J")
        time.sleep(1.5)
        killed_at = time.time()
        lab.lab("kill", old)
        out, err = client.communicate(timeout=30)
    finally:
        server.wait(timeout=15)
    assert client.returncode == 0, err
    result = json.loads(out)
    assert "error" not in result, result.get("error")
    assert result["end"]["sum_received"]["bytes"] > 10_000_000

    new = run_and_expect(lambda: leader_of(lab, rest), 5, 0.05, what="a new leader")
    # The new leader is master of both switches; it said so within 1 s.
    run_and_expect(lambda: masters(lab, new) == [[new], [new]], 5, 0.1,
                   what="one master on every switch")
    claimed = [t for t in _log_times(lab, new, r"switch \d: master \(term") if t > killed_at]
    assert len(claimed) >= 2, "no mastership claim logged"
    assert max(claimed[:2]) - killed_at < 1.0, f"mastership after {max(claimed[:2]) - killed_at:.3f} s"
    run_and_expect(lambda: flows_converged(lab, new), 5, 0.2, what="flows converged")

    # The old leader comes back as a slave on every switch.
    lab.lab("start", old)
    run_and_expect(lambda: all(
        next(x["role"] for x in s["agents"] if x["host"] == old) == "slave"
        for s in switches(lab, new)), 10, 0.2, what=f"{old} a slave")
    # A master of the old term is refused by the switch itself (stale
    # generation id), so a deposed master's writes can never land.
    for s in (1, 2):
        p = role_request(lab, s, 2, old_term)  # MASTER
        assert p.stdout.strip() == "error 11 0", p.stdout + p.stderr  # ROLE_REQUEST_FAILED, STALE
    assert masters(lab, new) == [[new], [new]]


def cut_two_voters(lab, how):
    """Cuts two of the three voters off ('unplug' or 'partition'); returns
    them and a survivor."""
    run_and_expect(lambda: len(_voters(lab, "h1")) == 3, 10, what="three voters")
    cut = _voters(lab, "h1")[:2]
    for h in cut:
        lab.lab(how, h)
    return cut, next(h for h in HOSTS if h not in cut)


def test_power_loss_of_a_majority_is_recovered_by_fiat(make_lab):
    lab = five_over_two(make_lab)
    lost, survivor = cut_two_voters(lab, "unplug")
    c = run_and_expect(lambda: (lambda c: c if c["generation"] == 2 and c.get("leader") else None)(
        lab.ctl_json(survivor, "cluster")), 15, 0.2, what="recovery by fiat")
    assert c["leader"] not in lost
    # The recovered cluster takes writes.
    lab.ctl(survivor, "trust", "add", "e" * 64)


def test_partition_of_a_majority_is_not_recovered_by_fiat(make_lab):
    lab = five_over_two(make_lab)
    cut, _ = cut_two_voters(lab, "partition")
    # Every survivor, the voter left and the standbys (which never stand
    # for election, and must still see that no leader is elected), waits.
    survivors = [h for h in HOSTS if h not in cut]
    seen = {h: [] for h in survivors}

    def detector(h):
        fd = lab.ctl_json(h, "cluster").get("failure_detector", {})
        if not seen[h] or seen[h][-1] != fd:
            seen[h].append(fd)
        return fd

    def all_waiting():
        fds = [detector(h) for h in survivors]
        return fds if all(fd.get("state") == "waiting" for fd in fds) else None
    try:
        fds = run_and_expect(all_waiting, 10, 0.2, what="the failure detectors waiting")
    except BaseException:
        print(f"cut {cut}; the survivors said: {seen}")
        raise
    assert all("no fiat" in fd["reason"] for fd in fds), fds
    time.sleep(4)  # longer than fiat-after-ms
    for h in survivors:
        c = lab.ctl_json(h, "cluster")
        assert c["generation"] == 1
        assert c["failure_detector"]["state"] == "waiting", (h, c["failure_detector"])
    for h in cut:
        lab.lab("heal", h)
    run_and_expect(lambda: leader_of(lab, HOSTS), 10, 0.2, what="a leader again")
    assert all(lab.ctl_json(h, "cluster")["generation"] == 1 for h in HOSTS)


def test_a_link_that_disappears_is_noticed_within_3_s(make_lab):
    lab = five_over_two(make_lab)
    # The leader on s1's side (h1, h3, h5), so that it keeps its majority and
    # its view of s1 when the link goes.
    for _ in range(4):
        leader = run_and_expect(lambda: leader_of(lab, HOSTS), 10, what="a leader")
        if leader in ("h1", "h3", "h5"):
            break
        lab.lab("stop", leader)
        run_and_expect(lambda: leader_of(lab, [h for h in HOSTS if h != leader]), 10,
                       what="another leader")
        lab.lab("start", leader)
    assert leader in ("h1", "h3", "h5")
    run_and_expect(lambda: len(lab.ctl_json(leader, "topology")["links"]) == 2, 10,
                   what="both directions of the link")
    t0 = time.time()
    lab.exec("s1", "ip", "link", "set", "s2", "down")
    run_and_expect(lambda: not lab.ctl_json(leader, "topology")["links"], 5, 0.05,
                   what="the link gone")
    assert time.time() - t0 < 3.0
    lab.exec("s1", "ip", "link", "set", "s2", "up")
    run_and_expect(lambda: len(lab.ctl_json(leader, "topology")["links"]) == 2, 10, 0.2,
                   what="the link back")
    run_and_expect(lambda: pings(lab, "h1", "10.77.1.2"), 10, 0.2, what="h1 reaches h2 again")
