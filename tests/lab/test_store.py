"""The replicated store on a lab of five hosts: agreement, failover,
promotion of standbys, catching up, removal, and recovery from a lost
majority with nothing committed lost."""

import time

from conftest import run_and_expect


def digest(c):
    return c * 64


def trusted(lab, host):
    return {t["digest"] for t in lab.ctl_json(host, "trust", "list")["trusted"]}


def cluster(lab, host):
    return lab.ctl_json(host, "cluster")


def leader_of(lab, hosts):
    for h in hosts:
        try:
            c = cluster(lab, h)
        except AssertionError:
            continue
        if c["state"] == "leader":
            return h
    return None


def voters(lab, host):
    return {m["name"] for m in cluster(lab, host)["members"] if m["role"] == "voter"}


HOSTS = ["h1", "h2", "h3", "h4", "h5"]


def test_five_hosts_one_cluster_three_voters(make_lab):
    lab = make_lab(5, "--devices", "0")
    c = cluster(lab, "h5")
    assert {m["name"] for m in c["members"]} == set(HOSTS)
    run_and_expect(lambda: len(voters(lab, "h1")) == 3, 10, what="three voters")
    assert c["generation"] == 1

    # A write on any host is seen on all.
    lab.ctl("h4", "trust", "add", digest("a"), "--note", "written on h4")
    for h in HOSTS:
        run_and_expect(lambda h=h: digest("a") in trusted(lab, h), 5, what=f"{h} sees the write")
    # A write the state does not allow is refused with the reason.
    p = lab.ctl("h2", "trust", "add", digest("a"), check=False)
    assert p.returncode == 1 and "already trusted" in p.stderr
    p = lab.ctl("h2", "trust", "add", "not-a-digest", check=False)
    assert p.returncode == 1 and "64 lowercase hex digits" in p.stderr
    dump = lab.ctl_json("h3", "store", "dump")
    assert set(dump) >= {"cluster", "members", "admissions", "trusted", "policy", "nat_blocks",
                         "nat_mappings", "leases", "conflicts"}


def test_leader_failover_and_catch_up(make_lab):
    lab = make_lab(5, "--devices", "0")
    run_and_expect(lambda: len(voters(lab, "h1")) == 3, 10, what="three voters")
    lab.ctl("h2", "trust", "add", digest("1"))
    old = leader_of(lab, HOSTS)
    lab.lab("kill", old)
    rest = [h for h in HOSTS if h != old]
    new = run_and_expect(lambda: leader_of(lab, rest), 5, 0.05, what="a new leader")
    assert new != old
    # No committed write lost (a follower may apply it a moment after the
    # new leader tells it the commit index); the new leader takes writes.
    for h in rest:
        run_and_expect(lambda h=h: digest("1") in trusted(lab, h), 5, 0.05,
                       what=f"{h} has the committed write")
    lab.ctl(rest[-1], "trust", "add", digest("2"))
    # The old leader comes back as a follower and catches up.
    lab.lab("start", old)
    run_and_expect(lambda: digest("2") in trusted(lab, old), 10, what=f"{old} catches up")
    assert cluster(lab, old)["state"] != "leader" or leader_of(lab, rest) is None


def test_unreachable_voter_is_replaced_by_a_standby(make_lab):
    lab = make_lab(5, "--devices", "0")
    run_and_expect(lambda: len(voters(lab, "h1")) == 3, 10, what="three voters")
    leader = leader_of(lab, HOSTS)
    victim = sorted(voters(lab, leader) - {leader})[0]
    standbys = {m["name"] for m in cluster(lab, leader)["members"] if m["role"] == "standby"}
    lab.lab("kill", victim)
    # promote-after-ms is 3000 by default.
    run_and_expect(lambda: len(voters(lab, leader) & standbys) == 1
                   and victim not in voters(lab, leader), 15, 0.2,
                   what="a standby promoted and the dead voter demoted")
    assert len(voters(lab, leader)) == 3
    lab.ctl(leader, "trust", "add", digest("3"))


def test_removed_host_leaves(make_lab):
    lab = make_lab(4, "--devices", "0")
    run_and_expect(lambda: len(voters(lab, "h1")) == 3, 10, what="three voters")
    lab.ctl("h2", "cluster", "remove", "h4")
    assert "h4" not in {m["name"] for m in cluster(lab, "h1")["members"]}
    run_and_expect(lambda: cluster(lab, "h4")["state"] == "removed", 5, what="h4 knows")
    # It stays out across a restart.
    lab.lab("stop", "h4")
    lab.lab("start", "h4")
    time.sleep(1)
    assert "h4" not in {m["name"] for m in cluster(lab, "h1")["members"]}
    p = lab.ctl("h1", "cluster", "remove", "h9", check=False)
    assert p.returncode == 1 and "no member named h9" in p.stderr


def isolate(lab, host):
    for args in (["add", "table", "inet", "isolate"],
                 ["add", "chain", "inet", "isolate", "in",
                  "{ type filter hook input priority -10; policy drop; }"],
                 ["add", "chain", "inet", "isolate", "out",
                  "{ type filter hook output priority -10; policy drop; }"]):
        lab.aee(host, "nft", *args)


def rejoin(lab, host):
    lab.aee(host, "nft", "delete", "table", "inet", "isolate")


def test_majority_loss_recover_and_merge(make_lab):
    lab = make_lab(5, "--devices", "0")
    # The hosts join at once, so which two of h2-h5 vote beside h1 varies.
    vs = sorted(run_and_expect(lambda: (lambda v: v if len(v) == 3 else None)(
        voters(lab, "h1")), 10, what="three voters"))
    s1, s2 = [h for h in HOSTS if h not in vs]
    # The standbys are cut off; the voters go on committing writes they
    # alone have.
    isolate(lab, s1)
    isolate(lab, s2)
    lab.ctl(vs[0], "trust", "add", digest("b"), "--note", "orphan 1")
    lab.ctl(vs[1], "trust", "add", digest("c"), "--note", "orphan 2")
    # Then the voters lose power; the standbys talk again but have no
    # majority.
    for h in vs:
        lab.lab("stop", h)
    rejoin(lab, s1)
    rejoin(lab, s2)
    p = lab.ctl(s1, "trust", "add", digest("d"), check=False)
    assert p.returncode != 0
    out = lab.ctl(s1, "cluster", "recover").stdout
    assert "generation 2" in out
    run_and_expect(lambda: leader_of(lab, [s1, s2]), 10, what="a leader after recovery")
    # The other standby rejoins as a fresh replica: until it has caught
    # up, a write there is refused with "try again".
    run_and_expect(lambda: lab.ctl(s2, "trust", "add", digest("d"), "--note", "after recovery",
                                   check=False).returncode == 0, 10, 0.2,
                   what=f"a write on {s2} after recovery")
    # The three come back, learn of generation 2, rejoin and merge.
    for h in vs:
        lab.lab("start", h)
    want = {digest("b"), digest("c"), digest("d")}
    for h in HOSTS:
        run_and_expect(lambda h=h: want <= trusted(lab, h), 30, 0.5,
                       what=f"{h} has every write of both sides")
    for h in HOSTS:
        assert cluster(lab, h)["generation"] == 2
    assert lab.ctl_json("h1", "cluster", "conflicts")["conflicts"] == []


def test_recover_refused_while_a_leader_is_reachable(make_lab):
    lab = make_lab(3, "--devices", "0")
    p = lab.ctl("h2", "cluster", "recover", check=False)
    assert p.returncode == 1 and "only for a lost majority" in p.stderr
