#!/usr/bin/python3
"""The chaos test: a lab of its own, a stream of acknowledged writes, random
seeded faults, a monitor of every agent's role and every switch's master, and
a final check that nothing acknowledged was lost (docs/store.md: "Nothing
committed is silently lost").

    python3 tests/chaos/chaos.py --seconds N --seed S [--hosts 5] [--keep]

It brings up `lab/ettm-lab up --prefix chaosXXX`, runs, for N seconds:

- a writer: `ettm-lab ctl HOST -- trust add DIGEST --note chaos-K`, a
  unique digest per write (adding a trusted measurement changes no
  admission), to a host whose agent runs, chosen at random; every write's
  value, host, time sent, time acknowledged or error is recorded;
- a fault loop, seeded with random.Random(S): kill -9, stop, start,
  unplug, plug, partition, heal, TPM resets, and majority losses of the
  voters, recovered by fiat (unplugged: the failure detector) or by hand
  (killed: `ettmctl cluster recover` on a survivor);
- a monitor: every second, each agent's `cluster` (role, leader, term,
  generation) and `switch.local` (its role and mastership id, generation
  and term, at each switch), and a ping loop from every guest to the internet server;

then heals everything, waits (bounded) for the cluster to settle and
checks. The report (Markdown) is printed and written to OUT/report.md with
the raw records in OUT/raw.json and the agents' logs in OUT/logs/. The exit
status is 1 when a write was lost, a split brain seen or the final state
disagrees (each named in the report), 2 when the lab could not be made.
The lab is always torn down (also on SIGINT or SIGTERM) unless --keep.
"""

import argparse
import bisect
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import statistics
import string
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(REPO, "lab", "ettm-lab")
RUN_ROOT = "/run/ettm-lab"
INTERNET = "198.51.100.10"


