"""Unmanaged devices with real clients: a device that is not allowed reaches
no guest, no agent and not the internet; allowed, it reaches guests and the
internet server through its manager's AEE (as the public address), and
`ettmctl devices` shows what the master learned; when the manager's agent
is killed, another agent takes over within seconds and the device goes on;
removed, it reaches nothing again."""

import time

from conftest import run_and_expect
from test_nat import SERVER, PUBLIC, clients, curl, http_server

DEVICE = "d1"
DEVICE_ADDR = "10.77.2.1"


def device_mac(lab):
    return lab.exec(DEVICE, "cat", "/sys/class/net/eth0/address").stdout.strip()


def devices(lab, host):
    return lab.ctl_json(host, "devices")


def manager(lab, host):
    return devices(lab, host)["manager"]["host"]


def pings(lab, addr):
    return lab.exec(DEVICE, "ping", "-c", "1", "-W", "1", addr, check=False).returncode == 0


def reaches_nothing(lab):
    """The device's attempts to a guest, an agent, the ISP gateway and the
    internet server all fail."""
    for addr in ("10.77.1.2", "10.77.0.1", "203.0.113.1", SERVER):
        assert not pings(lab, addr), f"the device reached {addr}"
    assert curl(lab, DEVICE, f"http://{SERVER}/", check=False).returncode != 0


def allowed_lab(make_lab, tmp_path):
    lab = make_lab(3)
    (tmp_path / "index.html").write_text("from the internet\n")
    mac = device_mac(lab)
    return lab, mac


def test_allowed_device_goes_through_its_manager_and_survives_its_loss(make_lab, tmp_path):
    lab, mac = allowed_lab(make_lab, tmp_path)
    srv = http_server(lab, "isp", SERVER, 80, str(tmp_path))
    try:
        # Not allowed yet: nothing.
        reaches_nothing(lab)
        assert lab.ctl("h2", "devices", "allow", mac, "--name", "printer").stdout == \
            f"{mac} allowed\n"
        run_and_expect(lambda: pings(lab, "10.77.1.2"), 10, 0.2,
                       what="the allowed device pings h2's guest")
        assert curl(lab, DEVICE, f"http://{SERVER}/").stdout == "from the internet\n"

        # What the master learned, on every agent.
        first = manager(lab, "h3")
        assert first in ("h1", "h2", "h3")
        for h in ("h1", "h2", "h3"):
            (d,) = devices(lab, h)["devices"]
            assert d["mac"] == mac and d["name"] == "printer"
            assert d["address"] == DEVICE_ADDR
            assert d["dpid"] == "0000000000000001" and d["port"] > 0
            assert d["managed_by"] == first
        text = lab.ctl("h1", "devices").stdout
        assert f"manager  {first}" in text
        assert f"{mac}  printer" in text and DEVICE_ADDR in text

        # Its frames pass through the manager's AEE, and nobody else's.
        steered = lab.aee(first, "nft", "list", "table", "netdev", "ettm").stdout
        assert mac in steered and 'fwd to "dv0"' in steered
        for h in ("h1", "h2", "h3"):
            if h != first:
                assert "dv0" not in lab.aee(h, "ip", "-br", "link").stdout

        # The manager's agent dies: another takes over within seconds.
        lab.lab("kill", first)
        t0 = time.time()
        other = "h2" if first != "h2" else "h3"
        new = run_and_expect(lambda: (manager(lab, other) not in (first, None)) and
                             manager(lab, other), 15, 0.2, what="another manager")
        took = time.time() - t0
        assert new != first
        survivor_guest = next(f"10.77.1.{h[1:]}" for h in ("h1", "h2", "h3") if h != first)
        run_and_expect(lambda: pings(lab, survivor_guest), 10, 0.2,
                       what=f"the device pings {survivor_guest} through {new}")
        assert curl(lab, DEVICE, f"http://{SERVER}/").stdout == "from the internet\n"
        (d,) = devices(lab, other)["devices"]
        assert d["managed_by"] == new and d["address"] == DEVICE_ADDR
        print(f"manager {first} killed: {new} manages the device after {took:.1f} s")
    finally:
        log = srv.stop()
    # The server saw the organisation's public address, never the device's.
    assert [a for a, _ in clients(log)] == [PUBLIC] * 2, log


def test_device_not_allowed_or_removed_reaches_nothing(make_lab, tmp_path):
    lab, mac = allowed_lab(make_lab, tmp_path)
    srv = http_server(lab, "isp", SERVER, 80, str(tmp_path))
    try:
        reaches_nothing(lab)
        assert lab.ctl("h1", "devices").stdout.endswith("no devices allowed\n")
        lab.ctl("h1", "devices", "allow", mac, "--name", "visitor-phone")
        run_and_expect(lambda: pings(lab, "10.77.1.3"), 10, 0.2,
                       what="the allowed device pings h3's guest")
        assert lab.ctl("h3", "devices", "remove", mac).stdout == f"{mac} removed\n"
        run_and_expect(lambda: not pings(lab, "10.77.1.3"), 10, 0.2,
                       what="the removed device no longer reaches h3's guest")
        reaches_nothing(lab)
        # No flow of the switch names it any more.
        flows = lab.ctl("h2", "flows", "s1").stdout
        assert mac not in flows
        # Removing it again, or bad arguments, say why.
        p = lab.ctl("h2", "devices", "remove", mac, check=False)
        assert p.returncode == 1 and f"no device with MAC {mac} is allowed" in p.stderr
        p = lab.ctl("h2", "devices", "allow", "01:00:5e:00:00:01", "--name", "x", check=False)
        assert p.returncode == 1 and 'MAC "01:00:5e:00:00:01"' in p.stderr
        p = lab.ctl("h2", "devices", "allow", mac, "--name", "my phone", check=False)
        assert p.returncode == 1 and 'name "my phone"' in p.stderr
    finally:
        log = srv.stop()
    assert clients(log) == [], log
