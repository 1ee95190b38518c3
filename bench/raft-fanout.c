/* raft-fanout: real libraft 0.15 instances with many members, on simulated
 * time, network and disk (raft-sim.c, which says what is modelled and how),
 * to see where the leader's fan-out stops scaling.
 *
 * Each run bootstraps --voters voters and, by default, every other member a
 * standby (as the store keeps them: standbys replicate the log but do not
 * vote); with --standbys N only N of them, the rest spares (in the
 * configuration, sent nothing: members some other path would feed). It
 * waits for a leader and for every member to have caught up, then measures:
 * 1. idle: --idle-s simulated seconds of heartbeats only;
 * 2. one at a time: --commits commands of --entry-bytes, each proposed when
 *    the previous one was applied on the leader;
 * 3. pipelined: --burst commands with --inflight in flight at once.
 * It prints one JSON line per member count.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <raft.h>

#include "raft-sim.h"

/* The workload. */
static struct {
	unsigned leader;
	unsigned proposed, completed, target, inflight, window;
	uint64_t *lat_ns;
	uint64_t *t0_ns;
} W;

/* Voters come first or last in the configuration, the order the leader
 * sends in. */
static bool is_voter(unsigned idx)
{
	return S.p.voters_last ? idx >= S.n - S.p.voters : idx < S.p.voters;
}

/* The standbys in a run of S.n members: --standbys, or every non-voter. */
static unsigned n_standbys(void)
{
	unsigned others = S.n - S.p.voters;
	return S.p.standbys < others ? S.p.standbys : others;
}

/* The first non-voters in configuration order are standbys, the rest spares
 * (members the leader sends nothing to). */
static int role_of(unsigned idx)
{
	if (is_voter(idx))
		return RAFT_VOTER;
	unsigned pos = S.p.voters_last ? idx : idx - S.p.voters;
	return pos < n_standbys() ? RAFT_STANDBY : RAFT_SPARE;
}

/* --- the state machine and the workload --- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct node *n = fsm->data;
	(void)buf;
	n->applied++;
	*result = NULL;
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct node *n = fsm->data;
	*bufs = raft_malloc(sizeof(**bufs));
	if (!*bufs || !((*bufs)->base = raft_malloc(sizeof(n->applied))))
		return RAFT_NOMEM;
	(*bufs)->len = sizeof(n->applied);
	memcpy((*bufs)->base, &n->applied, sizeof(n->applied));
	*n_bufs = 1;
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct node *n = fsm->data;
	memcpy(&n->applied, buf->base, sizeof(n->applied));
	raft_free(buf->base);
	return 0;
}

struct proposal {
	struct raft_apply req;
	unsigned i;
};

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct proposal *pr = req->data;
	(void)result;
	if (status != 0) {
		fprintf(stderr, "raft-fanout: a command failed: %s\n", raft_strerror(status));
		exit(1);
	}
	W.lat_ns[pr->i] = S.now - W.t0_ns[pr->i];
	W.completed++;
	W.inflight--;
	free(pr);
}

static void propose_one(void)
{
	struct node *l = &S.nodes[W.leader];
	struct proposal *pr = calloc(1, sizeof(*pr));
	if (!pr)
		sim_die("out of memory");
	pr->i = W.proposed;
	pr->req.data = pr;
	struct sim_call c = sim_enter(W.leader);
	struct raft_buffer buf = {.base = raft_malloc(S.p.entry_bytes), .len = S.p.entry_bytes};
	if (!buf.base)
		sim_die("out of memory");
	memset(buf.base, 'x', buf.len);
	W.t0_ns[pr->i] = S.now;
	int r = raft_apply(&l->raft, &pr->req, &buf, 1, apply_cb);
	sim_leave(W.leader, c);
	if (r != 0) {
		fprintf(stderr, "raft-fanout: raft_apply: %s\n", raft_errmsg(&l->raft));
		exit(1);
	}
	W.proposed++;
	W.inflight++;
}

static bool have_leader(void)
{
	for (unsigned i = 0; i < S.n; i++)
		if (is_voter(i) && raft_state(&S.nodes[i].raft) == RAFT_LEADER) {
			W.leader = i;
			return true;
		}
	return false;
}

/* Every member holds and has applied the leader's last entry. */
static bool all_caught_up(void)
{
	struct node *l = &S.nodes[W.leader];
	raft_index last = raft_last_index(&l->raft);
	if (raft_state(&l->raft) != RAFT_LEADER || l->raft.commit_index < last)
		return false;
	for (unsigned i = 0; i < S.n; i++)
		if (role_of(i) != RAFT_SPARE && raft_last_applied(&S.nodes[i].raft) < last)
			return false;
	return true;
}

