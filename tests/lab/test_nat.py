"""Distributed NAT with real clients: guests reach the internet server in
the isp namespace as the public address, each host with ports from its own
blocks; pings from all guests at once (echo replies the switch cannot steer
go through any live AEE to the owner); an exposed port reached from the ISP
and by hairpinning; established connections that outlive agents; blocks
claimed when a host runs short and given back when a host leaves."""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import run_and_expect

PUBLIC = "203.0.113.10"
SERVER = "198.51.100.10"
SERVER2 = "198.51.100.11"
PY = "/usr/bin/python3"


def nat(lab, host="h1"):
    return lab.ctl_json(host, "nat")


def blocks_of(lab):
    """{host: [(start, end), ...]} as the store has them."""
    out = {}
    for b in nat(lab)["blocks"]:
        out.setdefault(b["owner"], []).append((b["start"], b["end"]))
    return out


def in_blocks(port, blocks):
    return any(s <= port <= e for s, e in blocks)


class Server:
    """A process started in a namespace, ended by its PID."""

    def __init__(self, lab, name, *cmd):
        self.p = subprocess.Popen(["ip", "netns", "exec", f"{lab.prefix}-{name}"] + list(cmd),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self):
        self.p.terminate()
        try:
            out, _ = self.p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, _ = self.p.communicate()
        return out


# http.server with room for many connections at once (its default backlog
# is 5), logging each request's client address and port.
HTTP_SERVER = """
import functools, http.server, sys, time
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 512
class Handler(http.server.SimpleHTTPRequestHandler):
    def address_string(self):
        return "%s:%d" % self.client_address
    def do_GET(self):
        time.sleep(float(sys.argv[4]))
        super().do_GET()
handler = functools.partial(Handler, directory=sys.argv[3])
http.server.test(HandlerClass=handler, ServerClass=Server, port=int(sys.argv[2]), bind=sys.argv[1])
"""


def http_server(lab, name, addr, port, directory, delay=0):
    """A web server in namespace name; it answers each request after delay seconds."""
    s = Server(lab, name, PY, "-u", "-c", HTTP_SERVER, addr, str(port), directory, str(delay))
    deadline = time.time() + 30
    while True:
        listening = lab.exec(name, "ss", "-ltn").stdout
        if f"{addr}:{port}" in listening:
            break
        assert time.time() < deadline and s.p.poll() is None, \
            f"{name}: no server on {addr}:{port}: {s.stop()!r}; listening: {listening}"
        time.sleep(0.2)
    return s


def clients(log):
    """(address, port) of each request a server logged."""
    return [(a, int(p)) for a, p in re.findall(r"^(\S+):(\d+) - - \[", log, re.M)]


def curl(lab, name, url, check=True):
    return lab.exec(name, "curl", "-s", "-m", "5", url, check=check)


def nat_lab(make_lab, hosts=3, *args):
    lab = make_lab(hosts, *args)
    run_and_expect(lambda: len(blocks_of(lab)) == hosts, 15, 0.2, what="a block for every host")
    return lab


def test_every_guest_fetches_a_page_as_the_public_address(make_lab, tmp_path):
    lab = nat_lab(make_lab)
    (tmp_path / "index.html").write_text("from the internet\n")
    srv = http_server(lab, "isp", SERVER, 80, str(tmp_path))
    try:
        for h in ("h1", "h2", "h3"):
            assert curl(lab, h, f"http://{SERVER}/").stdout == "from the internet\n"
    finally:
        log = srv.stop()
    assert [a for a, _ in clients(log)] == [PUBLIC] * 3, log
    # ettmctl nat tells the same story.
    text = lab.ctl("h1", "nat").stdout
    assert f"uplink 1: {PUBLIC} via gateway 203.0.113.1" in text
    assert "h1 leaves by 203.0.113.10" in text


def test_parallel_connections_get_distinct_ports_inside_their_blocks(make_lab, tmp_path):
    lab = nat_lab(make_lab)
    (tmp_path / "index.html").write_text("x\n")
    # The server holds each request for 3 s, so that the connections are open
    # at once: a guest may reuse a port of its own closed connection, and the
    # server would see that port twice without any fault of the NAT.
    srv = http_server(lab, "isp", SERVER, 80, str(tmp_path), delay=3)
    per_host = 20
    try:
        procs = [lab.popen(h, "sh", "-c",
                           f"for i in $(seq {per_host}); do curl -s -m 10 -o /dev/null "
                           f"http://{SERVER}/ & done; wait") for h in ("h1", "h2", "h3")]
        for p in procs:
            p.communicate(timeout=60)
    finally:
        log = srv.stop()
    blocks = blocks_of(lab)
    # What the server saw: every connection from the public address, each
    # with a port of its own.
    seen = clients(log)
    assert len(seen) == 3 * per_host, log
    assert {a for a, _ in seen} == {PUBLIC}
    ports = [p for _, p in seen]
    assert len(set(ports)) == len(ports), "two connections shared a public port"
    assert all(any(in_blocks(p, b) for b in blocks.values()) for p in ports)
    # Each AEE's own conntrack: its translations use its own blocks only.
    for h in ("h1", "h2", "h3"):
        ct = lab.aee(h, "cat", "/proc/net/nf_conntrack").stdout
        mine = [int(p) for p in re.findall(
            rf"dst={SERVER} sport=\d+ dport=80 .*?src={SERVER} dst={PUBLIC} sport=80 "
            r"dport=(\d+)", ct)]
        assert len(mine) == per_host, (h, ct)
        assert all(in_blocks(p, blocks[h]) for p in mine), (h, mine, blocks[h])
    # The agent counts the same flows through ctnetlink as the kernel's
    # text table shows: replies to a public address and a port of its own.
    def counted_alike(h):
        ct = lab.aee(h, "cat", "/proc/net/nf_conntrack").stdout
        ports = [int(m[1]) for m in re.finditer(
            rf"src=\S+ dst={PUBLIC} sport=\d+ dport=(\d+)", ct)]
        ours = sum(1 for p in ports if in_blocks(p, blocks[h]))
        return ours >= per_host and lab.ctl_json(h, "nat")["self"]["in_use"] == ours
    for h in ("h1", "h2", "h3"):
        run_and_expect(lambda: counted_alike(h), 10, 0.5, what=f"{h}'s in_use")