def load_lab_module():
    """The lab's own helpers (ctl_call: one request on an agent's socket)."""
    loader = importlib.machinery.SourceFileLoader("ettm_lab", LAB)
    spec = importlib.util.spec_from_loader("ettm_lab", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


ettm_lab = load_lab_module()

# Fault kinds and their weights. Single-host faults are most of the load:
# each is cheap and probes one recovery path (a voter replaced after
# promote-after-ms, a master taken over, an agent re-attested). Majority
# losses cost 20-40 s each (the fiat waits fiat-after-ms, the returning
# hosts rejoin as fresh replicas), so they are rarer; with these weights
# about one event in six is one, a few per 100 s run.
WEIGHTS = {
    "kill": 3,              # kill -9 of one agent
    "stop": 2,              # SIGTERM of one agent
    "unplug": 2,            # its switch port down (power loss)
    "partition": 2,         # its IP traffic dropped, link up
    "restart-tpm": 1,       # a TPM reset: the agent attests again
    "majority-unplug": 1,   # a majority of voters unplugged: recovery by fiat
    "majority-kill": 1,     # a majority of voters killed: cluster recover by hand
}
REPAIR = {"kill": "start", "stop": "start", "unplug": "plug", "partition": "heal"}
# Pauses between events: around the store's timeouts (Raft's election
# timeout about 1 s, promote-after-ms 3 s, fiat-after-ms 2 s), so that some
# faults are repaired before they are noticed and others after.
PAUSE = (1.0, 4.0)
# At most this many hosts under a single-host fault at once: two of five
# may be two of the three voters (a majority loss no one recovers until a
# repair), which is a case worth having; three would often leave no
# majority of any kind.
MAX_FAULTED = 2
# A majority event waits this long for the cluster to answer again.
RECOVERY_WAIT = 40.0
# The faulted hosts stay out this long before they come back.
OUT_FOR = (3.0, 8.0)


def now():
    return time.time()


class Lab:
    def __init__(self, prefix, hosts):
        self.prefix, self.hosts = prefix, hosts
        self.dir = os.path.join(RUN_ROOT, prefix)

    def run(self, *args, timeout=120):
        """ettm-lab COMMAND --prefix P ARGS..., in a process group of its
        own, ended by its pid on timeout. Returns (rc, output)."""
        cmd = [LAB, args[0], "--prefix", self.prefix] + list(args[1:])
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            end_group(p)
            return 124, f"no answer in {timeout} s"
        return p.returncode, out.strip()

    def sock(self, n):
        return os.path.join(self.dir, f"h{n}", "ettmd.sock")

    def call(self, n, cmd, args=None, timeout=0.8):
        """One request on host n's control socket: the result or None."""
        try:
            ok, r = ettm_lab.ctl_call(self.sock(n), cmd, args, timeout=timeout)
        except (OSError, ValueError, KeyError):
            return None
        return r if ok else None


def end_group(p):
    """Ends a process group this driver started (its leader's pid is p.pid)."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.communicate(timeout=5)
    except (subprocess.TimeoutExpired, ValueError):
        pass


class Model:
    """What the fault loop did to each host: its agent running, its port
    plugged, its traffic passing; with a timeline of the faulted sets."""

    def __init__(self, hosts):
        self.lock = threading.Lock()
        self.running = {n: True for n in hosts}
        self.plugged = {n: True for n in hosts}
        self.passing = {n: True for n in hosts}
        self.timeline = [(0.0, frozenset(), "none")]

    def faulted(self):
        return {n for n in self.running
                if not (self.running[n] and self.plugged[n] and self.passing[n])}

    def snapshot(self, t, kind):
        self.timeline.append((t, frozenset(self.faulted()), kind))

    def live(self):
        with self.lock:
            return [n for n, r in self.running.items() if r]


class Writer(threading.Thread):
    """At most one write every `interval` seconds, at most `inflight` at
    once, each bounded by `timeout`."""

    def __init__(self, lab, model, seed, interval=0.2, inflight=4, timeout=8.0):
        super().__init__(daemon=True)
        self.lab, self.model = lab, model
        self.rng = random.Random(seed * 7919 + 1)
        self.interval, self.timeout, self.inflight = interval, timeout, inflight
        self.slots = threading.Semaphore(inflight)
        self.stop = threading.Event()
        self.writes = []
        self.lock = threading.Lock()
        self.threads = []

    def digest(self, k):
        return hashlib.sha256(f"chaos {self.lab.prefix} {k}".encode()).hexdigest()

    def one(self, w):
        try:
            rc, out = self.lab.run("ctl", f"h{w['host']}", "--", "trust", "add", w["digest"],
                                   "--note", f"chaos-{w['k']}", timeout=self.timeout)
            t = now()
            with self.lock:
                if rc == 0:
                    w["acked"] = t
                else:
                    w["error"] = (out.splitlines() or [f"exit {rc}"])[-1]
                    w["error_at"] = t
        finally:
            self.slots.release()

    def run(self):
        k = 0
        while not self.stop.is_set():
            started = now()
            live = self.model.live()
            if live and self.slots.acquire(timeout=1.0):
                k += 1
                w = {"k": k, "digest": self.digest(k), "host": self.rng.choice(live),
                     "sent": now(), "acked": None, "error": None}
                with self.lock:
                    self.writes.append(w)
                t = threading.Thread(target=self.one, args=(w,), daemon=True)
                t.start()
                self.threads.append(t)
            self.stop.wait(max(0.0, self.interval - (now() - started)))

    def finish(self):
        self.stop.set()
        self.join()
        for t in self.threads:
            t.join(self.timeout + 10)


class Monitor(threading.Thread):
    """Every second: each agent's cluster view and its switch roles."""

    def __init__(self, lab, hosts):
        super().__init__(daemon=True)
        self.lab, self.hosts = lab, hosts
        self.stop = threading.Event()
        self.samples = []  # {t, round, host, state, leader, term, generation, ..., switches}
        self.lock = threading.Lock()

    def sample_host(self, rnd, n, out):
        t = now()
        c = self.lab.call(n, "cluster")
        s = self.lab.call(n, "switch.local")
        rec = {"t": t, "round": rnd, "host": f"h{n}", "up": c is not None}
        if c:
            rec.update({k: c.get(k) for k in ("state", "leader", "term", "generation",
                                               "commit_index", "applied_index",
                                               "orphans_pending")})
            rec["voters"] = sorted(m["name"] for m in c.get("members", [])
                                   if m.get("role") == "voter")
            fd = c.get("failure_detector") or {}
            rec["failure_detector"] = fd.get("state")
        if s:
            # The mastership id is the generation and the term: a survivor
            # that recovers leads generation 2 in generation 1's term.
            rec["switches"] = {x["dpid"]: [x["role"], f"g{x.get('generation')}/t{x.get('term')}"]
                               for x in s["switches"] if x.get("dpid")}
        out.append(rec)

    def run(self):
        rnd = 0
        while not self.stop.is_set():
            started = now()
            out = []
            ts = [threading.Thread(target=self.sample_host, args=(rnd, n, out), daemon=True)
                  for n in self.hosts]
            for t in ts:
                t.start()
            for t in ts:
                t.join(3)
            with self.lock:
                self.samples.extend(out)
            rnd += 1
            self.stop.wait(max(0.0, 1.0 - (now() - started)))

    def latest(self):
        """The last round's records, by host."""
        with self.lock:
            if not self.samples:
                return {}
            last = self.samples[-1]["round"]
            return {r["host"]: r for r in self.samples if r["round"] >= last - 1}

    def leader(self):
        views = [r for r in self.latest().values() if r.get("state") == "leader"]
        return max(views, key=lambda r: (r.get("generation") or 0, r.get("term") or 0),
                   default=None)


class Pinger:
    """One guest pinging the internet server every 100 ms."""

    LINE = re.compile(r"^\[(\d+\.\d+)\] (?:\d+ bytes from .*icmp_seq=(\d+)|"
                      r"no answer yet for icmp_seq=(\d+))")

    def __init__(self, lab, n):
        self.n = n
        self.replies, self.missing = {}, {}
        self.p = subprocess.Popen(["ip", "netns", "exec", f"{lab.prefix}-h{n}", "ping", "-D",
                                   "-O", "-n", "-i", "0.1", "-W", "1", INTERNET],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  start_new_session=True)
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        for line in self.p.stdout:
            m = self.LINE.match(line)
            if not m:
                continue
            t = float(m.group(1))
            if m.group(2):
                self.replies[int(m.group(2))] = t
            else:
                # Printed as the next request leaves: this one left 0.1 s before.
                self.missing[int(m.group(3))] = t - 0.1

    def end(self):
        end_group(self.p)
        self.reader.join(5)

    def pings(self):
        """(time sent, answered) for every request it reported on."""
        out = [(t, True) for t in self.replies.values()]
        out += [(t, False) for s, t in self.missing.items() if s not in self.replies]
        return sorted(out)


class Faults:
    """The seeded fault loop."""

    def __init__(self, lab, model, monitor, seed, kinds, log):
        self.lab, self.model, self.monitor = lab, model, monitor
        self.rng = random.Random(seed)
        self.weights = {k: w for k, w in WEIGHTS.items() if k in kinds}
        self.events = []
        self.log = log
        self.findings = []

    def event(self, kind, hosts, rc=0, out="", **extra):
        t = now()
        leader = self.monitor.leader()
        e = {"t": t, "kind": kind, "hosts": [f"h{n}" for n in hosts], "ok": rc == 0,
             "output": out[-400:], "leader_before": leader and leader["host"], **extra}
        with self.model.lock:
            self.model.snapshot(t, kind)
        self.events.append(e)
        self.log(f"  {time.strftime('%H:%M:%S')} {kind} {' '.join(e['hosts'])}"
                 f"{'' if rc == 0 else ' FAILED: ' + (out.splitlines() or [''])[-1]}")
        return e

    def act(self, kind, n):
        """One single-host action through ettm-lab; updates the model."""
        leader = self.monitor.leader()
        others = sorted(f"h{x}" for x in self.model.faulted() if x != n)
        t = now()
        rc, out = self.lab.run(kind, f"h{n}", timeout=60)
        with self.model.lock:
            if rc == 0 or kind in ("kill", "stop"):
                if kind in ("kill", "stop"):
                    self.model.running[n] = False if rc == 0 else self.model.running[n]
                elif kind == "start":
                    self.model.running[n] = True
                elif kind in ("unplug", "plug"):
                    self.model.plugged[n] = kind == "plug"
                elif kind in ("partition", "heal"):
                    self.model.passing[n] = kind == "heal"
        e = self.event(kind, [n], rc, out)
        e["t"] = t  # when it began, for the windows
        e["leader_before"] = leader and leader["host"]
        e["others_faulted"] = others
        if kind == "start" and rc != 0:
            self.findings.append(f"h{n}: `ettm-lab start` failed at {time.strftime('%H:%M:%S', time.localtime(t))}: "
                                 f"{(out.splitlines() or [''])[-1]}")
        return rc

    def faults_of(self, n):
        with self.model.lock:
            return [k for k, ok in (("kill", self.model.running[n]),
                                    ("unplug", self.model.plugged[n]),
                                    ("partition", self.model.passing[n])) if not ok]

    def repair(self, n):
        for f in self.faults_of(n):
            rc = self.act(REPAIR[f], n)
            if f == "kill" and rc != 0:
                # An agent that will not start (the TPM out of object
                # memory after kills, issue 20): a TPM reset, then again.
                self.act("restart-tpm", n)
                self.act("start", n)

    def repair_all(self):
        self.check_agents()
        for n in sorted(self.model.faulted()):
            self.repair(n)

    def still_committing(self, lead, gone):
        """A survivor leads the old generation and commits past where it
        was when the hosts went: they were not a majority of the voters."""
        now_lead = self.monitor.leader()
        return bool(now_lead and now_lead["host"] not in {f"h{n}" for n in gone} and
                    now_lead.get("generation") == lead.get("generation") and
                    (now_lead.get("commit_index") or 0) > (lead.get("commit_index") or 0) + 5)

    def wait_leader(self, timeout, exclude=(), above=None, kept=None):
        """A leader not in exclude, of a generation above `above` when given
        (a leader cut off from its majority calls itself leader until its
        election timeout: it must not count as the recovery)."""
        deadline = now() + timeout
        while now() < deadline:
            lead = self.monitor.leader()
            if lead and lead["host"] not in exclude and \
                    (above is None or (lead.get("generation") or 0) > above):
                return lead
            if kept and now() > deadline - timeout + 10 and kept():
                return "kept"  # no majority was lost after all
            time.sleep(0.5)
        return None

    def majority(self, kind):
        """A majority of the voters at once; recovery by fiat or by hand."""
        self.repair_all()
        lead = self.wait_leader(20)
        if not lead:
            self.findings.append(f"no leader 20 s after every host was repaired "
                                 f"(before {kind} at {time.strftime('%H:%M:%S')})")
            return
        fresh = self.lab.call(int(lead["host"][1:]), "cluster", timeout=2) or {}
        if fresh.get("state") == "leader":  # the voters now, not a second ago
            lead = dict(lead, voters=sorted(m["name"] for m in fresh.get("members", [])
                                            if m.get("role") == "voter"),
                        commit_index=fresh.get("commit_index"))
        voters = [int(v[1:]) for v in lead.get("voters") or []]
        if len(voters) < 2:
            return
        gone = sorted(self.rng.sample(sorted(voters), len(voters) // 2 + 1))
        action = "unplug" if kind == "majority-unplug" else "kill"
        t0 = now()
        res = {}
        ts = [threading.Thread(target=lambda n=n: res.__setitem__(
            n, self.lab.run(action, f"h{n}", timeout=30))) for n in gone]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        with self.model.lock:
            for n in gone:
                if res[n][0] == 0:
                    if action == "unplug":
                        self.model.plugged[n] = False
                    else:
                        self.model.running[n] = False
        e = self.event(kind, gone, max(r[0] for r in res.values()),
                       "; ".join(r[1] for r in res.values()),
                       generation_before=lead.get("generation"), voters=lead.get("voters"))
        e["t"] = t0
        survivors = [n for n in self.model.running if n not in gone]
        if kind == "majority-kill":
            time.sleep(self.rng.uniform(1.0, 3.0))
            order = survivors[:]
            self.rng.shuffle(order)
            refusals = []
            for n in order:
                rc, out = self.lab.run("ctl", f"h{n}", "--", "cluster", "recover", timeout=30)
                self.event("recover", [n], rc, out)
                if rc == 0:
                    break
                refusals.append(out)
            else:
                if self.still_committing(lead, gone):
                    # The voters changed between the look and the kill (a
                    # standby promoted): the survivors kept a majority, and
                    # recover rightly refused.
                    e["majority"] = False
                else:
                    self.findings.append(f"`cluster recover` refused on every survivor "
                                         f"({', '.join(f'h{n}' for n in order)}) after killing "
                                         f"{', '.join(f'h{n}' for n in gone)}: {refusals}")
        got = None if e.get("majority") is False else \
            self.wait_leader(RECOVERY_WAIT, exclude={f"h{n}" for n in gone},
                             above=lead.get("generation") or 0,
                             kept=lambda: self.still_committing(lead, gone))
        if got == "kept":
            e["majority"] = False
        elif got:
            self.event("new-generation", [int(got["host"][1:])],
                       generation=got.get("generation"), after_s=round(now() - t0, 2))
        elif e.get("majority") is not False:
            self.findings.append(
                f"{kind} of {', '.join(f'h{n}' for n in gone)} at "
                f"{time.strftime('%H:%M:%S', time.localtime(t0))}: no leader of a new generation "
                f"among the survivors within {RECOVERY_WAIT:.0f} s")
        time.sleep(self.rng.uniform(*OUT_FOR))
        for n in gone:
            self.repair(n)

    def check_agents(self):
        """An agent the model says runs but whose pid is gone exited on its
        own (a crash): a finding, with its log's last line and the kernel's
        word on it; the model then counts it down, so that it is started
        again like a killed one."""
        try:
            with open(os.path.join(self.lab.dir, "lab.json")) as f:
                agents = json.load(f)["agents"]
        except (OSError, ValueError, KeyError):
            return
        for n in self.model.live():
            pid = agents.get(str(n), {}).get("pid")
            if pid and not ettm_lab.pid_alive(pid):
                with self.model.lock:
                    self.model.running[n] = False
                last = ettm_lab.log_tail(ettm_lab.Lab(self.lab.prefix), n, 1)
                kernel = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
                crash = [line.strip() for line in kernel.splitlines() if f"[{pid}]" in line]
                self.event("crashed", [n], 1, f"pid {pid}: {crash[-1] if crash else 'exited'}")
                self.findings.append(f"h{n}: the agent (pid {pid}) exited on its own, found at "
                                     f"{time.strftime('%H:%M:%S')}: "
                                     f"{crash[-1] if crash else 'no word from the kernel'}; its "
                                     f"log's last line: {last}; events before: "
                                     f"{context_events(self.events, now(), 4)}")

    def step(self):
        self.check_agents()
        faulted = sorted(self.model.faulted())
        if faulted and (len(faulted) >= MAX_FAULTED or self.rng.random() < 0.5):
            self.repair(self.rng.choice(faulted))
            return
        kinds = sorted(self.weights)
        kind = self.rng.choices(kinds, [self.weights[k] for k in kinds])[0]
        if kind.startswith("majority"):
            self.majority(kind)
            return
        healthy = [n for n in sorted(self.model.running) if n not in faulted]
        n = self.rng.choice(healthy)
        self.act(kind, n)

    def run(self, seconds):
        deadline = now() + seconds
        while now() < deadline:
            if deadline - now() < RECOVERY_WAIT + OUT_FOR[1]:
                # No majority event that could not finish in time.
                self.weights = {k: w for k, w in self.weights.items()
                                if not k.startswith("majority")} or {"kill": 1}
            self.step()
            time.sleep(self.rng.uniform(*PAUSE))


# ---- the final check ----

def settle(lab, hosts, timeout):
    """Until every agent agrees on one leader and generation, with nothing
    left to apply and no orphans pending. Returns (settled, last views)."""
    deadline = now() + timeout
    views = {}
    while now() < deadline:
        views = {n: lab.call(n, "cluster", timeout=2) for n in hosts}
        ok = all(views.values())
        if ok:
            leaders = {v.get("leader") for v in views.values()}
            gens = {v.get("generation") for v in views.values()}
            ok = (len(leaders) == 1 and None not in leaders and len(gens) == 1 and
                  all(v["applied_index"] == v["commit_index"] and not v.get("orphans_pending")
                      for v in views.values()))
        if ok:
            return True, views
        time.sleep(1)
    return False, views


def dumps(lab, hosts, timeout):
    """Every host's store dump at one applied index (retried while the
    cluster writes on), and its conflicts. Returns (same index, dumps,
    conflicts, indices)."""
    deadline = now() + timeout
    while True:
        before = {n: (lab.call(n, "cluster", timeout=3) or {}).get("applied_index") for n in hosts}
        got = {n: lab.call(n, "store.dump", timeout=5) for n in hosts}
        after = {n: (lab.call(n, "cluster", timeout=3) or {}).get("applied_index") for n in hosts}
        conf = {n: (lab.call(n, "cluster.conflicts", timeout=3) or {}).get("conflicts") for n in hosts}
        same = (before == after and len(set(before.values())) == 1 and
                all(v is not None for v in got.values()))
        if same or now() > deadline:
            return same, got, conf, before
        time.sleep(0.3)


def rows_key(rows):
    return sorted(json.dumps(r, sort_keys=True) for r in rows) if isinstance(rows, list) \
        else json.dumps(rows, sort_keys=True)


def compare_dumps(got):
    """Differences between the hosts' dumps, table by table. Nothing is
    ignored: every table is replicated state and must be equal once the
    cluster has applied the same index."""
    diffs = []
    hosts = [n for n in got if got[n] is not None]
    missing = [n for n in got if got[n] is None]
    for n in missing:
        diffs.append(f"h{n}: no dump (its agent did not answer)")
    if not hosts:
        return diffs
    tables = sorted(set().union(*(got[n].keys() for n in hosts)))
    for table in tables:
        keys = {n: rows_key(got[n].get(table)) for n in hosts}
        ref = keys[hosts[0]]
        odd = [n for n in hosts if keys[n] != ref]
        if odd:
            a, b = hosts[0], odd[0]
            sa, sb = set(keys[a]) if isinstance(keys[a], list) else {keys[a]}, \
                set(keys[b]) if isinstance(keys[b], list) else {keys[b]}
            only_a, only_b = sorted(sa - sb)[:3], sorted(sb - sa)[:3]
            diffs.append(f"table {table}: h{a} and {', '.join(f'h{n}' for n in odd)} differ; "
                         f"only on h{a}: {only_a}; only on h{b}: {only_b}")
    return diffs


# ---- figures ----

def median_max(xs):
    return (statistics.median(xs), max(xs)) if xs else (None, None)


def fmt(x, unit="s"):
    return "-" if x is None else f"{x:.2f} {unit}"


def windows(events, writes, kinds, pred=lambda e: True):
    """From each matching event to the first acknowledged write sent after
    it began."""
    acked = sorted((w["sent"], w["acked"]) for w in writes if w["acked"])
    sent = [a[0] for a in acked]
    out = []
    for e in events:
        if e["kind"] not in kinds or not pred(e):
            continue
        i = bisect.bisect_left(sent, e["t"])
        later = [a for _, a in acked[i:]]
        if later:
            out.append((e, min(later) - e["t"]))
        else:
            out.append((e, None))
    return out


def split_brain(samples):
    """Rounds with two leaders in one term, and with two masters of one
    switch at one mastership term."""
    by_round = {}
    for s in samples:
        by_round.setdefault(s["round"], []).append(s)
    leaders2, masters2, generations2 = [], [], []
    for rnd, recs in sorted(by_round.items()):
        terms = {}
        for r in recs:
            if r.get("state") == "leader":
                terms.setdefault(r.get("term"), []).append(r)
        for term, rs in terms.items():
            if len(rs) > 1:
                leaders2.append((rnd, recs[0]["t"], term, [(r["host"], r.get("generation")) for r in rs]))
        lead_gens = {(r.get("generation"), r.get("term"), r["host"]) for r in recs
                     if r.get("state") == "leader"}
        if len(lead_gens) > 1:
            generations2.append((rnd, recs[0]["t"], sorted(lead_gens, key=str)))
        masters = {}
        for r in recs:
            for dpid, (role, term) in (r.get("switches") or {}).items():
                if role == "master":
                    masters.setdefault((dpid, term), []).append(r["host"])
        for (dpid, term), hs in masters.items():
            if len(hs) > 1:
                masters2.append((rnd, recs[0]["t"], dpid, term, hs))
    return leaders2, masters2, generations2


def ping_loss(pingers, model):
    """Guests' loss by the kind of the last event: for guests whose own
    host was not under a fault at the time (a guest behind an unplugged
    host has no way out), and separately for those whose host was."""
    times = [t for t, _, _ in model.timeline]
    table = {}
    for p in pingers:
        for t, ok in p.pings():
            i = bisect.bisect_right(times, t) - 1
            _, faulted, kind = model.timeline[max(i, 0)]
            own = p.n in faulted
            k = table.setdefault(kind, {"sent": 0, "lost": 0, "own_sent": 0, "own_lost": 0})
            if own:
                k["own_sent"] += 1
                k["own_lost"] += not ok
            else:
                k["sent"] += 1
                k["lost"] += not ok
    return table


def loss_streaks(pingers, model, min_lost=10):
    """Runs of at least min_lost lost pings in a row from a guest whose
    host was not faulted: the data plane's outages, with when."""
    times = [t for t, _, _ in model.timeline]
    out = []
    for p in pingers:
        run = []
        for t, ok in p.pings() + [(float("inf"), True)]:
            i = bisect.bisect_right(times, t) - 1
            own = t != float("inf") and p.n in model.timeline[max(i, 0)][1]
            if not ok and not own:
                run.append(t)
                continue
            if len(run) >= min_lost:
                out.append((f"h{p.n}", run[0], run[-1] - run[0] + 0.1, len(run)))
            run = []
    return sorted(out, key=lambda x: x[1])


def hms(t):
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 10) % 10}"


def context_events(events, t, before=5):
    earlier = [e for e in events if e["t"] <= t][-before:]
    return "; ".join(f"{hms(e['t'])} {e['kind']} {' '.join(e['hosts'])}" for e in earlier)


def report(a, lab, faults, writer, monitor, pingers, model, final, failures, started):
    events = faults.events
    writes = writer.writes
    L = []
    L.append(f"# Chaos report: seed {a.seed}, {a.seconds} s, {a.hosts} hosts, lab {lab.prefix}")
    L.append("")
    L.append(f"Run {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}, "
             f"{now() - started:.0f} s in all. Reproduce: `python3 tests/chaos/chaos.py "
             f"--seconds {a.seconds} --seed {a.seed} --hosts {a.hosts} --kinds {','.join(a.kinds)}`"
             " (the choices are seeded; their targets follow the cluster's state, e.g. which "
             "hosts are voters, so two runs of one seed may differ in timing).")
    L.append("")
    L.append("**Result: " + ("PASS" if not failures else f"FAIL ({len(failures)})") + "**")
    for f in failures:
        L.append(f"- {f}")
    L.append("")
    L.append("## Settings")
    L.append(f"- weights: {', '.join(f'{k} {w}' for k, w in WEIGHTS.items() if k in a.kinds)}; "
             f"a repair (start, plug, heal) with probability 0.5 when a host is faulted, always "
             f"at {MAX_FAULTED} faulted; pause {PAUSE[0]}-{PAUSE[1]} s between events; "
             f"majority losses out for {OUT_FOR[0]}-{OUT_FOR[1]} s, recovery awaited "
             f"{RECOVERY_WAIT:.0f} s")
    L.append(f"- writer: one write every {writer.interval} s at most, "
             f"{writer.inflight} in flight at most, {writer.timeout} s timeout each")
    L.append("- monitor: every agent's `cluster` and `switch.local` every second; guests "
             f"h1..h{a.hosts} ping {INTERNET} every 100 ms")
    L.append("")
    L.append("## Events by kind")
    L.append("| kind | count | failed |")
    L.append("|---|---|---|")
    kinds = sorted({e["kind"] for e in events})
    for k in kinds:
        es = [e for e in events if e["kind"] == k]
        name = f"{k} (observed: the survivors' new leader)" if k == "new-generation" else k
        L.append(f"| {name} | {len(es)} | {sum(not e['ok'] for e in es)} |")
    L.append("")
    acked = [w for w in writes if w["acked"]]
    L.append("## Writes")
    L.append(f"- attempted {len(writes)}, acknowledged {len(acked)}, errors "
             f"{sum(1 for w in writes if w['error'])}, lost {len(final.get('lost', []))}, "
             f"duplicated {final.get('duplicated', 0)}")
    L.append(f"- not acknowledged but present everywhere (committed, the answer lost): "
             f"{final.get('unacked_present', 0)}")
    errs = {}
    for w in writes:
        if w["error"]:
            errs[w["error"][:90]] = errs.get(w["error"][:90], 0) + 1
    for e, c in sorted(errs.items(), key=lambda x: -x[1])[:8]:
        L.append(f"  - {c} x `{e}`")
    L.append("")
    leaders2, masters2, gens2 = split_brain(monitor.samples)
    L.append("## Split brain")
    L.append(f"- seconds with two leaders in one term: {len(leaders2)}")
    L.append(f"- seconds with two masters of one switch at one mastership term: {len(masters2)}")
    for x in (leaders2 + masters2)[:10]:
        L.append(f"  - {hms(x[1])}: {x[2:]}")
    L.append(f"- seconds with leaders of different terms or generations at once (not a "
             f"failure: a deposed leader cut off keeps its state until it hears of the new "
             f"term; it can commit nothing): {len(gens2)}")
    for x in gens2[:5]:
        L.append(f"  - {hms(x[1])}: {x[2]}")
    L.append("")
    L.append("## Unavailability (to the next acknowledged write sent after the event)")
    lw = windows(events, writes, {"kill", "stop", "unplug", "partition"},
                 lambda e: e["leader_before"] in e["hosts"] and not e.get("others_faulted"))
    lw2 = windows(events, writes, {"kill", "stop", "unplug", "partition"},
                  lambda e: e["leader_before"] in e["hosts"] and e.get("others_faulted"))
    mw = windows(events, writes, {"majority-unplug", "majority-kill"},
                 lambda e: e.get("majority") is not False)
    rw = windows(events, writes, {"recover"}, lambda e: e["ok"])
    for name, ws in (("after a leader loss (no other host faulted)", lw),
                     ("after a leader loss with another host already faulted (may be a "
                      "majority of the voters: no fiat for a partition)", lw2),
                     ("after a majority loss", mw),
                     ("after a `cluster recover` by hand (the majority loss began 1-3 s before)",
                      rw)):
        xs = [x for _, x in ws if x is not None]
        med, mx = median_max(xs)
        L.append(f"- {name}: {len(ws)} events, median {fmt(med)}, max {fmt(mx)}"
                 f"{'' if len(xs) == len(ws) else f', {len(ws) - len(xs)} never followed by a write'}")
        for e, x in ws:
            also = f" (already faulted: {', '.join(e['others_faulted'])})" \
                if e.get("others_faulted") else ""
            L.append(f"  - {hms(e['t'])} {e['kind']} {' '.join(e['hosts'])}{also}: {fmt(x)}")
    L.append("")
    L.append("## Guests' ping loss by the last event's kind")
    L.append("| last event | pings (hosts not faulted) | lost | % | pings (own host faulted) | lost |")
    L.append("|---|---|---|---|---|---|")
    for k, v in sorted(ping_loss(pingers, model).items()):
        pct = 100.0 * v["lost"] / v["sent"] if v["sent"] else 0.0
        L.append(f"| {k} | {v['sent']} | {v['lost']} | {pct:.1f} | {v['own_sent']} | {v['own_lost']} |")
    streaks = loss_streaks(pingers, model)
    L.append("")
    L.append(f"Outages (10 or more pings lost in a row by a guest whose host was not faulted): {len(streaks)}")
    for h, t, d, c in streaks[:15]:
        L.append(f"- {h} from {hms(t)} for {d:.1f} s ({c} pings); events before: "
                 f"{context_events(events, t, 3)}")
    L.append("")
    L.append("## Final state")
    L.append(f"- settled: {final.get('settled')}; dumps at one applied index: {final.get('same_index')} "
             f"({final.get('indices')})")
    for d in final.get("diffs", []):
        L.append(f"- {d}")
    for f in faults.findings:
        L.append(f"- finding: {f}")
    L.append("")
    L.append("## Event log")
    for e in events:
        L.append(f"- {hms(e['t'])} {e['kind']} {' '.join(e['hosts'])}"
                 f"{'' if e['ok'] else ' FAILED: ' + (e['output'].splitlines() or [''])[-1][:160]}"
                 f" (leader before: {e['leader_before']})"
                 f"{' (not a majority loss after all: the voters had changed)' if e.get('majority') is False else ''}")
    return "\n".join(L) + "\n"


def final_check(lab, hosts, writer, faults, settle_timeout):
    final = {}
    failures = []
    final["settled"], views = settle(lab, hosts, settle_timeout)
    if not final["settled"]:
        failures.append("the cluster did not settle (one leader, one generation, all applied, "
                        f"no orphans pending) within {settle_timeout:.0f} s: " +
                        "; ".join(f"h{n}: " + (f"{v.get('state')}, leader {v.get('leader')}, term "
                                              f"{v.get('term')}, generation {v.get('generation')}, "
                                              f"applied {v.get('applied_index')}/{v.get('commit_index')}"
                                              f"{', orphans pending' if v.get('orphans_pending') else ''}"
                                              if v else "no answer")
                                  for n, v in sorted(views.items())))
    same, got, conf, indices = dumps(lab, hosts, 30)
    final["same_index"], final["indices"] = same, {f"h{n}": i for n, i in indices.items()}
    final["diffs"] = compare_dumps(got)
    if final["diffs"]:
        failures.append("the hosts' dumps disagree: " + " | ".join(final["diffs"]))
    lost, duplicated, unacked_present = [], 0, 0
    trusted = {n: [r["digest"] for r in (got[n] or {}).get("trusted", [])] for n in hosts}
    present = {n: set(ds) for n, ds in trusted.items()}
    conflicts = {n: json.dumps(conf.get(n) or []) for n in hosts}
    for n in hosts:
        duplicated += len(trusted[n]) - len(present[n])
    answered = [n for n in hosts if got[n] is not None]  # the others are named in diffs
    for w in writer.writes:
        where = [n for n in answered
                 if w["digest"] not in present[n] and w["digest"] not in conflicts[n]]
        if w["acked"] and where:
            lost.append((w, where))
        if not w["acked"] and not where:
            unacked_present += 1
    final["lost"], final["duplicated"], final["unacked_present"] = lost, duplicated, unacked_present
    if lost:
        ex = "; ".join(f"chaos-{w['k']} (to h{w['host']} at {hms(w['sent'])}, acked "
                       f"{hms(w['acked'])}; missing on {', '.join(f'h{n}' for n in where)}; events "
                       f"before: {context_events(faults.events, w['acked'], 4)})"
                       for w, where in lost[:5])
        failures.append(f"{len(lost)} acknowledged writes lost (neither in trusted nor in "
                        f"conflicts): {ex}")
    if duplicated:
        failures.append(f"{duplicated} duplicated rows in trusted")
    return final, failures


def keep_logs(lab, hosts, out):
    d = os.path.join(out, "logs")
    os.makedirs(d, exist_ok=True)
    for n in hosts:
        src = os.path.join(lab.dir, f"h{n}", "ettmd.log")
        if os.path.exists(src):
            shutil.copy(src, os.path.join(d, f"h{n}.log"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=120, help="how long faults run (default 120)")
    ap.add_argument("--seed", type=int, default=None, help="the fault loop's seed (default: random)")
    ap.add_argument("--hosts", type=int, default=5)
    ap.add_argument("--kinds", default=",".join(WEIGHTS),
                    help=f"fault kinds to inject, comma-separated (default all: {','.join(WEIGHTS)})")
    ap.add_argument("--interval", type=float, default=0.2,
                    help="seconds between writes, at least 0.1 (default 0.2)")
    ap.add_argument("--settle", type=float, default=90, help="bound on the final wait (default 90 s)")
    ap.add_argument("--out", help="where the report, raw records and logs go "
                                  "(default build/chaos/seed-S)")
    ap.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("chaos: needs root (the lab makes network namespaces)", file=sys.stderr)
        return 2
    a.seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 30)
    a.kinds = [k for k in a.kinds.split(",") if k]
    bad = [k for k in a.kinds if k not in WEIGHTS]
    if bad or not a.kinds:
        print(f"chaos: unknown kinds {bad}; known: {', '.join(WEIGHTS)}", file=sys.stderr)
        return 2
    a.interval = max(0.1, a.interval)
    out = a.out or os.path.join(a.build_dir, "chaos", f"seed-{a.seed}")
    os.makedirs(out, exist_ok=True)
    prefix = "chaos" + "".join(random.SystemRandom().choice(string.ascii_lowercase + string.digits)
                               for _ in range(3))
    lab = Lab(prefix, a.hosts)
    hosts = list(range(1, a.hosts + 1))

    def log(msg):
        print(msg, flush=True)

    def terminated(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, terminated)

    started = now()
    pingers, writer, monitor = [], None, None
    rc = 2
    try:
        log(f"chaos: seed {a.seed}, {a.seconds} s, {a.hosts} hosts, lab {prefix}; kinds "
            f"{', '.join(f'{k} ({WEIGHTS[k]})' for k in a.kinds)}; pause {PAUSE[0]}-{PAUSE[1]} s")
        up_rc, up_out = lab.run("up", "--hosts", str(a.hosts), "--build-dir", a.build_dir,
                                timeout=240)
        if up_rc != 0:
            log(f"chaos: ettm-lab up failed:\n{up_out}")
            return 2
        model = Model(hosts)
        monitor = Monitor(lab, hosts)
        monitor.start()
        pingers = [Pinger(lab, n) for n in hosts]
        writer = Writer(lab, model, a.seed, a.interval)
        writer.start()
        faults = Faults(lab, model, monitor, a.seed, a.kinds, log)
        time.sleep(3)  # a baseline of writes and pings before the first fault
        log("chaos: faults")
        faults.run(a.seconds)
        log("chaos: repairing every host")
        faults.repair_all()
        for n in hosts:  # whatever the model says, every host plugged and healed
            lab.run("heal", f"h{n}", timeout=30)
            lab.run("plug", f"h{n}", timeout=30)
        time.sleep(3)
        writer.finish()
        log("chaos: settling and checking")
        final, failures = final_check(lab, hosts, writer, faults, a.settle)
        monitor.stop.set()
        monitor.join(5)
        for p in pingers:
            p.end()
        leaders2, masters2, _ = split_brain(monitor.samples)
        if leaders2:
            failures.append(f"two leaders in one term at {len(leaders2)} sampled seconds, first "
                            f"{hms(leaders2[0][1])}: term {leaders2[0][2]}: {leaders2[0][3]}; "
                            f"events before: {context_events(faults.events, leaders2[0][1])}")
        if masters2:
            failures.append(f"two masters of one switch at one term at {len(masters2)} sampled "
                            f"seconds, first {hms(masters2[0][1])}: {masters2[0][2:]}; events "
                            f"before: {context_events(faults.events, masters2[0][1])}")
        failures += [f"stuck: {f}" for f in faults.findings]
        text = report(a, lab, faults, writer, monitor, pingers, model, final, failures, started)
        keep_logs(lab, hosts, out)
        with open(os.path.join(out, "report.md"), "w") as f:
            f.write(text)
        with open(os.path.join(out, "raw.json"), "w") as f:
            json.dump({"seed": a.seed, "prefix": prefix, "events": faults.events,
                       "writes": writer.writes, "samples": monitor.samples,
                       "timeline": [(t, sorted(s), k) for t, s, k in model.timeline],
                       "pings": {f"h{p.n}": p.pings() for p in pingers},
                       "final": {k: v for k, v in final.items() if k != "lost"},
                       "lost": [w for w, _ in final["lost"]]}, f)
        print(text)
        log(f"chaos: report in {out}/report.md, raw records in {out}/raw.json, logs in {out}/logs")
        rc = 1 if failures else 0
    except KeyboardInterrupt as e:
        log(f"chaos: interrupted ({e or 'SIGINT'}); tearing down")
        rc = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if writer:
            writer.stop.set()
        if monitor:
            monitor.stop.set()
        for p in pingers:
            if p.p.poll() is None:
                end_group(p.p)
        if a.keep:
            log(f"chaos: lab kept: lab/ettm-lab down --prefix {prefix}")
        else:
            keep_logs(lab, hosts, out)
            lab.run("down", timeout=120)
    return rc


if __name__ == "__main__":
    sys.exit(main())