/* The workload's driver: propose when a slot frees, stop when all are done. */
static bool workload_step(void)
{
	if (raft_state(&S.nodes[W.leader].raft) != RAFT_LEADER)
		sim_die("the leader stepped down during the measurement");
	while (W.proposed < W.target && W.inflight < W.window)
		propose_one();
	return W.completed == W.target;
}

/* --- one run with n members --- */

struct result {
	struct counters idle, seq, pipe;
	double idle_s, seq_sim_s, pipe_sim_s;
	uint64_t median_ns, p99_ns, max_ns, catch_up_ns;
	unsigned long applied;
	int64_t heap_idle, heap_peak;
	double wall_s, desched_idle, desched_seq, desched_pipe;
	raft_id leader;
	uint64_t elect_ms;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void setup(unsigned n)
{
	memset(&S.nodes[0], 0, sizeof(*S.nodes) * n);
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	for (unsigned i = 0; i < n; i++) {
		struct node *nd = &S.nodes[i];
		nd->idx = i;
		snprintf(nd->address, sizeof(nd->address), "10.0.%u.%u:7700", i / 250, i % 250 + 1);
		if (raft_configuration_add(&conf, i + 1, nd->address, role_of(i)) != 0)
			sim_die("raft_configuration_add failed");
	}
	for (unsigned i = 0; i < n; i++) {
		struct node *nd = &S.nodes[i];
		nd->timed = is_voter(i);
		sim_io_init(nd);
		nd->fsm = (struct raft_fsm){.version = 1,
		                            .data = nd,
		                            .apply = fsm_apply,
		                            .snapshot = fsm_snapshot,
		                            .restore = fsm_restore};
		struct sim_call c = sim_enter(i);
		int r = raft_init(&nd->raft, &nd->io, &nd->fsm, i + 1, nd->address);
		if (r == 0) {
			/* the store's settings (src/store/store.c) */
			raft_set_pre_vote(&nd->raft, true);
			raft_set_election_timeout(&nd->raft, S.p.election_ms);
			raft_set_heartbeat_timeout(&nd->raft, S.p.heartbeat_ms);
			raft_set_snapshot_threshold(&nd->raft, 8192);
			raft_set_install_snapshot_timeout(&nd->raft, 5 * S.p.election_ms);
			r = raft_bootstrap(&nd->raft, &conf);
		}
		if (r == 0)
			r = raft_start(&nd->raft);
		sim_leave(i, c);
		if (r != 0) {
			fprintf(stderr, "raft-fanout: member %u: %s\n", i + 1,
			        raft_errmsg(&nd->raft));
			exit(1);
		}
	}
	raft_configuration_close(&conf);
}

/* The time in calls counts only the share of the phase the thread ran: the
 * rest, other processes ran (spread evenly over the calls, as far as one
 * can tell). */
static struct counters leader_counters(double descheduled)
{
	struct counters c = S.nodes[W.leader].c;
	c.cpu_ns = (uint64_t)((double)c.cpu_ns * (1.0 - descheduled));
	c.copy_ns = (uint64_t)((double)c.copy_ns * (1.0 - descheduled));
	return c;
}

static void reset_counters(void)
{
	for (unsigned i = 0; i < S.n; i++)
		memset(&S.nodes[i].c, 0, sizeof(S.nodes[i].c));
}

static void commits(unsigned count, unsigned inflight)
{
	W.proposed = W.completed = W.inflight = 0;
	W.target = count;
	W.window = inflight;
	workload_step();
	/* Ticks never stop: bound the run in simulated time (a minute, and
	 * 100 ms a command, far beyond what any of them takes). */
	uint64_t limit = S.now + 60ull * 1000000000u + (uint64_t)count * 100000000u;
	if (!sim_run(workload_step, limit))
		sim_die("the commands were not all applied within their simulated time");
}

static void one_run(unsigned n, struct result *res)
{
	double w0 = wall_now();
	S.n = n;
	S.now = 0;
	S.heap_len = 0;
	S.rng = S.p.seed * 0x9e3779b97f4a7c15u + n;
	setup(n);

	uint64_t limit = 60ull * 1000000000u;
	if (!sim_run(have_leader, limit))
		sim_die("no leader within 60 simulated seconds");
	res->elect_ms = S.now / 1000000u;
	res->leader = W.leader + 1;
	/* A command of this term commits every earlier entry, then all catch up. */
	commits(1, 1);
	if (!sim_run(all_caught_up, S.now + limit))
		sim_die("the members did not catch up within 60 simulated seconds");
	sim_run(NULL, S.now + 2ull * S.p.heartbeat_ms * 1000000u);

	struct node *l = &S.nodes[W.leader];
	reset_counters();
	uint64_t t0 = S.now;
	struct sim_phase ph = sim_phase_start();
	sim_run(NULL, S.now + (uint64_t)(S.p.idle_s * 1e9));
	res->desched_idle = sim_phase_descheduled(ph);
	res->idle = leader_counters(res->desched_idle);
	res->idle_s = (double)(S.now - t0) / 1e9;
	res->heap_idle = l->heap_live;
	l->heap_peak = l->heap_live;

	reset_counters();
	t0 = S.now;
	ph = sim_phase_start();
	commits(S.p.commits, 1);
	res->desched_seq = sim_phase_descheduled(ph);
	res->seq = leader_counters(res->desched_seq);
	res->seq_sim_s = (double)(S.now - t0) / 1e9;
	qsort(W.lat_ns, S.p.commits, sizeof(*W.lat_ns), cmp_u64);
	res->median_ns = W.lat_ns[S.p.commits / 2];
	res->p99_ns = W.lat_ns[(S.p.commits * 99) / 100];
	res->max_ns = W.lat_ns[S.p.commits - 1];

	memset(&res->pipe, 0, sizeof(res->pipe));
	res->pipe_sim_s = res->desched_pipe = 0;
	if (S.p.burst) {
		reset_counters();
		t0 = S.now;
		ph = sim_phase_start();
		commits(S.p.burst, S.p.inflight);
		res->desched_pipe = sim_phase_descheduled(ph);
		res->pipe = leader_counters(res->desched_pipe);
		res->pipe_sim_s = (double)(S.now - t0) / 1e9;
	}
	res->heap_peak = l->heap_peak;

	/* Every member applies every command, the same number of them. */
	t0 = S.now;
	if (!sim_run(all_caught_up, S.now + limit))
		sim_die(
		    "the members did not catch up within 60 simulated seconds of the last commit");
	res->catch_up_ns = S.now - t0;
	for (unsigned i = 0; i < n; i++)
		if (role_of(i) != RAFT_SPARE && S.nodes[i].applied != l->applied) {
			fprintf(stderr,
			        "raft-fanout: member %u applied %lu commands, the leader %lu\n",
			        i + 1, S.nodes[i].applied, l->applied);
			exit(1);
		}
	res->applied = l->applied;
	res->wall_s = wall_now() - w0;
}

/* The leader's counters of one phase, per `per` (seconds or commits). */
static void print_counters(const char *name, const struct counters *c, double per, const char *unit)
{
	printf(
	    " \"%s\": {\"msgs_per_%s\": %.1f, \"bytes_per_%s\": %.0f, \"wire_bytes_per_%s\": %.0f, "
	    "\"recv_msgs_per_%s\": %.1f, \"cpu_us_per_%s\": %.1f, \"copy_us_per_%s\": %.1f, ",
	    name, unit, c->msgs_sent / per, unit, c->bytes_sent / per, unit, c->wire_sent / per,
	    unit, c->msgs_recv / per, unit, c->cpu_ns / 1e3 / per, unit, c->copy_ns / 1e3 / per);
}

static void print_result(unsigned n, const struct result *r)
{
	const struct params *p = &S.p;
	printf("{\"members\": %u, \"voters\": %u, \"standbys\": %u, \"voters_at\": \"%s\", "
	       "\"seed\": %" PRIu64 ", \"leader\": %llu, \"elected_sim_ms\": %" PRIu64 ",",
	       n, p->voters, n_standbys(), p->voters_last ? "last" : "first", p->seed,
	       (unsigned long long)r->leader, r->elect_ms);
	print_counters("idle", &r->idle, r->idle_s, "s");
	printf("\"sim_s\": %.1f, \"descheduled\": %.3f},", r->idle_s, r->desched_idle);
	print_counters("one_at_a_time", &r->seq, p->commits, "commit");
	printf(
	    "\"commits\": %u, \"entry_bytes\": %u, \"median_sim_ms\": %.3f, \"p99_sim_ms\": %.3f, "
	    "\"max_sim_ms\": %.3f, \"descheduled\": %.3f},",
	    p->commits, p->entry_bytes, r->median_ns / 1e6, r->p99_ns / 1e6, r->max_ns / 1e6,
	    r->desched_seq);
	if (p->burst) {
		print_counters("pipelined", &r->pipe, p->burst, "commit");
		printf("\"commits\": %u, \"inflight\": %u, \"commits_per_sim_s\": %.0f, "
		       "\"leader_uplink_busy\": %.3f, \"descheduled\": %.3f},",
		       p->burst, p->inflight, p->burst / r->pipe_sim_s,
		       r->pipe.wire_sent * 8.0 / (p->link_mbit * 1e6) / r->pipe_sim_s,
		       r->desched_pipe);
	}
	printf(" \"leader_heap_bytes\": {\"idle\": %" PRId64 ", \"peak\": %" PRId64 "},"
	       " \"applied_everywhere\": %lu, \"catch_up_sim_ms\": %.3f,"
	       " \"clock_cost_ns\": %" PRIu64 ", \"wall_s\": %.2f}\n",
	       r->heap_idle, r->heap_peak, r->applied, r->catch_up_ns / 1e6, S.clock_cost_ns,
	       r->wall_s);
	fflush(stdout);
}

/* --- the command line --- */

static const char usage[] =
    "usage: raft-fanout [--members 5,16,64,256,1000] [--voters 5] [--commits 200]\n"
    "                   [--entry-bytes 200] [--burst 2000] [--inflight 64] [--idle-s 5]\n"
    "                   [--latency-us 200] [--link-mbit 1000] [--disk-us 1000]\n"
    "                   [--election-ms 300] [--heartbeat-ms 50] [--voters-at first|last]\n"
    "                   [--standbys N] [--seed 1]\n"
    "\n"
    "Runs real libraft 0.15 instances in one process on simulated time, network\n"
    "and disk: --voters voters, then --standbys standbys (default: every other\n"
    "member), the rest spares, which the leader sends nothing. Prints one JSON\n"
    "line per member count: the leader's messages, bytes and measured CPU when\n"
    "idle, per commit one at a time (with the simulated commit latency) and\n"
    "pipelined, and its heap. Time, latency and bytes are simulated; CPU is\n"
    "measured (libraft's work only: no system calls or TLS). The same --seed\n"
    "gives the same run.\n";

static int parse_uint(const char *opt, const char *s, unsigned min, unsigned long max,
                      unsigned *ret)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "raft-fanout: %s: \"%s\" is not a whole number from %u to %lu\n",
		        opt, s, min, max);
		return -EINVAL;
	}
	*ret = (unsigned)v;
	return 0;
}