def test_ping_from_every_guest_at_once(make_lab):
    lab = nat_lab(make_lab)
    procs = {h: lab.popen(h, "ping", "-c", "20", "-i", "0.05", "-W", "1", SERVER)
             for h in ("h1", "h2", "h3")}
    for h, p in procs.items():
        out, _ = p.communicate(timeout=30)
        assert " 0% packet loss" in out, (h, out)


def test_an_exposed_port_is_reached_from_outside_and_by_hairpinning(make_lab, tmp_path):
    lab = nat_lab(make_lab)
    (tmp_path / "index.html").write_text("guest h2\n")
    srv = http_server(lab, "h2", "10.77.1.2", 8080, str(tmp_path))
    try:
        assert curl(lab, "isp", f"http://{PUBLIC}/", check=False).returncode != 0
        lab.ctl("h1", "nat", "expose", "h2", "tcp", "8080", "--public-port", "80")
        m = nat(lab)["mappings"]
        assert [(x["proto"], x["public_port"], x["owner"], x["guest_port"]) for x in m] == \
            [("tcp", 80, "h2", 8080)]
        run_and_expect(lambda: curl(lab, "isp", f"http://{PUBLIC}/", check=False).stdout ==
                       "guest h2\n", 10, 0.2, what="the ISP reaching h2's server")
        # Hairpinning: another guest, and h2 itself, through the public address.
        assert curl(lab, "h1", f"http://{PUBLIC}/").stdout == "guest h2\n"
        assert curl(lab, "h2", f"http://{PUBLIC}/").stdout == "guest h2\n"
        # A port in another host's block cannot be taken.
        bad = lab.ctl("h1", "nat", "expose", "h2", "tcp", "22", "--public-port",
                      str(blocks_of(lab)["h1"][0][0]), check=False)
        assert bad.returncode == 1 and "is in the block" in bad.stderr
        lab.ctl("h1", "nat", "unexpose", "tcp", "80")
        run_and_expect(lambda: curl(lab, "isp", f"http://{PUBLIC}/", check=False).returncode != 0,
                       10, 0.2, what="the mapping gone")
    finally:
        log = srv.stop()
    # The ISP came in as itself; the hairpinned guests as the public address.
    seen = [a for a, _ in clients(log)]
    assert seen.count(PUBLIC) == 2 and set(seen) == {"203.0.113.1", PUBLIC}, log


def test_established_connections_survive_agent_and_leader_kills(make_lab):
    lab = nat_lab(make_lab, 4)
    leader = run_and_expect(lambda: lab.ctl_json("h1", "cluster")["leader"], 10, what="a leader")
    others = [h for h in ("h1", "h2", "h3", "h4") if h != leader]
    victim, clients = others[0], others[1:]
    srv = [Server(lab, "isp", "iperf3", "-s", "-1", "-p", str(5201 + i), "-B", SERVER)
           for i in range(len(clients))]
    time.sleep(0.5)
    runs = [lab.popen(h, "iperf3", "-c", SERVER, "-p", str(5201 + i), "-t", "6", "-J")
            for i, h in enumerate(clients)]
    time.sleep(1.5)
    lab.lab("kill", victim)
    time.sleep(1)
    lab.lab("kill", leader)
    for h, p in zip(clients, runs):
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, (h, out[-2000:], err)
        end = json.loads(out)["end"]
        assert end["sum_received"]["seconds"] > 5, (h, end["sum_received"])
    for s in srv:
        s.stop()
    # New connections work too, from every host (a dead agent's datapath
    # keeps its last rules), once a new leader masters the switch.
    run_and_expect(lambda: all(lab.exec(h, "ping", "-c", "1", "-W", "1", SERVER,
                                        check=False).returncode == 0
                               for h in ("h1", "h2", "h3", "h4")), 15, 0.5,
                   what="new flows from every host")


def test_the_isps_arp_is_answered_while_no_agent_is_master(make_lab):
    """The uplink's switch answers the gateway's ARP for the public address
    itself: with every agent killed (no master), the ISP forgets the public
    address's MAC and still reaches the guests."""
    lab = nat_lab(make_lab, 3)
    assert lab.exec("h2", "ping", "-c", "1", "-W", "1", SERVER, check=False).returncode == 0
    for h in ("h1", "h2", "h3"):
        lab.lab("kill", h)
    lab.exec("isp", "ip", "neigh", "flush", "dev", "up0")
    for h in ("h1", "h2", "h3"):
        out = lab.exec(h, "ping", "-c", "3", "-i", "0.2", "-W", "1", SERVER, check=False)
        assert out.returncode == 0, (h, out.stdout)
    neigh = lab.exec("isp", "ip", "neigh", "show", PUBLIC, "dev", "up0").stdout
    assert "02:e7:7e:00:71:0a" in neigh, neigh


