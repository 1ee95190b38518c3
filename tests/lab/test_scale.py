"""A school's network: many hosts on two switches. `make check` runs it
with 16 hosts; `make check-slow` (ETTM_SLOW=1) with 64 as well. Every host
is admitted by attestation, each switch has one master and holds the flows
the store asks for, a sample of guests reach each other across and within
the switches, and every guest reaches the internet through its own block."""

import os

import pytest

from conftest import run_and_expect
from test_nat import PUBLIC, SERVER, blocks_of, clients, curl, http_server, in_blocks

SIZES = [16] + ([64] if os.environ.get("ETTM_SLOW") else [])


def guest_pairs(n):
    """Both ends of the range, and across the middle: h1-hN, h2-h(N-1), ...
    (odd hosts sit on s1, even on s2, so each pair crosses or not)."""
    return [(f"h{i}", f"h{n + 1 - i}") for i in range(1, 5)] + [("h1", "h3"), ("h2", "h4")]


@pytest.mark.parametrize("n", SIZES)
def test_many_hosts_on_two_switches(make_lab, tmp_path, n):
    lab = make_lab(n, "--switches", "2", "--devices", "0")
    hosts = [f"h{i}" for i in range(1, n + 1)]
    # Every host admitted by attestation (`up` waited for it: still so).
    state = {h["host"]: h["state"] for h in lab.ctl_json("h1", "hosts")["hosts"]}
    assert all(state.get(h) == "admitted" for h in hosts), state

    # One master per switch, and every switch's flows as desired, asked
    # of an agent that is not the master (it reads the flows then).
    sw = lab.ctl_json("h1", "switches")["switches"]
    assert len(sw) == 2
    for s in sw:
        assert [a["role"] for a in s["agents"]].count("master") == 1, s["agents"]
        assert len(s["agents"]) == n
        assert len(s["ports"]) >= n // 2, "every port known"
    master = next(a["host"] for a in sw[0]["agents"] if a["role"] == "master")
    other = next(h for h in hosts if h != master)
    for s in (1, 2):
        f = lab.ctl_json(other, "flows", f"s{s}")
        assert f["missing"] == 0 and f["unexpected"] == 0, (s, f["missing"], f["unexpected"])
        assert f["installed"] == f["desired"]

    # A sample of guests reach each other.
    for a, b in guest_pairs(n):
        r = lab.exec(a, "ping", "-n", "-c", "2", "-W", "2", f"10.77.1.{b[1:]}", check=False)
        assert r.returncode == 0, f"{a} -> {b}: {r.stdout}{r.stderr}"

    # Every guest reaches the internet as the public address, from a port
    # of its own host's block.
    run_and_expect(lambda: set(blocks_of(lab)) >= set(hosts), 20, 0.5,
                   what="a block for every host")
    blocks = blocks_of(lab)
    (tmp_path / "index.html").write_text("from the internet\n")
    srv = http_server(lab, "isp", SERVER, 80, str(tmp_path))
    try:
        for h in hosts:
            assert curl(lab, h, f"http://{SERVER}/").stdout == "from the internet\n", h
    finally:
        log = srv.stop()
    seen = clients(log)
    assert len(seen) == n, log
    for h, (addr, port) in zip(hosts, seen):
        assert addr == PUBLIC
        assert in_blocks(port, blocks[h]), f"{h} left by port {port}, not in {blocks[h]}"