static int parse_double(const char *opt, const char *s, double min, double *ret)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min)) {
		fprintf(stderr, "raft-fanout: %s: \"%s\" is not a number of at least %g\n", opt, s,
		        min);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

#define MAX_MEMBERS 100000
#define MAX_COUNTS  32

static int parse_members(const char *s, unsigned *counts, unsigned *ret_n)
{
	char *copy = strdup(s), *save = NULL;
	unsigned n = 0;
	int r = 0;
	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ",", &save); tok && r == 0;
	     tok = strtok_r(NULL, ",", &save)) {
		if (n == MAX_COUNTS) {
			fprintf(stderr, "raft-fanout: --members: more than %d counts\n",
			        MAX_COUNTS);
			r = -EINVAL;
			break;
		}
		r = parse_uint("--members", tok, 1, MAX_MEMBERS, &counts[n++]);
	}
	free(copy);
	if (r == 0 && n == 0) {
		fprintf(stderr, "raft-fanout: --members: an empty list\n");
		r = -EINVAL;
	}
	if (r == 0)
		*ret_n = n;
	return r;
}

int main(int argc, char **argv)
{
	unsigned counts[MAX_COUNTS] = {5, 16, 64, 256, 1000}, n_counts = 5;
	S.p = (struct params){.voters = 5,
	                      .standbys = UINT32_MAX,
	                      .commits = 200,
	                      .entry_bytes = 200,
	                      .burst = 2000,
	                      .inflight = 64,
	                      .election_ms = 300,
	                      .heartbeat_ms = 50,
	                      .idle_s = 5,
	                      .latency_us = 200,
	                      .link_mbit = 1000,
	                      .disk_us = 1000,
	                      .seed = 1};
	static const struct option opts[] = {
	    {"members", required_argument, NULL, 'm'},
	    {"voters", required_argument, NULL, 'v'},
	    {"commits", required_argument, NULL, 'c'},
	    {"entry-bytes", required_argument, NULL, 'e'},
	    {"burst", required_argument, NULL, 'b'},
	    {"inflight", required_argument, NULL, 'f'},
	    {"idle-s", required_argument, NULL, 'i'},
	    {"latency-us", required_argument, NULL, 'l'},
	    {"link-mbit", required_argument, NULL, 'k'},
	    {"disk-us", required_argument, NULL, 'd'},
	    {"election-ms", required_argument, NULL, 'E'},
	    {"heartbeat-ms", required_argument, NULL, 'H'},
	    {"seed", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {"voters-at", required_argument, NULL, 'a'},
	    {"standbys", required_argument, NULL, 'S'},
	    {0},
	};
	int c, r = 0;
	unsigned seed = 1;
	while (r == 0 && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			r = parse_members(optarg, counts, &n_counts);
			break;
		case 'v':
			r = parse_uint("--voters", optarg, 1, 9, &S.p.voters);
			break;
		case 'S':
			r = parse_uint("--standbys", optarg, 0, MAX_MEMBERS, &S.p.standbys);
			break;
		case 'c':
			r = parse_uint("--commits", optarg, 1, 10000000, &S.p.commits);
			break;
		case 'e':
			r = parse_uint("--entry-bytes", optarg, 8, 1u << 20, &S.p.entry_bytes);
			break;
		case 'b':
			r = parse_uint("--burst", optarg, 0, 10000000, &S.p.burst);
			break;
		case 'f':
			r = parse_uint("--inflight", optarg, 1, 100000, &S.p.inflight);
			break;
		case 'i':
			r = parse_double("--idle-s", optarg, 0.1, &S.p.idle_s);
			break;
		case 'l':
			r = parse_double("--latency-us", optarg, 0, &S.p.latency_us);
			break;
		case 'k':
			r = parse_double("--link-mbit", optarg, 1, &S.p.link_mbit);
			break;
		case 'd':
			r = parse_double("--disk-us", optarg, 0, &S.p.disk_us);
			break;
		case 'E':
			r = parse_uint("--election-ms", optarg, 10, 600000, &S.p.election_ms);
			break;
		case 'H':
			r = parse_uint("--heartbeat-ms", optarg, 1, 600000, &S.p.heartbeat_ms);
			break;
		case 's':
			r = parse_uint("--seed", optarg, 0, UINT32_MAX, &seed);
			break;
		case 'a':
			if (strcmp(optarg, "first") && strcmp(optarg, "last")) {
				fprintf(
				    stderr,
				    "raft-fanout: --voters-at: \"%s\" is neither first nor last\n",
				    optarg);
				r = -EINVAL;
			}
			S.p.voters_last = strcmp(optarg, "last") == 0;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (r != 0)
		return 2;
	if (optind < argc) {
		fprintf(stderr, "raft-fanout: unexpected argument \"%s\"\n%s", argv[optind], usage);
		return 2;
	}
	if (S.p.heartbeat_ms >= S.p.election_ms) {
		fprintf(stderr,
		        "raft-fanout: --heartbeat-ms (%u) must be below --election-ms (%u)\n",
		        S.p.heartbeat_ms, S.p.election_ms);
		return 2;
	}
	S.p.seed = seed;
	unsigned max = 0;
	for (unsigned i = 0; i < n_counts; i++) {
		if (counts[i] < S.p.voters) {
			fprintf(stderr,
			        "raft-fanout: --members: %u members is fewer than the %u voters\n",
			        counts[i], S.p.voters);
			return 2;
		}
		if (counts[i] > max)
			max = counts[i];
	}
	S.current = -1;
	S.nodes = calloc(max, sizeof(*S.nodes));
	unsigned longest = S.p.commits > S.p.burst ? S.p.commits : S.p.burst;
	W.lat_ns = calloc(longest, sizeof(*W.lat_ns));
	W.t0_ns = calloc(longest, sizeof(*W.t0_ns));
	if (!S.nodes || !W.lat_ns || !W.t0_ns)
		sim_die("out of memory");
	/* A log entry in memory: its payload, libraft's entry and reference
	 * count (about 100 bytes), the tag of each allocation. */
	double per_entry = S.p.entry_bytes + 160.0;
	sim_prefault_heap((size_t)(1.2 * max * (S.p.commits + S.p.burst + 64.0) * per_entry) +
	                  ((size_t)64 << 20));
	raft_heap_set(&sim_heap);
	sim_calibrate_clock();
	for (unsigned i = 0; i < n_counts; i++) {
		struct result res;
		one_run(counts[i], &res);
		print_result(counts[i], &res);
		/* The instances of this run are abandoned, not closed: closing 1000
		 * of them costs time and measures nothing. Their memory goes with
		 * the process. */
		S.heap_len = 0;
	}
	return 0;
}