def test_a_host_short_of_ports_gets_another_block_and_a_leaver_returns_them(make_lab):
    lab = nat_lab(make_lab)
    size = nat(lab)["block_size"]
    assert blocks_of(lab)["h2"] and len(blocks_of(lab)["h2"]) == 1
    # 3/4 of a block in use (UDP flows, each its own source port) makes the
    # agent claim another block.
    script = (f"import socket\nss=[]\nfor i in range({size * 3 // 4 + 10}):\n"
              f"    s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              f"    s.sendto(b'x', ('{SERVER}', 9)); ss.append(s)\n")
    lab.exec("h2", PY, "-c", script)
    run_and_expect(lambda: len(blocks_of(lab).get("h2", [])) == 2, 10, 0.2,
                   what="a second block for h2")
    owners = [b["owner"] for b in nat(lab)["blocks"]]
    starts = sorted(b["start"] for b in nat(lab)["blocks"])
    assert all(b - a >= size for a, b in zip(starts, starts[1:])), starts
    # The guest's ephemeral ports now span both blocks, the gap between
    # them reserved; a port of the second block keeps itself as the public
    # port for every destination.
    (a0, a1), (b0, b1) = sorted(blocks_of(lab)["h2"])
    gap = f"{a1 + 1}-{b0 - 1}" if b0 > a1 + 1 else ""
    run_and_expect(lambda: guest_ports(lab, "h2") == (a0, b1, gap), 10, 0.2,
                   what="h2's guest ports over both blocks")
    for proto, port in (("udp", 7004), ("tcp", 7005)):
        local, seen = eim_seen(lab, "h2", proto, port, b0 + 7)
        assert seen == {SERVER: (PUBLIC, b0 + 7), SERVER2: (PUBLIC, b0 + 7)}, (proto, seen)
    # h3 leaves the cluster: after the grace period its blocks come back.
    lab.ctl("h1", "cluster", "remove", "h3")
    run_and_expect(lambda: "h3" not in blocks_of(lab) and
                   len(nat(lab)["blocks"]) == len(owners) - 1, 20, 0.5,
                   what="h3's block given back")


def mapped_line(out):
    m = re.search(r"Mapped public port (\d+) protocol (\w+) to local port (\d+) liftime (\d+)",
                  out)
    assert m, out
    return int(m[1]), int(m[4])


def natpmpc(lab, host, *args):
    return mapped_line(lab.exec(host, "natpmpc", "-g", f"10.77.0.{host[1:]}", *args).stdout)


def test_natpmpc_maps_a_port_the_isp_reaches_until_deleted(make_lab, tmp_path):
    lab = nat_lab(make_lab)
    out = lab.exec("h2", "natpmpc", "-g", "10.77.0.2").stdout
    assert f"Public IP address : {PUBLIC}" in out
    (tmp_path / "index.html").write_text("guest h2\n")
    srv = http_server(lab, "h2", "10.77.1.2", 8080, str(tmp_path))
    try:
        port, lifetime = natpmpc(lab, "h2", "-a", "8080", "8080", "tcp", "60")
        assert (port, lifetime) == (8080, 60)
        m = [x for x in nat(lab)["mappings"] if x["public_port"] == 8080]
        assert m and m[0]["owner"] == "h2" and m[0]["expires_ms"] > 0
        run_and_expect(lambda: curl(lab, "isp", f"http://{PUBLIC}:8080/", check=False).stdout ==
                       "guest h2\n", 10, 0.2, what="the ISP reaching h2 through the mapping")
        # The same public port asked for by another guest: the RFC's
        # alternative, a port of that host's own block.
        other, _ = natpmpc(lab, "h1", "-a", "8080", "8080", "tcp", "60")
        assert other != 8080 and in_blocks(other, blocks_of(lab)["h1"])
        # Deleted: the ISP no longer gets in.
        assert natpmpc(lab, "h2", "-a", "8080", "8080", "tcp", "0") == (0, 0)
        run_and_expect(lambda: curl(lab, "isp", f"http://{PUBLIC}:8080/",
                                    check=False).returncode != 0, 10, 0.2,
                       what="the mapping gone")
        assert all(x["owner"] != "h2" for x in nat(lab)["mappings"])
    finally:
        srv.stop()


# Runs a command at wall-clock time argv[1], so that two namespaces' clients
# send within a millisecond of each other.
AT = "import os, sys, time; time.sleep(max(0, float(sys.argv[1]) - time.time())); " \
     "os.execvp(sys.argv[2], sys.argv[2:])"


def test_two_guests_asking_for_one_port_at_once_both_get_one(make_lab):
    """Both replicas see the port free and choose it; the store commits one
    and refuses the other, whose agent chooses again: both guests get a
    mapping, each told the port the store holds for it."""
    lab = nat_lab(make_lab)
    blocks = blocks_of(lab)
    for port in (9090, 9091, 9092):
        at = f"{time.time() + 1.5:.3f}"
        ps = {h: lab.popen(h, PY, "-c", AT, at, "natpmpc", "-g", f"10.77.0.{h[1:]}", "-a",
                           str(port), "7000", "udp", "600") for h in ("h1", "h2")}
        got = {}
        for h, p in ps.items():
            out, err = p.communicate(timeout=30)
            got[h] = mapped_line(out + err)
        assert got["h1"][1] == got["h2"][1] == 600, got
        ports = {h: got[h][0] for h in got}
        assert ports["h1"] != ports["h2"], ports
        # One has the port it asked for, the other a port of its own blocks.
        winner = "h1" if ports["h1"] == port else "h2"
        loser = "h2" if winner == "h1" else "h1"
        assert ports[winner] == port, ports
        assert in_blocks(ports[loser], blocks[loser]), (ports, blocks)
        # What each was told is what the store holds.
        held = {(m["owner"], m["guest_port"]): m["public_port"]
                for m in nat(lab, "h3")["mappings"] if m["proto"] == "udp"}
        assert held[("h1", 7000)] == ports["h1"] and held[("h2", 7000)] == ports["h2"], held
        # Deleted, so that the next round asks for a fresh port again.
        for h in ("h1", "h2"):
            lab.exec(h, "natpmpc", "-g", f"10.77.0.{h[1:]}", "-a", "0", "7000", "udp", "0")
        run_and_expect(lambda: not [m for m in nat(lab, "h3")["mappings"]
                                    if m["proto"] == "udp"], 10, 0.2, what="mappings deleted")


# A PCP client (RFC 6887): MAP requests built byte by byte, the response
# decoded, printed as JSON.
PCP_CLIENT = r"""
import json, os, socket, struct, sys
server, client, proto, port, suggested, lifetime, prefer = sys.argv[1:8]
nonce = os.urandom(12)
def v4(a):
    return b"\0" * 10 + b"\xff\xff" + socket.inet_aton(a)
req = struct.pack("!BBHI", 2, 1, 0, int(lifetime)) + v4(client)
req += nonce + struct.pack("!B3xHH", int(proto), int(port), int(suggested)) + b"\0" * 16
if prefer == "1":
    req += struct.pack("!BBH", 2, 0, 0)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(req, (server, 5351))
res = s.recv(1100)
ver, op, result, life, epoch = struct.unpack("!BBxBII", res[:12])
out = {"version": ver, "opcode": op, "result": result, "lifetime": life, "len": len(res)}
if len(res) >= 60:
    out["nonce_ok"] = res[24:36] == nonce
    out["external_port"] = struct.unpack("!H", res[42:44])[0]
    out["external"] = socket.inet_ntoa(res[56:60])
print(json.dumps(out))
"""


def pcp(lab, host, proto, port, suggested, lifetime, prefer=False, client=None):
    n = host[1:]
    out = lab.exec(host, PY, "-c", PCP_CLIENT, f"10.77.0.{n}", client or f"10.77.1.{n}",
                   str(proto), str(port), str(suggested), str(lifetime),
                   "1" if prefer else "0").stdout
    return json.loads(out)


def test_pcp_map_renew_refuse_and_expire(make_lab):
    lab = nat_lab(make_lab)
    r = pcp(lab, "h2", 17, 5000, 5000, 600)
    assert (r["version"], r["opcode"], r["result"]) == (2, 0x81, 0), r
    assert r["nonce_ok"] and r["external"] == PUBLIC and r["external_port"] == 5000
    assert r["lifetime"] == 600
    # Renewed: the same port.
    assert pcp(lab, "h2", 17, 5000, 0, 600)["external_port"] == 5000
    # Taken elsewhere: with PREFER_FAILURE a refusal, without it another port.
    r = pcp(lab, "h1", 17, 5001, 5000, 600, prefer=True)
    assert r["result"] == 11 and r["lifetime"] > 0, r  # CANNOT_PROVIDE_EXTERNAL
    r = pcp(lab, "h1", 17, 5001, 5000, 600)
    assert r["result"] == 0 and r["external_port"] != 5000
    assert in_blocks(r["external_port"], blocks_of(lab)["h1"])
    # The client address in the request must be the sender's.
    assert pcp(lab, "h1", 17, 5002, 0, 600, client="10.77.1.9")["result"] == 12
    # A short lifetime lapses: the agent removes the mapping.
    assert pcp(lab, "h3", 6, 7000, 7000, 2)["result"] == 0
    assert any(m["public_port"] == 7000 for m in nat(lab)["mappings"])
    run_and_expect(lambda: all(m["public_port"] != 7000 for m in nat(lab)["mappings"]), 10,
                   0.2, what="the lapsed mapping gone")


def test_a_guest_server_on_an_allowed_port_is_mapped_while_it_listens(make_lab, tmp_path):
    lab = nat_lab(make_lab)
    (tmp_path / "index.html").write_text("auto h3\n")
    # The lab's policy lets tcp/8800-8899 be exposed; nothing is asked for.
    srv = http_server(lab, "h3", "0.0.0.0", 8842, str(tmp_path))
    try:
        run_and_expect(lambda: curl(lab, "isp", f"http://{PUBLIC}:8842/", check=False).stdout ==
                       "auto h3\n", 10, 0.2, what="the listening server reachable")
        m = [x for x in nat(lab)["mappings"] if x["public_port"] == 8842]
        assert m and m[0]["owner"] == "h3" and m[0]["guest_port"] == 8842
    finally:
        srv.stop()
    run_and_expect(lambda: all(x["public_port"] != 8842 for x in nat(lab)["mappings"]), 10, 0.2,
                   what="the mapping gone with the socket")
    # A port outside the policy is not exposed.
    srv = http_server(lab, "h3", "0.0.0.0", 9100, str(tmp_path))
    try:
        time.sleep(2.5)
        assert all(x["public_port"] != 9100 for x in nat(lab)["mappings"])
    finally:
        srv.stop()


# Endpoint-independent mapping (RFC 4787 REQ-1): servers on both internet
# addresses print the address and port each peer came from; a guest sends
# from one UDP socket, or connects from one TCP port (two sockets sharing it
# with SO_REUSEADDR), to both.
EIM_SERVER = """
import socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
socks = []
for a in sys.argv[3:]:
    s = socket.socket(type=socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a, port))
    if proto == "tcp":
        s.listen()
    socks.append(s)
print("ready", flush=True)
for s in socks:
    if proto == "udp":
        _, peer = s.recvfrom(100)
    else:
        c, peer = s.accept()
        c.close()
    print("%s %s %d" % (s.getsockname()[0], peer[0], peer[1]), flush=True)
"""

EIM_CLIENT = """
import socket, sys
proto, port, local = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
keep = []
for a in sys.argv[4:]:
    s = socket.socket(type=socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if proto == "udp" and keep:
        s = keep[0]
    else:
        s.bind(("0.0.0.0", local))
        local = s.getsockname()[1]
    if proto == "udp":
        s.sendto(b"x", (a, port))
    else:
        s.connect((a, port))
    keep.append(s)
print(local)
"""


def eim_seen(lab, host, proto, port, local=0):
    """Sends from one guest port of @host to both internet servers; returns
    (the guest's port, {server: (source address, source port)})."""
    srv = Server(lab, "isp", PY, "-u", "-c", EIM_SERVER, proto, str(port), SERVER, SERVER2)
    try:
        assert srv.p.stdout.readline().strip() == "ready"
        local = int(lab.exec(host, PY, "-c", EIM_CLIENT, proto, str(port), str(local), SERVER,
                             SERVER2).stdout)
        seen = {}
        for _ in range(2):
            line = srv.p.stdout.readline().split()
            assert len(line) == 3, line
            seen[line[0]] = (line[1], int(line[2]))
    finally:
        srv.stop()
    return local, seen


def guest_ports(lab, host):
    lo, hi = lab.exec(host, "cat", "/proc/sys/net/ipv4/ip_local_port_range").stdout.split()
    reserved = lab.exec(host, "cat", "/proc/sys/net/ipv4/ip_local_reserved_ports").stdout.strip()
    return int(lo), int(hi), reserved


def test_one_guest_port_keeps_one_public_port_for_every_destination(make_lab):
    lab = nat_lab(make_lab)
    blocks = blocks_of(lab)["h1"]
    # The guest's ephemeral ports are the host's block.
    run_and_expect(lambda: guest_ports(lab, "h1") == (blocks[0][0], blocks[0][1], ""), 10, 0.2,
                   what="h1's guest picking its ports from h1's block")
    for proto, port in (("udp", 7000), ("tcp", 7001)):
        local, seen = eim_seen(lab, "h1", proto, port)
        assert in_blocks(local, blocks), (proto, local, blocks)
        # Both servers see the public address and the guest's own port.
        assert seen == {SERVER: (PUBLIC, local), SERVER2: (PUBLIC, local)}, (proto, seen)
    # A port bound outside the block: the kernel gives the second flow the
    # public port the first one got, while that flow lives.
    for proto, port in (("udp", 7002), ("tcp", 7003)):
        local, seen = eim_seen(lab, "h2", proto, port, 40000 + port)
        assert local == 40000 + port
        assert seen[SERVER] == seen[SERVER2], (proto, seen)
        assert in_blocks(seen[SERVER][1], blocks_of(lab)["h2"]), (proto, seen)


def test_udp_mappings_outlive_the_two_minute_minimum(make_lab):
    lab = nat_lab(make_lab, 1)
    t = {k: int(lab.aee("h1", "cat", f"/proc/sys/net/netfilter/nf_conntrack_udp_{k}").stdout)
         for k in ("timeout", "timeout_stream")}
    assert t == {"timeout": 120, "timeout_stream": 300}, t
    # A request nobody answers: its translation is kept for 120 s, not 30.
    lab.exec("h1", PY, "-c", "import socket; socket.socket(type=socket.SOCK_DGRAM)"
             f".sendto(b'x', ('{SERVER2}', 9999))")
    ct = lab.aee("h1", "cat", "/proc/net/nf_conntrack").stdout
    left = [int(m) for m in re.findall(rf"udp +17 (\d+) src=10.77.1.1 dst={SERVER2} ", ct)]
    assert left and 100 < left[0] <= 120, ct


def fetch_sources(lab, hosts, tmp_path):
    """The address each host's guest fetches a page from the internet as."""
    (tmp_path / "index.html").write_text("x\n")
    srv = http_server(lab, "isp", SERVER, 80, str(tmp_path))
    try:
        for h in hosts:
            curl(lab, h, f"http://{SERVER}/")
    finally:
        log = srv.stop()
    return [a for a, _ in clients(log)]


def test_two_uplinks_take_inbound_on_both_and_one_carries_on_when_the_other_is_cut(
        make_lab, tmp_path):
    lab = nat_lab(make_lab, 4, "--switches", "2", "--uplinks", "2")
    hosts = ["h1", "h2", "h3", "h4"]
    ups = nat(lab)["uplinks"]
    assert [(u["public"], u["up"]) for u in ups] == [(PUBLIC, True), ("203.0.113.11", True)]
    assert all(u["gateway_mac"] for u in ups)
    # Outbound flows spread over both uplinks.
    assert set(fetch_sources(lab, hosts, tmp_path)) == {PUBLIC, "203.0.113.11"}
    # Inbound through either address reaches the right guest.
    (tmp_path / "h2").mkdir()
    (tmp_path / "h2" / "index.html").write_text("guest h2\n")
    srv = http_server(lab, "h2", "10.77.1.2", 8080, str(tmp_path / "h2"))
    try:
        lab.ctl("h1", "nat", "expose", "h2", "tcp", "8080", "--public-port", "80")
        for a in (PUBLIC, "203.0.113.11"):
            run_and_expect(lambda a=a: curl(lab, "isp", f"http://{a}/", check=False).stdout ==
                           "guest h2\n", 10, 0.2, what=f"h2 reached through {a}")
    finally:
        srv.stop()
    # The second uplink is cut: every host's new connections take the first.
    lab.exec("isp", "ip", "link", "set", "up1", "down")
    run_and_expect(lambda: [u["up"] for u in nat(lab)["uplinks"]] == [True, False], 10, 0.2,
                   what="uplink 2 seen down")
    run_and_expect(lambda: all(lab.ctl_json(h, "nat")["self"]["public"] == PUBLIC
                               for h in hosts), 10, 0.2, what="every host leaving by uplink 1")
    assert fetch_sources(lab, hosts, tmp_path) == [PUBLIC] * 4


# RFC 4787 REQ-8 probe, the server half (in the isp namespace): whatever
# reaches SERVER:3478 is answered three times, from that same address and
# port ("same"), from the same address and another port ("port"), and from
# another address and port ("addr").
FILTER_SERVER = r"""
import socket, sys
a, b = sys.argv[1], sys.argv[2]
def bound(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    return s
main, other_port, other_addr = bound(a, 3478), bound(a, 3479), bound(b, 3480)
print("ready", flush=True)
while True:
    data, peer = main.recvfrom(100)
    main.sendto(b"same", peer)
    other_port.sendto(b"port", peer)
    other_addr.sendto(b"addr", peer)
"""

# The guest half: one socket (on the given port, or one the kernel picks)
# first listens for the given seconds, then sends to the server; prints
# what came in before it sent and the answers that got through after.
FILTER_CLIENT = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[2])))
s.settimeout(0.2)
print(s.getsockname()[1], flush=True)
def listen(seconds, probe=None):
    got, n, end = set(), 0, time.time() + seconds
    while time.time() < end:
        if probe and n < 3:
            s.sendto(b"probe", probe)
            n += 1
        try:
            got.add(s.recv(100).decode())
        except socket.timeout:
            pass
    return sorted(got)
