/* raft-bare: a bare libraft node, the baseline for the store benchmark.
 *
 * Runs one node of a static cluster with libraft's own libuv I/O and TCP
 * transport, tuned as ettmd tunes its store (pre-vote, 300/50 ms). Whichever
 * node becomes leader proposes 64-byte commands to a trivial state machine,
 * one at a time for latency and many in flight for throughput, prints one
 * JSON line of results and exits; the others run until they are killed.
 *
 *   raft-bare --id N --dir DIR --cluster 1=A:P,2=A:P,3=A:P
 *             [--count 2000] [--burst 20000] [--inflight 1000]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <raft.h>
#include <raft/uv.h>

#define CMD_SIZE  64
#define MAX_NODES 8

struct node {
	uv_loop_t *loop;
	struct raft raft;
	struct raft_io io;
	struct raft_uv_transport transport;
	struct raft_fsm fsm;
	uv_timer_t timer;
	unsigned long applied;
	/* the benchmark */
	bool started;
	unsigned count, burst, inflight;
	unsigned done, sent;
	uint64_t *lat_ns;
	uint64_t t0, burst_t0;
	int phase; /* 0: latency, 1: throughput */
};

struct req {
	struct raft_apply apply;
	struct node *n;
	uint64_t t0;
};

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
	(*bufs)->len = sizeof(n->applied);
	(*bufs)->base = raft_malloc((*bufs)->len);
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

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void propose(struct node *n);

static void finish(struct node *n)
{
	uint64_t now = uv_hrtime();
	qsort(n->lat_ns, n->count, sizeof(uint64_t), cmp_u64);
	double secs = (double)(now - n->burst_t0) / 1e9;
	printf("{\"impl\": \"raft-bare\", \"count\": %u, \"median_us\": %.1f, \"p99_us\": %.1f, "
	       "\"burst\": %u, \"inflight\": %u, \"commits_per_s\": %.0f}\n",
	       n->count, (double)n->lat_ns[n->count / 2] / 1e3,
	       (double)n->lat_ns[n->count * 99 / 100] / 1e3, n->burst, n->inflight,
	       (double)n->burst / secs);
	fflush(stdout);
	exit(0);
}

static void apply_cb(struct raft_apply *apply, int status, void *result)
{
	struct req *r = apply->data;
	struct node *n = r->n;
	(void)result;
	if (status != 0) {
		fprintf(stderr, "raft-bare: apply: %s\n", raft_strerror(status));
		exit(1);
	}
	if (n->phase == 0) {
		n->lat_ns[n->done++] = uv_hrtime() - r->t0;
		free(r);
		if (n->done == n->count) {
			n->phase = 1;
			n->done = n->sent = 0;
			n->burst_t0 = uv_hrtime();
		}
		propose(n);
		return;
	}
	free(r);
	if (++n->done == n->burst)
		finish(n);
	else
		propose(n);
}

static void send_one(struct node *n)
{
	struct req *r = calloc(1, sizeof(*r));
	struct raft_buffer buf = {.base = raft_malloc(CMD_SIZE), .len = CMD_SIZE};
	memset(buf.base, 'x', CMD_SIZE);
	r->n = n;
	r->apply.data = r;
	r->t0 = uv_hrtime();
	if (raft_apply(&n->raft, &r->apply, &buf, 1, apply_cb) != 0) {
		fprintf(stderr, "raft-bare: raft_apply: %s\n", raft_errmsg(&n->raft));
		exit(1);
	}
	n->sent++;
}

static void propose(struct node *n)
{
	if (n->phase == 0) {
		send_one(n);
		return;
	}
	while (n->sent < n->burst && n->sent - n->done < n->inflight)
		send_one(n);
}

static void timer_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	if (n->started || raft_state(&n->raft) != RAFT_LEADER)
		return;
	n->started = true;
	propose(n);
}

int main(int argc, char **argv)
{
	static struct node n;
	unsigned id = 0;
	const char *dir = NULL, *cluster = NULL;
	n.count = 2000;
	n.burst = 20000;
	n.inflight = 1000;
	static const struct option opts[] = {
	    {"id", required_argument, NULL, 'i'},
	    {"dir", required_argument, NULL, 'd'},
	    {"cluster", required_argument, NULL, 'c'},
	    {"count", required_argument, NULL, 'n'},
	    {"burst", required_argument, NULL, 'b'},
	    {"inflight", required_argument, NULL, 'f'},
	    {0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			id = (unsigned)atoi(optarg);
			break;
		case 'd':
			dir = optarg;
			break;
		case 'c':
			cluster = optarg;
			break;
		case 'n':
			n.count = (unsigned)atoi(optarg);
			break;
		case 'b':
			n.burst = (unsigned)atoi(optarg);
			break;
		case 'f':
			n.inflight = (unsigned)atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (!id || !dir || !cluster || !n.count || !n.burst || !n.inflight) {
		fprintf(stderr, "usage: raft-bare --id N --dir DIR --cluster 1=A:P,2=A:P,...\n");
		return 2;
	}

	struct raft_configuration conf;
	char *copy = strdup(cluster), *save, *address = NULL;
	raft_configuration_init(&conf);
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq)
			return 2;
		*eq = '\0';
		unsigned nid = (unsigned)atoi(tok);
		raft_configuration_add(&conf, nid, eq + 1, RAFT_VOTER);
		if (nid == id)
			address = eq + 1;
	}
	if (!address) {
		fprintf(stderr, "raft-bare: id %u is not in --cluster\n", id);
		return 2;
	}
	n.lat_ns = calloc(n.count, sizeof(uint64_t));
	n.loop = uv_default_loop();
	n.fsm = (struct raft_fsm){.version = 1,
	                          .data = &n,
	                          .apply = fsm_apply,
	                          .snapshot = fsm_snapshot,
	                          .restore = fsm_restore};
	if (raft_uv_tcp_init(&n.transport, n.loop) != 0 ||
	    raft_uv_init(&n.io, n.loop, dir, &n.transport) != 0 ||
	    raft_init(&n.raft, &n.io, &n.fsm, id, address) != 0) {
		fprintf(stderr, "raft-bare: init failed: %s\n", n.io.errmsg);
		return 1;
	}
	raft_set_pre_vote(&n.raft, true);
	raft_set_election_timeout(&n.raft, 300);
	raft_set_heartbeat_timeout(&n.raft, 50);
	raft_set_snapshot_threshold(&n.raft, 8192);
	raft_uv_set_connect_retry_delay(&n.io, 100);
	int r = raft_bootstrap(&n.raft, &conf);
	if (r != 0 && r != RAFT_CANTBOOTSTRAP) {
		fprintf(stderr, "raft-bare: bootstrap: %s\n", raft_errmsg(&n.raft));
		return 1;
	}
	if (raft_start(&n.raft) != 0) {
		fprintf(stderr, "raft-bare: start: %s\n", raft_errmsg(&n.raft));
		return 1;
	}
	uv_timer_init(n.loop, &n.timer);
	n.timer.data = &n;
	uv_timer_start(&n.timer, timer_cb, 10, 10);
	uv_run(n.loop, UV_RUN_DEFAULT);
	return 0;
}