before = listen(float(sys.argv[3]))
print(json.dumps({"before": before, "after": listen(2, (sys.argv[1], 3478))}))
"""

# From the other internet address, to a public port.
UNSOLICITED = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 3481))
for _ in range(5):
    s.sendto(b"unsolicited", (sys.argv[2], int(sys.argv[3])))
    time.sleep(0.1)
"""

FILTERINGS = {"h1": "endpoint-independent", "h2": "address-dependent",
              "h3": "address-and-port-dependent"}


def test_each_hosts_filtering_lets_in_what_rfc_4787_says(make_lab):
    """Three hosts, one filtering mode each (nat.filtering): an internet
    server answers a guest's UDP probe from the probed address and port,
    from another port, and from another address."""
    lab = make_lab(3, "--nat-filtering", ",".join(f"{h}={m}" for h, m in FILTERINGS.items()))
    run_and_expect(lambda: len(blocks_of(lab)) == 3, 15, 0.2, what="a block for every host")
    for h, mode in FILTERINGS.items():
        assert nat(lab, h)["self"]["filtering"] == mode
    srv = Server(lab, "isp", PY, "-c", FILTER_SERVER, SERVER, SERVER2)
    try:
        assert srv.p.stdout.readline().strip() == "ready"
        want = {"h1": ["addr", "port", "same"], "h2": ["port", "same"], "h3": ["same"]}
        for h in FILTERINGS:
            out = lab.exec(h, PY, "-c", FILTER_CLIENT, SERVER, "0", "0").stdout.splitlines()
            got = json.loads(out[1])["after"]
            assert got == want[h], (h, FILTERINGS[h], got)
        # Endpoint-independent filtering opens a mapping, not every port: a
        # guest socket on a port of its block that has sent nothing gets
        # nothing from outside; once it has sent, it does.
        start, end = blocks_of(lab)["h1"][0]
        port = end - 7
        p = lab.popen("h1", PY, "-c", FILTER_CLIENT, SERVER, str(port), "2")
        try:
            assert p.stdout.readline().strip() == str(port)
            lab.exec("isp", PY, "-c", UNSOLICITED, SERVER2, PUBLIC, str(port))
            out, _ = p.communicate(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
        r = json.loads(out)
        assert r["before"] == [] and r["after"] == ["addr", "port", "same"], r
    finally:
        srv.stop()


NATDISCOVERY = {"endpoint-independent": "Endpoint Independent Filtering",
                "address-dependent": "Address Dependent Filtering",
                "address-and-port-dependent": "Address and Port Dependent Filtering"}


def test_coturn_natdiscovery_finds_each_hosts_mapping_and_filtering(make_lab, tmp_path):
    """RFC 5780 behaviour discovery by coturn's client, against its STUN
    server on the ISP's two addresses: every guest's mapping is
    endpoint-independent (RFC 4787 REQ-1), and its filtering is the one
    its host was given; hairpinning follows each host's filtering."""
    if not shutil.which("turnserver") or not shutil.which("turnutils_natdiscovery"):
        pytest.skip("coturn is not installed (scripts/install-deps.sh)")
    lab = make_lab(3, "--nat-filtering", ",".join(f"{h}={m}" for h, m in FILTERINGS.items()))
    run_and_expect(lambda: len(blocks_of(lab)) == 3, 15, 0.2, what="a block for every host")
    srv = Server(lab, "isp", "turnserver", "-n", "--stun-only", "--no-cli", "--no-tls",
                 "--no-dtls", "--listening-ip", SERVER, "--listening-ip", SERVER2,
                 "--listening-port", "3478", "--log-file", "stdout", "--simple-log",
                 "--pidfile", str(tmp_path / "turn.pid"), "--userdb", str(tmp_path / "turn.db"))
    try:
        run_and_expect(lambda: SERVER2 + ":3479" in lab.exec("isp", "ss", "-lnu").stdout, 10,
                       0.2, what="the STUN server listening")
        for h, mode in FILTERINGS.items():
            out = lab.exec(h, "turnutils_natdiscovery", "-m", "-f", SERVER).stdout
            verdicts = re.findall(r"NAT with ([A-Za-z ]+)!", out)
            assert verdicts == ["Endpoint Independent Mapping", NATDISCOVERY[mode]], (h, out)
            # What it saw as its public address is the network's.
            assert re.search(rf"UDP reflexive addr: +{re.escape(PUBLIC)}:\d+", out), out
        # Hairpinning (RFC 5780 4.6: a second socket sends to the first's
        # mapped address) with endpoint-independent filtering. With the
        # other two, the first socket never sent to the public address, so
        # its filtering drops what comes from there: punching_hairpins()
        # shows the hairpin open once both ends have sent.
        out = lab.exec("h1", "turnutils_natdiscovery", "-H", SERVER).stdout
        assert "Received a request (maybe a successful hairpinning)" in out, out
    finally:
        srv.stop()
    check_punching_hairpins(lab)


# Two UDP sockets, each sends to the other's public address and port, the
# first twice (its first datagram is filtered until the second socket has
# sent); each prints the source of what it got. With "pair", both are in
# this guest; with "one", one socket, which prints its port and reads the
# peer's from stdin.
PUNCH = r"""
import json, socket, sys, time
pub, mode = sys.argv[1], sys.argv[2]
def sock():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    s.settimeout(5)
    return s
if mode == "pair":
    a, b = sock(), sock()
    pa, pb = a.getsockname()[1], b.getsockname()[1]
    a.sendto(b"x", (pub, pb)); time.sleep(0.2)
    b.sendto(b"x", (pub, pa)); time.sleep(0.2)
    a.sendto(b"x", (pub, pb))
    print(json.dumps([pa, pb, a.recvfrom(9)[1], b.recvfrom(9)[1]]))
else:
    s = sock()
    print(s.getsockname()[1], flush=True)
    peer = int(sys.stdin.readline())
    for _ in range(3):
        s.sendto(b"x", (pub, peer)); time.sleep(0.2)
    print(json.dumps(s.recvfrom(9)[1]), flush=True)
"""


def check_punching_hairpins(lab):
    """Guests reach each other by their public addresses and ports (RFC 4787
    REQ-9, hairpinning with the external source address and port) once
    both have sent, as peer-to-peer applications punch holes: two sockets
    of one guest, under address- and address-and-port-dependent filtering,
    and a socket of each of two guests, whose blocks live on two hosts."""
    for h in ("h2", "h3"):
        pa, pb, from_b, from_a = json.loads(lab.exec(h, PY, "-c", PUNCH, PUBLIC, "pair").stdout)
        assert (from_b, from_a) == ([PUBLIC, pb], [PUBLIC, pa]), h
    ends = [lab.popen(h, PY, "-c", PUNCH, PUBLIC, "one", stdin=subprocess.PIPE)
            for h in ("h2", "h3")]
    try:
        ports = [int(e.stdout.readline()) for e in ends]
        for e, peer in zip(ends, reversed(ports)):
            e.stdin.write(f"{peer}\n")
            e.stdin.flush()
        got = [json.loads(e.stdout.readline()) for e in ends]
        assert got == [[PUBLIC, ports[1]], [PUBLIC, ports[0]]], (got, ports)
    finally:
        for e in ends:
            e.kill()
            e.wait()


FAR_SERVER = "198.51.100.200"  # one router behind the ISP, on a link of MTU 1400


def test_icmp_errors_reach_the_owner_so_tracepath_and_path_mtu_work(make_lab):
    """The ISP's router and the far server answer each guest's probes with
    ICMP errors addressed to the public address (time exceeded, fragmentation
    needed, port unreachable); the switch hands them to any live AEE, which
    passes them on to the flow's owner by the port (or echo id) they quote."""
    lab = nat_lab(make_lab)
    for h in ("h1", "h2", "h3"):
        out = lab.exec(h, "tracepath", "-n", "-m", "5", FAR_SERVER, check=False,
                       timeout=90).stdout
        # Hop 2, the ISP's router (time exceeded, and the smaller MTU),
        # hop 3 the server (port unreachable).
        assert re.search(r"^ *2: +203\.0\.113\.1 ", out, re.M), (h, out)
        assert "pmtu 1400" in out and "reached" in out, (h, out)
        assert re.search(r"Resume: pmtu 1400 hops 3 back 3", out), (h, out)
        # An echo request too big for the far link, not to be fragmented:
        # the router's "fragmentation needed" reaches ping.
        p = lab.exec(h, "ping", "-c", "2", "-W", "2", "-M", "do", "-s", "1450", FAR_SERVER,
                     check=False)
        assert re.search(r"mtu ?= ?1400", p.stdout + p.stderr), (h, p.stdout, p.stderr)


# Answers each datagram with N octets (more than fit in one frame: the
# server's kernel fragments them).
BIG_UDP_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5300))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(100)
    s.sendto(bytes(range(256)) * (int(data) // 256) + b"x" * (int(data) % 256), peer)
"""

BIG_UDP_CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
got = []
for size in (1473, 3000, 8000, 20000):
    for _ in range(3):
        s.sendto(str(size).encode(), (sys.argv[1], 5300))
        try:
            data = s.recv(65536)
            if len(data) == size:
                got.append(size)
                break
        except socket.timeout:
            pass
print(json.dumps(got))
"""


def test_inbound_fragments_reach_their_owner(make_lab):
    """Replies too big for one frame come back in fragments, of which only
    the first carries a port (or echo id): every guest gets them whole."""
    lab = nat_lab(make_lab)
    srv = Server(lab, "isp", PY, "-c", BIG_UDP_SERVER, SERVER)
    try:
        assert srv.p.stdout.readline().strip() == "ready"
        for h in ("h1", "h2", "h3"):
            p = lab.exec(h, "ping", "-c", "3", "-W", "2", "-s", "3000", SERVER, check=False)
            assert " 0% packet loss" in p.stdout, (h, p.stdout)
            got = json.loads(lab.exec(h, PY, "-c", BIG_UDP_CLIENT, SERVER).stdout)
            assert got == [1473, 3000, 8000, 20000], (h, got)
    finally:
        srv.stop()


def burst_code():
    """bench/nat-burst's server and client (the same burst, shorter)."""
    import importlib.machinery
    import importlib.util
    import sys
    bench = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench")
    sys.path.insert(0, bench)
    loader = importlib.machinery.SourceFileLoader("nat_burst", os.path.join(bench, "nat-burst"))
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader("nat_burst", loader))
    loader.exec_module(mod)
    return mod.SERVER_CODE, mod.CLIENT_CODE


def syn_retransmits(lab, name):
    """TcpExt TCPSynRetrans of namespace @name."""
    lines = [l.split() for l in lab.exec(name, "cat", "/proc/net/netstat").stdout.splitlines()
             if l.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1]))["TCPSynRetrans"])


def conntrack_insert_failed(lab, host):
    """In the host's AEE, summed over the CPUs: flows conntrack could not
    insert (a clash)."""
    rows = [l.split() for l in lab.aee(host, "cat", "/proc/net/stat/nf_conntrack").stdout
            .splitlines()]
    col = rows[0].index("insert_failed")
    return sum(int(r[col], 16) for r in rows[1:])


def test_a_burst_of_connections_loses_no_syn_to_a_new_block(make_lab):
    """1,500 connections in half a second from one guest need six blocks of
    the lab's 256 ports. Each new block is put to use only once the switch
    steers it to its host (before, an answer to a port of a block just
    claimed reached any AEE, and one that had not applied the claim dropped
    it), and each block has its own SNAT rule (before, a lookup in the
    blocks' map missed while the ruleset was replaced, and the flow took a
    port another flow then collided with). Either loss costs a connection
    its first SYN and a second: no SYN is sent twice."""
    lab = nat_lab(make_lab, 2)
    server, client = burst_code()
    lab.exec("isp", "sysctl", "-qw", "net.core.somaxconn=65535")
    srv = Server(lab, "isp", PY, "-u", "-c", server, SERVER, "5600")
    try:
        assert srv.p.stdout.readline().strip() == "ready"
        syn_before = syn_retransmits(lab, "h1")
        failed_before = conntrack_insert_failed(lab, "h1")
        fds = "import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))\n"
        out = lab.exec("h1", PY, "-c", fds + client, SERVER, "5600", "1500", "0.5")
        r = json.loads(out.stdout)
        assert (r["established"], r["failed"]) == (1500, 0), r
        assert conntrack_insert_failed(lab, "h1") == failed_before
        assert syn_retransmits(lab, "h1") == syn_before, r
    finally:
        srv.stop()
    held = blocks_of(lab)["h1"]
    assert len(held) >= 6, held
    log = lab.log("h1")
    steered = re.findall(r"nat: ports (\d+)-\d+ in use: steered (\d+) ms after the claim", log)
    assert {int(s) for s, _ in steered} >= {s for s, _ in held[1:]}, (steered, held)
    assert "not seen steered" not in log
