/* Fixture tests of the replicated store (src/store/store.c) without root:
 * several stores in one process on one libuv loop, each with its Raft
 * transport and its peer API (a ctl_server on TCP answering with
 * store_handle_request(), as ettmd runs it) on 127.0.0.1, their data in a
 * temporary directory. One test per feature of docs/store.md: commit and
 * subscribe, joining, forwarding, barriers, leader loss, catching up,
 * forced recovery and its new generation, keeping the voter count up.
 *
 * Every wait polls the loop against the test's deadline (TEST_BUDGET_MS):
 * a feature slower than that is a failure, not a wait. The commands use
 * the store's own tables (leases, conflicts, members) only. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <jansson.h>
#include <uv.h>

#include "api/server.h"
#include "api/tls.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "store/store.h"
#include "ports.h"

#define MAX_NODES        4
#define TEST_BUDGET_MS   15000
#define CLOSE_BUDGET_MS  10000
#define WAKE_MS          5
#define LOG_MAX          64
#define LEASE_EXPIRES_MS 1000000000000ull

struct cluster;

/* One host: its store, its peer API and what its subscriber saw. */
struct node {
	struct store_options o;
	struct store *store; /* NULL once closed */
	struct ctl_server peer;
	bool peer_open;
	bool up;                          /* the peer API answers for the store */
	char log[LOG_MAX][STORE_MAC_MAX]; /* the leases applied, in order */
	unsigned n_log;                   /* how many (beyond LOG_MAX too) */
	unsigned n_rejected;
};

struct cluster {
	uv_loop_t loop;
	uv_timer_t wake; /* keeps UV_RUN_ONCE from sleeping past a deadline */
	char dir[PATH_MAX];
	uint16_t raft_port[MAX_NODES], peer_port[MAX_NODES];
	struct node nodes[MAX_NODES];
	uint64_t deadline_ms;
	/* Options for the nodes this test starts. */
	unsigned snapshot_threshold, voters, promote_after_ms;
	bool all_seeds; /* seeds: every other node, not only the first */
	struct ctl_tls *tls;   /* Raft and the peer API over TLS (setup_tls) */
	unsigned raft_refused; /* the server ids (bit id - 1) the Raft check refuses */
	unsigned raft_checks;  /* how often it was asked */
};

/* ---- the two calls the store's reorganisation changes ---- */

/* store_open(), with its message in *ret_error (newly allocated). */
static int open_store(uv_loop_t *loop, const struct store_options *o, struct store **ret_store,
                      char **ret_error)
{
	return store_open(loop, o, ret_store, ret_error);
}

/* store_subscribe() for the life of the store. */
static int subscribe(struct store *s, unsigned table, store_watch_cb cb, void *userdata)
{
	return store_subscribe(s, table, cb, userdata, NULL);
}

/* ---- the fixture ---- */

static bool past_deadline(const struct cluster *c)
{
	return mono_ms() > c->deadline_ms;
}

typedef bool (*cond_fn)(struct cluster *c, void *arg);

/* Runs the loop until @cond holds; false when the deadline comes first. */
static bool run_until(struct cluster *c, cond_fn cond, void *arg)
{
	while (!cond(c, arg)) {
		if (past_deadline(c))
			return false;
		uv_run(&c->loop, UV_RUN_ONCE);
	}
	return true;
}

static bool never(struct cluster *c, void *arg)
{
	(void)c;
	(void)arg;
	return false;
}

/* Runs the loop for @ms (bounded by the deadline). */
static void run_for(struct cluster *c, unsigned ms)
{
	uint64_t saved = c->deadline_ms, until = mono_ms() + ms;
	if (until < saved)
		c->deadline_ms = until;
	run_until(c, never, NULL);
	c->deadline_ms = saved;
}

/* Every running node's view, for a failure's message. */
static void explain(struct cluster *c)
{
	for (unsigned i = 0; i < MAX_NODES; i++) {
		struct node *n = &c->nodes[i];
		if (!n->store)
			continue;
		json_t *st = store_status(n->store);
		char *text = json_dumps(st, JSON_COMPACT);
		fprintf(stderr, "h%u: %s\n", i + 1, text ? text : "?");
		free(text);
		json_decref(st);
	}
}

/* Waits for @cond; on timeout, fails the test with @what and each node's
 * status. */
#define wait_for(c, cond, arg, what)                                                               \
	do {                                                                                       \
		if (!run_until((c), (cond), (arg))) {                                              \
			explain(c);                                                                \
			fail_msg("timed out: %s", (what));                                         \
		}                                                                                  \
	} while (0)

static void wake_cb(uv_timer_t *t)
{
	(void)t;
}

/* Two ports per node: the first MAX_NODES for Raft, the rest for the
 * peer APIs. */
static int free_ports(struct cluster *c)
{
	uint16_t ports[2 * MAX_NODES];
	int r = loopback_ports(ports, 2 * MAX_NODES);
	for (unsigned i = 0; r == 0 && i < MAX_NODES; i++) {
		c->raft_port[i] = ports[i];
		c->peer_port[i] = ports[MAX_NODES + i];
	}
	return r;
}

static int setup(void **state)
{
	struct cluster *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	enum log_level level = LOG_LEVEL_ERROR;
	const char *want = getenv("STORE_CLUSTER_LOG"); /* "debug" to see the stores */
	if (want && log_level_parse(want, &level) < 0)
		level = LOG_LEVEL_ERROR;
	log_set_level(level);
	snprintf(c->dir, sizeof(c->dir), "/tmp/ettm-store-cluster-XXXXXX");
	if (!mkdtemp(c->dir) || free_ports(c) < 0 || uv_loop_init(&c->loop) != 0) {
		free(c);
		return -1;
	}
	uv_timer_init(&c->loop, &c->wake);
	uv_timer_start(&c->wake, wake_cb, WAKE_MS, WAKE_MS);
	c->deadline_ms = mono_ms() + TEST_BUDGET_MS;
	c->snapshot_threshold = 8192;
	for (unsigned i = 0; i < MAX_NODES; i++)
		c->nodes[i] = (struct node){0};
	*state = c;
	return 0;
}

/* ---- one node ---- */

static void watch_cb(void *userdata, const struct store_cmd *cmd, const struct store_result *res)
{
	struct node *n = userdata;
	if (!res->applied) {
		n->n_rejected++;
		return;
	}
	if (cmd->op != STORE_PUT)
		return;
	if (n->n_log < LOG_MAX)
		snprintf(n->log[n->n_log], sizeof(n->log[0]), "%.*s", (int)sizeof(n->log[0]) - 1,
		         STORE_CMD_ROW(cmd, struct store_lease)->mac);
	n->n_log++;
}

/* The peer API, as ettmd's handle_peer answers for the store. */
static int handle_peer(void *userdata, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	struct node *n = userdata;
	if (!n->up || !n->store) {
		*ret_error = strdup("the store is closing");
		return -ESHUTDOWN;
	}
	int r = store_handle_request(n->store, client, req, ret_result, ret_error);
	if (r == -ENOENT && !*ret_error &&
	    asprintf(ret_error, "unknown command \"%s\"", req->cmd) < 0)
		*ret_error = NULL;
	return r;
}

static void peer_address(const struct cluster *c, unsigned i, char *buf, size_t size)
{
	snprintf(buf, size, "127.0.0.1:%u", c->peer_port[i]);
}

/* Options of node @i of a cluster of @n_nodes: the first creates the
 * cluster, the others join through the first (or every other, with
 * all_seeds). */
static void node_options(struct cluster *c, unsigned i, unsigned n_nodes)
{
	struct store_options *o = &c->nodes[i].o;
	store_options_default(o);
	o->id = i + 1;
	snprintf(o->name, sizeof(o->name), "h%u", i + 1);
	snprintf(o->raft_address, sizeof(o->raft_address), "127.0.0.1:%u", c->raft_port[i]);
	peer_address(c, i, o->peer_address, sizeof(o->peer_address));
	snprintf(o->dir, sizeof(o->dir), "%.3000s/h%u", c->dir, i + 1);
	o->bootstrap = i == 0;
	o->election_ms = 150;
	o->heartbeat_ms = 30;
	o->snapshot_threshold = c->snapshot_threshold;
	o->voters = c->voters;
	o->promote_after_ms = c->promote_after_ms ? c->promote_after_ms : 1000;
	for (unsigned k = 0; k < n_nodes && o->n_seeds < STORE_MAX_SEEDS; k++)
		if (k != i && (k == 0 || c->all_seeds))
			peer_address(c, k, o->seeds[o->n_seeds++], STORE_ADDR_MAX);
}

/* Starts node @i's peer API and store (again, from its data directory,
 * when it ran before). */
static void node_start(struct cluster *c, unsigned i)
{
	struct node *n = &c->nodes[i];
	char *error = NULL;
	assert_null(n->store);
	assert_int_equal(
	    ctl_server_start_tcp(&n->peer, &c->loop, n->o.peer_address, handle_peer, n), 0);
	n->peer_open = true;
	int r = open_store(&c->loop, &n->o, &n->store, &error);
	if (r < 0) {
		char why[600];
		snprintf(why, sizeof(why), "%s", error ? error : strerror(-r));
		free(error);
		fail_msg("store_open h%u: %s", i + 1, why);
	}
	assert_int_equal(subscribe(n->store, STORE_LEASES, watch_cb, n), 0);
	n->up = true;
}

static void store_closed_cb(void *userdata)
{
	struct node *n = userdata;
	n->store = NULL;
}

static void peer_closed_cb(struct ctl_server *s)
{
	struct node *n = (struct node *)((char *)s - offsetof(struct node, peer));
	n->peer_open = false;
}

static bool node_closed(struct cluster *c, void *arg)
{
	(void)c;
	const struct node *n = arg;
	return !n->store && !n->peer_open;
}

/* Stops node @i as a crash would leave its data directory, and waits until
 * its handles are closed. */
static void node_stop(struct cluster *c, unsigned i)
{
	struct node *n = &c->nodes[i];
	n->up = false;
	if (n->peer_open)
		ctl_server_close(&n->peer, peer_closed_cb);
	if (n->store)
		store_close(n->store, store_closed_cb, n);
	wait_for(c, node_closed, n, "the node to close");
}

static int remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	struct cluster *c = *state;
	int failed = 0;
	c->deadline_ms = mono_ms() + CLOSE_BUDGET_MS;
	for (unsigned i = 0; i < MAX_NODES; i++) {
		struct node *n = &c->nodes[i];
		n->up = false;
		if (n->peer_open)
			ctl_server_close(&n->peer, peer_closed_cb);
		if (n->store)
			store_close(n->store, store_closed_cb, n);
	}
	for (unsigned i = 0; i < MAX_NODES; i++)
		if (!run_until(c, node_closed, &c->nodes[i])) {
			fprintf(stderr, "h%u did not close in time\n", i + 1);
			failed = -1;
		}
	uv_close((uv_handle_t *)&c->wake, NULL);
	if (failed == 0) {
		uv_run(&c->loop, UV_RUN_DEFAULT);
		if (uv_loop_close(&c->loop) != 0) {
			fprintf(stderr, "handles left open on the loop\n");
			failed = -1;
		}
	}
	nftw(c->dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
	if (failed == 0)
		free(c);
	return failed;
}

/* ---- reading the cluster ---- */

static bool node_running(const struct node *n)
{
	return n->store && n->up;
}

/* The index of the node that leads, or -1. */
static int leader_of(struct cluster *c)
{
	for (unsigned i = 0; i < MAX_NODES; i++)
		if (node_running(&c->nodes[i]) && store_is_leader(c->nodes[i].store))
			return (int)i;
	return -1;
}

/* A running node other than @except that follows the leader it knows. */
static int follower_of(struct cluster *c, int except)
{
	for (unsigned i = 0; i < MAX_NODES; i++) {
		struct node *n = &c->nodes[i];
		if ((int)i != except && node_running(n) && !store_is_leader(n->store) &&
		    store_leader_id(n->store) != 0)
			return (int)i;
	}
	return -1;
}

static bool has_lease(const struct store_state *s, const char *mac)
{
	for (size_t i = 0; i < store_count(s, STORE_LEASES); i++) {
		const struct store_lease *l = store_row(s, STORE_LEASES, i);
		if (strcmp(l->mac, mac) == 0)
			return true;
	}
	return false;
}

static json_int_t status_int(struct store *s, const char *key)
{
	json_t *st = store_status(s);
	json_int_t v = json_integer_value(json_object_get(st, key));
	json_decref(st);
	return v;
}

/* Every node in @mask runs, at generation @generation (0: any), is in its
 * own members table, follows one leader, and that leader has @voters
 * voters. */
struct formed {
	unsigned mask;
	unsigned voters;
	uint64_t generation;
};

static bool cluster_formed(struct cluster *c, void *arg)
{
	const struct formed *f = arg;
	int l = leader_of(c);
	uint64_t ids[16];
	if (l < 0 || store_voters(c->nodes[l].store, ids, 16) != f->voters)
		return false;
	uint64_t leader_id = c->nodes[l].o.id;
	for (unsigned i = 0; i < MAX_NODES; i++) {
		struct node *n = &c->nodes[i];
		if (!(f->mask & (1u << i)))
			continue;
		if (!node_running(n) || store_leader_id(n->store) != leader_id)
			return false;
		const struct store_state *st = store_state(n->store);
		uint64_t g = store_cluster(st)->generation;
		if (g == 0 || (f->generation && g != f->generation) ||
		    !store_member_find(st, n->o.id))
			return false;
	}
	return true;
}

/* Every node in @mask has applied as far as the others, and their states
 * are the same. */
static bool states_agree(struct cluster *c, void *arg)
{
	unsigned mask = *(unsigned *)arg;
	json_int_t applied = -1;
	for (unsigned i = 0; i < MAX_NODES; i++) {
		if (!(mask & (1u << i)))
			continue;
		if (!node_running(&c->nodes[i]))
			return false;
		json_int_t a = status_int(c->nodes[i].store, "applied_index");
		if (applied >= 0 && a != applied)
			return false;
		applied = a;
	}
	json_t *first = NULL;
	bool same = true;
	for (unsigned i = 0; i < MAX_NODES && same; i++) {
		if (!(mask & (1u << i)))
			continue;
		json_t *d = store_state_dump(store_state(c->nodes[i].store));
		if (!first)
			first = d;
		else {
			same = json_equal(first, d);
			json_decref(d);
		}
	}
	json_decref(first);
	return same;
}

/* Starts nodes 0..@n-1 (the first alone until it leads) and waits until
 * they form one cluster with @voters voters. */
static void cluster_start(struct cluster *c, unsigned n, unsigned voters)
{
	for (unsigned i = 0; i < n; i++)
		node_options(c, i, n);
	node_start(c, 0);
	struct formed one = {.mask = 1, .voters = 1, .generation = 1};
	wait_for(c, cluster_formed, &one, "the first store to lead a cluster of its own");
	for (unsigned i = 1; i < n; i++)
		node_start(c, i);
	struct formed all = {.mask = (1u << n) - 1, .voters = voters, .generation = 1};
	wait_for(c, cluster_formed, &all, "the stores to form one cluster");
}

/* ---- commands ---- */

/* A lease of 10.0.x.y to a MAC made of @k, unexpired for the test's life. */
static struct store_cmd lease(unsigned k)
{
	struct store_cmd cmd = {.table = STORE_LEASES, .op = STORE_PUT, .time_ms = 1000};
	struct store_lease *l = STORE_CMD_ROW(&cmd, struct store_lease);
	snprintf(l->mac, sizeof(l->mac), "02:00:00:00:%02x:%02x", (k >> 8) & 0xff, k & 0xff);
	l->addr = 0x0a000000u + k;
	snprintf(l->host, sizeof(l->host), "h%u", k % 8);
	l->expires_ms = LEASE_EXPIRES_MS;
	return cmd;
}

/* One proposal or barrier and what came back. */
struct op {
	bool done;
	int status;
	bool has_result;
	struct store_result result;
	char error[256];
	/* For barriers: was this lease in the node's state when the callback
	 * ran? */
	struct node *node;
	const char *mac;
	bool saw_mac;
};

static void op_cb(void *userdata, int status, const struct store_result *res, const char *error)
{
	struct op *op = userdata;
	assert_false(op->done); /* exactly once */
	op->done = true;
	op->status = status;
	if (res) {
		op->has_result = true;
		op->result = *res;
	}
	snprintf(op->error, sizeof(op->error), "%s", error ? error : "");
	if (op->node && op->mac && op->node->store)
		op->saw_mac = has_lease(store_state(op->node->store), op->mac);
}

static bool op_done(struct cluster *c, void *arg)
{
	(void)c;
	return ((struct op *)arg)->done;
}

/* Proposes @cmd through node @i once and waits for its callback. */
static struct op propose_once(struct cluster *c, unsigned i, const struct store_cmd *cmd)
{
	struct op op = {0};
	int r = store_propose(c->nodes[i].store, cmd, op_cb, &op);
	if (r < 0)
		fail_msg("store_propose on h%u: %s", i + 1, strerror(-r));
	wait_for(c, op_done, &op, "the proposal's callback");
	return op;
}

/* Proposes @cmd through node @i until it is committed: while no leader is
 * known (-EAGAIN) it tries again. */
static struct op propose_retry(struct cluster *c, unsigned i, const struct store_cmd *cmd)
{
	for (;;) {
		struct op op = {0};
		int r = store_propose(c->nodes[i].store, cmd, op_cb, &op);
		if (r == 0)
			wait_for(c, op_done, &op, "the proposal's callback");
		else
			op = (struct op){.done = true, .status = r};
		if (op.status != -EAGAIN)
			return op;
		assert_false(past_deadline(c));
		run_for(c, 50);
	}
}

/* Proposes leases @first..@first+@count-1 through node @i, @inflight at a
 * time; every one must be committed and applied. */
struct batch {
	struct cluster *c;
	struct store *store;
	unsigned next, end, done, failed, inflight, outstanding;
	char error[256];
};

static void batch_send(struct batch *b);

static void batch_cb(void *userdata, int status, const struct store_result *res, const char *error)
{
	struct batch *b = userdata;
	b->outstanding--;
	b->done++;
	if (status < 0 || !res->applied) {
		b->failed++;
		snprintf(b->error, sizeof(b->error), "%s",
		         status < 0 ? (error ? error : strerror(-status)) : res->reason);
	}
	batch_send(b);
}

static void batch_send(struct batch *b)
{
	while (b->next < b->end && b->outstanding < b->inflight && !b->failed) {
		struct store_cmd cmd = lease(b->next++);
		int r = store_propose(b->store, &cmd, batch_cb, b);
		if (r < 0) {
			b->failed++;
			snprintf(b->error, sizeof(b->error), "store_propose: %s", strerror(-r));
			return;
		}
		b->outstanding++;
	}
}

static bool batch_finished(struct cluster *c, void *arg)
{
	(void)c;
	const struct batch *b = arg;
	return b->outstanding == 0 && (b->failed || b->next == b->end);
}

static void propose_many(struct cluster *c, unsigned i, unsigned first, unsigned count,
                         unsigned inflight)
{
	struct batch b = {.c = c,
	                  .store = c->nodes[i].store,
	                  .next = first,
	                  .end = first + count,
	                  .inflight = inflight};
	batch_send(&b);
	wait_for(c, batch_finished, &b, "the proposals' callbacks");
	if (b.failed)
		fail_msg("%u of %u proposals failed: %s", b.failed, count, b.error);
	assert_int_equal(b.done, count);
}

/* Three voters that have committed and applied leases 1..@writes alike:
 * returns the leader, and one follower in @ret_follower. */
static int three_agreeing(struct cluster *c, unsigned writes, int *ret_follower, const char *what)
{
	cluster_start(c, 3, 3);
	int l = leader_of(c), f = follower_of(c, l);
	assert_true(l >= 0 && f >= 0);
	propose_many(c, (unsigned)l, 1, writes, 5);
	unsigned all = 7;
	wait_for(c, states_agree, &all, what);
	*ret_follower = f;
	return l;
}

/* ---- the tests ---- */

/* A store that bootstraps commits its first command, its subscriber sees
 * it, and a command the state does not allow is committed as rejected. */
static void test_single_commit(void **state)
{
	struct cluster *c = *state;
	cluster_start(c, 1, 1);
	struct node *n = &c->nodes[0];
	assert_true(store_is_leader(n->store));
	assert_int_equal(store_leader_id(n->store), n->o.id);
	assert_true(store_term(n->store) >= 1);

	struct store_cmd cmd = lease(1);
	struct op op = propose_once(c, 0, &cmd);
	assert_int_equal(op.status, 0);
	assert_true(op.has_result);
	assert_true(op.result.applied);
	assert_true(op.result.index > 0);
	assert_int_equal(n->n_log, 1);
	assert_string_equal(n->log[0], STORE_CMD_ROW(&cmd, struct store_lease)->mac);
	assert_true(has_lease(store_state(n->store), STORE_CMD_ROW(&cmd, struct store_lease)->mac));

	/* The same address for another MAC: committed, rejected, and the
	 * subscriber hears of it too. */
	struct store_cmd other = lease(1);
	snprintf(STORE_CMD_ROW(&other, struct store_lease)->mac,
	         sizeof(STORE_CMD_ROW(&other, struct store_lease)->mac), "02:00:00:00:ff:ff");
	op = propose_once(c, 0, &other);
	assert_int_equal(op.status, 0);
	assert_false(op.result.applied);
	assert_true(op.result.reason[0] != '\0');
	assert_int_equal(n->n_rejected, 1);
	assert_false(
	    has_lease(store_state(n->store), STORE_CMD_ROW(&other, struct store_lease)->mac));

	/* A conflict row gets its id at apply. */
	struct store_cmd conflict = {.table = STORE_CONFLICTS, .op = STORE_PUT, .time_ms = 1000};
	STORE_CMD_ROW(&conflict, struct store_conflict)->table = STORE_LEASES;
	snprintf(STORE_CMD_ROW(&conflict, struct store_conflict)->reason,
	         sizeof(STORE_CMD_ROW(&conflict, struct store_conflict)->reason), "test");
	op = propose_once(c, 0, &conflict);
	assert_int_equal(op.status, 0);
	assert_true(op.result.applied);
	assert_true(op.result.value > 0);
	assert_int_equal(store_count(store_state(n->store), STORE_CONFLICTS), 1);

	json_t *st = store_status(n->store);
	assert_string_equal(json_string_value(json_object_get(st, "state")), "leader");
	assert_int_equal(json_integer_value(json_object_get(st, "generation")), 1);
	json_decref(st);
}

/* Two stores join through the first's peer API; the three apply the same
 * commands in the same order and reach the same state. */
static void test_three_join_same_order(void **state)
{
	struct cluster *c = *state;
	cluster_start(c, 3, 3);
	int l = leader_of(c);
	assert_true(l >= 0);
	assert_int_equal(store_count(store_state(c->nodes[l].store), STORE_MEMBERS), 3);

	propose_many(c, (unsigned)l, 1, 20, 5);
	unsigned all = 7;
	wait_for(c, states_agree, &all, "the three to apply the same");
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(c->nodes[i].n_log, 20);
		assert_int_equal(store_count(store_state(c->nodes[i].store), STORE_LEASES), 20);
		for (unsigned k = 0; k < 20; k++)
			assert_string_equal(c->nodes[i].log[k], c->nodes[0].log[k]);
	}
}

/* A command proposed on a follower is forwarded to the leader, and the
 * follower has applied it when its proposer hears back. */
static void test_follower_forwards(void **state)
{
	struct cluster *c = *state;
	cluster_start(c, 3, 3);
	int l = leader_of(c), f = follower_of(c, l);
	assert_true(l >= 0 && f >= 0);

	struct store_cmd cmd = lease(7);
	struct op op = propose_once(c, (unsigned)f, &cmd);
	if (op.status != 0)
		fail_msg("forwarded proposal: %s", op.error);
	assert_true(op.result.applied);
	assert_true(op.result.index > 0);
	assert_true(has_lease(store_state(c->nodes[f].store),
	                      STORE_CMD_ROW(&cmd, struct store_lease)->mac));
	assert_true(has_lease(store_state(c->nodes[l].store),
	                      STORE_CMD_ROW(&cmd, struct store_lease)->mac));

	/* A rejection travels back too, with its reason. */
	struct store_cmd other = lease(7);
	snprintf(STORE_CMD_ROW(&other, struct store_lease)->mac,
	         sizeof(STORE_CMD_ROW(&other, struct store_lease)->mac), "02:00:00:00:ff:fe");
	op = propose_once(c, (unsigned)f, &other);
	assert_int_equal(op.status, 0);
	assert_false(op.result.applied);
	assert_true(op.result.reason[0] != '\0');
}

/* A barrier on a follower runs once that follower has applied a command
 * committed just before it. */
static void test_follower_barrier(void **state)
{
	struct cluster *c = *state;
	cluster_start(c, 3, 3);
	int l = leader_of(c), f = follower_of(c, l);
	assert_true(l >= 0 && f >= 0);

	for (unsigned k = 1; k <= 5; k++) {
		struct store_cmd cmd = lease(k);
		struct op op = propose_once(c, (unsigned)l, &cmd);
		assert_int_equal(op.status, 0);
		/* Right after the leader's commit, not after more of the loop:
		 * the follower may not have heard of it yet. */
		struct op barrier = {.node = &c->nodes[f], .mac = c->nodes[l].log[k - 1]};
		assert_int_equal(store_barrier(c->nodes[f].store, op_cb, &barrier), 0);
		wait_for(c, op_done, &barrier, "the follower's barrier");
		if (barrier.status != 0)
			fail_msg("barrier on h%d: %s", f + 1, barrier.error);
		assert_true(barrier.saw_mac);
	}
}

/* The leader goes away: the two others elect a new one in a later term,
 * it takes writes, and they agree. */
static void test_leader_loss(void **state)
{
	struct cluster *c = *state;
	cluster_start(c, 3, 3);
	int l = leader_of(c);
	assert_true(l >= 0);
	struct store_cmd cmd = lease(1);
	assert_int_equal(propose_once(c, (unsigned)l, &cmd).status, 0);
	uint64_t term = store_term(c->nodes[l].store), old_id = c->nodes[l].o.id;

	node_stop(c, (unsigned)l);
	unsigned survivors = 7 & ~(1u << l);
	struct formed f = {.mask = survivors, .voters = 3, .generation = 1};
	wait_for(c, cluster_formed, &f, "a new leader among the survivors");
	int nl = leader_of(c);
	assert_true(nl >= 0 && nl != l);
	assert_true(store_term(c->nodes[nl].store) > term);
	for (unsigned i = 0; i < 3; i++)
		if (survivors & (1u << i))
			assert_int_not_equal(store_leader_id(c->nodes[i].store), old_id);

	/* Through the follower among the survivors: forwarded to the new
	 * leader. */
	int f2 = follower_of(c, nl);
	assert_true(f2 >= 0);
	cmd = lease(2);
	struct op op = propose_retry(c, (unsigned)f2, &cmd);
	if (op.status != 0)
		fail_msg("write after leader loss: %s", op.error);
	assert_true(op.result.applied);
	wait_for(c, states_agree, &survivors, "the survivors to agree");
	assert_int_equal(store_count(store_state(c->nodes[nl].store), STORE_LEASES), 2);
}

/* The highest index among the snapshots in node @i's Raft directory (0:
 * none). libraft names them snapshot-TERM-INDEX-TIMESTAMP.meta. */
static uint64_t snapshot_index(struct cluster *c, unsigned i)
{
	char path[PATH_MAX + 8];
	snprintf(path, sizeof(path), "%.4000s/raft", c->nodes[i].o.dir);
	DIR *d = opendir(path);
	struct dirent *e;
	uint64_t max = 0;
	while (d && (e = readdir(d))) {
		unsigned long long term, index, stamp;
		size_t len = strlen(e->d_name);
		if (len > 5 && strcmp(e->d_name + len - 5, ".meta") == 0 &&
		    sscanf(e->d_name, "snapshot-%llu-%llu-%llu", &term, &index, &stamp) == 3 &&
		    index > max)
			max = index;
	}
	if (d)
		closedir(d);
	return max;
}

/* The leader has snapshotted past what a stopped member had plus
 * libraft's trailing entries: it can only catch that member up with a
 * snapshot. */
struct compacted {
	unsigned leader;
	uint64_t past;
};

static bool leader_compacted(struct cluster *c, void *arg)
{
	const struct compacted *w = arg;
	return snapshot_index(c, w->leader) > w->past;
}

/* libraft 0.15 keeps this many entries behind a snapshot (the store does
 * not change it). */
#define RAFT_TRAILING 2048

/* A member that was away while the others committed more than the
 * snapshot threshold and libraft's trailing log (so the leader no longer
 * has what follows the member's log) comes back from its data directory
 * and catches up. */
static void test_lagging_catches_up(void **state)
{
	struct cluster *c = *state;
	c->snapshot_threshold = 128;
	int f, l = three_agreeing(c, 10, &f, "the three agree before one stops");
	unsigned all = 7;

	node_stop(c, (unsigned)f);
	uint64_t stopped_at = (uint64_t)status_int(c->nodes[l].store, "applied_index");
	propose_many(c, (unsigned)l, 11, 2400, 100);
	struct compacted w = {.leader = (unsigned)l, .past = stopped_at + RAFT_TRAILING};
	wait_for(c, leader_compacted, &w, "the leader's snapshot past the member");

	/* The member snapshots its own log only at the default threshold:
	 * one that does while the leader sends it a snapshot has libraft 0.15
	 * refuse the InstallSnapshot as busy, and the leader waits out its
	 * install_snapshot_timeout (30 s) before it tries again. */
	c->nodes[f].o.snapshot_threshold = 8192;
	node_start(c, (unsigned)f);
	wait_for(c, states_agree, &all, "the member that was away caught up");
	assert_int_equal(store_count(store_state(c->nodes[f].store), STORE_LEASES), 2410);
}

/* What store_recover() answered. */
struct recover_wait {
	bool done;
	uint64_t generation;
	size_t n_members;
	char error[256];
};

static void recover_cb(void *userdata, json_t *result, const char *error)
{
	struct recover_wait *w = userdata;
	w->done = true;
	snprintf(w->error, sizeof(w->error), "%s", error ? error : "");
	if (result) {
		w->generation = (uint64_t)json_integer_value(json_object_get(result, "generation"));
		w->n_members = json_array_size(json_object_get(result, "members"));
	}
}

static bool recover_done(struct cluster *c, void *arg)
{
	(void)c;
	return ((struct recover_wait *)arg)->done;
}

/* Runs store_recover() on node @i, naming @down (or NULL), and waits for
 * its answer; fails the test when it refuses. */
static struct recover_wait recover_on(struct cluster *c, unsigned i, const char *const *down)
{
	char *error = NULL;
	struct recover_wait w = {0};
	int r = store_recover(c->nodes[i].store, down, recover_cb, &w, &error);
	if (r < 0)
		fail_msg("store_recover: %s", error ? error : strerror(-r));
	wait_for(c, recover_done, &w, "store_recover's answer");
	if (w.error[0])
		fail_msg("recover: %s", w.error);
	return w;
}

/* Node @node's state holds a lease for @mac. */
struct holds {
	unsigned node;
	const char *mac;
};

static bool node_holds(struct cluster *c, void *arg)
{
	const struct holds *h = arg;
	const struct node *n = &c->nodes[h->node];
	return node_running(n) && has_lease(store_state(n->store), h->mac);
}

/* Node @i's Raft runs, following or standing for election. */
static bool raft_runs(struct cluster *c, void *arg)
{
	struct node *n = &c->nodes[*(unsigned *)arg];
	if (!node_running(n))
		return false;
	json_t *st = store_status(n->store);
	const char *state = json_string_value(json_object_get(st, "state"));
	bool ok = state && (strcmp(state, "follower") == 0 || strcmp(state, "candidate") == 0);
	json_decref(st);
	return ok;
}

/* Node @i runs Raft without leading: what store_recover() needs. */
static bool follows_no_one(struct cluster *c, void *arg)
{
	struct node *n = &c->nodes[*(unsigned *)arg];
	if (!node_running(n) || store_is_leader(n->store))
		return false;
	json_t *st = store_status(n->store);
	const char *state = json_string_value(json_object_get(st, "state"));
	bool ok = state && (strcmp(state, "follower") == 0 || strcmp(state, "candidate") == 0) &&
	          json_integer_value(json_object_get(st, "generation")) >= 1;
	json_decref(st);
	return ok;
}

/* A majority is lost for good. The survivor, recovered by fiat, leads a
 * new generation alone and takes writes; a lost member that comes back
 * rejoins that generation and the command only it had is merged. */
static void test_recover_new_generation(void **state)
{
	struct cluster *c = *state;
	c->snapshot_threshold = 16; /* the survivor restarts from a snapshot */
	c->all_seeds = true;
	int s, l = three_agreeing(c, 40, &s, "the three to agree before the majority is lost");

	/* s goes first; the two others commit one more command, then go too,
	 * and s comes back alone. */
	node_stop(c, (unsigned)s);
	struct store_cmd orphan = lease(100);
	struct op op = propose_once(c, (unsigned)l, &orphan);
	assert_int_equal(op.status, 0);
	assert_true(op.result.applied);
	unsigned back = (unsigned)(3 - l - s);
	node_stop(c, (unsigned)l);
	node_stop(c, back);
	unsigned sv = (unsigned)s;
	node_start(c, sv);
	wait_for(c, follows_no_one, &sv, "the survivor to resume from its snapshot");
	assert_int_equal(status_int(c->nodes[sv].store, "generation"), 1);

	struct recover_wait w = recover_on(c, sv, NULL);
	assert_int_equal(w.generation, 2);
	assert_int_equal(w.n_members, 1);

	struct formed alone = {.mask = 1u << sv, .voters = 1, .generation = 2};
	wait_for(c, cluster_formed, &alone, "the survivor to lead generation 2 alone");
	struct store_cmd after = lease(101);
	op = propose_retry(c, sv, &after);
	assert_int_equal(op.status, 0);
	assert_true(op.result.applied);
	assert_false(has_lease(store_state(c->nodes[sv].store),
	                       STORE_CMD_ROW(&orphan, struct store_lease)->mac));

	/* The member that had the orphan comes back: it learns of generation
	 * 2, rejoins as a fresh replica, and re-proposes the orphan. */
	node_start(c, (unsigned)l);
	unsigned two = (1u << sv) | (1u << l);
	struct formed rejoined = {.mask = two, .voters = 2, .generation = 2};
	wait_for(c, cluster_formed, &rejoined, "the lost member to rejoin generation 2");
	struct holds merged = {.node = sv, .mac = STORE_CMD_ROW(&orphan, struct store_lease)->mac};
	wait_for(c, node_holds, &merged, "the orphaned lease to be merged");
	wait_for(c, states_agree, &two, "the rejoined member to agree with the survivor");
	const struct store_state *st = store_state(c->nodes[sv].store);
	assert_true(has_lease(st, STORE_CMD_ROW(&after, struct store_lease)->mac));
	assert_int_equal(store_count(st, STORE_CONFLICTS), 0);
	assert_int_equal(store_cluster(st)->generation, 2);
}

/* The same loss, but the survivor restarted before anyone recovered, and
 * its data directory holds no snapshot yet (the default threshold): it
 * must still be recoverable from its log. */
static void test_recover_restarted_without_snapshot(void **state)
{
	struct cluster *c = *state;
	c->all_seeds = true;
	int s;
	three_agreeing(c, 10, &s, "the three to agree before the majority is lost");
	for (unsigned i = 0; i < 3; i++)
		node_stop(c, i);
	unsigned sv = (unsigned)s;
	node_start(c, sv);
	wait_for(c, raft_runs, &sv, "the survivor's Raft to run");

	struct recover_wait w = recover_on(c, sv, NULL);
	assert_int_equal(w.generation, 2);
	struct formed alone = {.mask = 1u << sv, .voters = 1, .generation = 2};
	wait_for(c, cluster_formed, &alone, "the survivor to lead generation 2 alone");
	assert_int_equal(store_count(store_state(c->nodes[sv].store), STORE_LEASES), 10);
}

/* The leader's Raft configuration has @voters voters and @standbys
 * standbys. */
struct roles {
	unsigned voters, standbys;
};

static bool leader_roles(struct cluster *c, void *arg)
{
	const struct roles *want = arg;
	int l = leader_of(c);
	if (l < 0)
		return false;
	json_t *st = store_status(c->nodes[l].store), *m;
	size_t k;
	unsigned voters = 0, standbys = 0;
	json_array_foreach(json_object_get(st, "members"), k, m)
	{
		const char *role = json_string_value(json_object_get(m, "role"));
		voters += role && strcmp(role, "voter") == 0;
		standbys += role && strcmp(role, "standby") == 0;
	}
	json_decref(st);
	return voters == want->voters && standbys == want->standbys;
}

/* The leader's voters are @voters ids, none of them @arg's node. */
struct replaced {
	uint64_t gone_id;
	size_t voters;
};

static bool voter_replaced(struct cluster *c, void *arg)
{
	const struct replaced *r = arg;
	int l = leader_of(c);
	uint64_t ids[16];
	if (l < 0)
		return false;
	size_t n = store_voters(c->nodes[l].store, ids, 16);
	bool without = n == r->voters;
	for (size_t k = 0; k < n; k++)
		without &= ids[k] != r->gone_id;
	return without;
}

/* With three voters wanted and a fourth member as a standby, a voter that
 * stays unreachable for promote_after_ms is replaced by the standby. */
static void test_standby_replaces_voter(void **state)
{
	struct cluster *c = *state;
	c->voters = 3;
	c->promote_after_ms = 1000;
	cluster_start(c, 4, 3);
	struct roles three_one = {.voters = 3, .standbys = 1};
	wait_for(c, leader_roles, &three_one, "3 voters and 1 standby");
	int l = leader_of(c);
	assert_true(l >= 0);
	uint64_t ids[16];
	size_t n = store_voters(c->nodes[l].store, ids, 16);
	int gone = -1;
	for (unsigned i = 0; i < 4; i++)
		for (size_t k = 0; k < n; k++)
			if ((int)i != l && ids[k] == c->nodes[i].o.id)
				gone = (int)i;
	assert_true(gone >= 0);
	node_stop(c, (unsigned)gone);

	struct replaced r = {.gone_id = c->nodes[gone].o.id, .voters = 3};
	wait_for(c, voter_replaced, &r, "the standby to replace the unreachable voter");
	/* ... and is kept as a standby, one change after its replacement. */
	wait_for(c, leader_roles, &three_one, "the unreachable voter to be made a standby");
	/* The new voters commit without it. */
	struct store_cmd cmd = lease(1);
	struct op op = propose_retry(c, (unsigned)leader_of(c), &cmd);
	assert_int_equal(op.status, 0);
	unsigned mask = 15 & ~(1u << gone);
	wait_for(c, states_agree, &mask, "the remaining members to agree");
}

/* Every node in @mask runs and follows one leader at @generation, whatever
 * the roles. */
struct one_leader {
	unsigned mask;
	uint64_t generation;
};

static bool follow_one_leader(struct cluster *c, void *arg)
{
	const struct one_leader *o = arg;
	int l = leader_of(c);
	if (l < 0)
		return false;
	for (unsigned i = 0; i < MAX_NODES; i++) {
		struct node *n = &c->nodes[i];
		if (!(o->mask & (1u << i)))
			continue;
		if (!node_running(n) || store_leader_id(n->store) != c->nodes[l].o.id ||
		    store_cluster(store_state(n->store))->generation != o->generation)
			return false;
	}
	return true;
}

/* Raft cannot listen (its port is taken): store_open() fails and says
 * why, and what it had started closes after it returned, touching no
 * freed memory (ASan). */
static void test_open_fails_when_raft_cannot_listen(void **state)
{
	struct cluster *c = *state;
	node_options(c, 0, 1);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->raft_port[0])};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	struct store *s = NULL;
	char *error = NULL;
	int r = open_store(&c->loop, &c->nodes[0].o, &s, &error);
	assert_int_equal(r, -EIO);
	assert_non_null(error);
	assert_non_null(strstr(error, "raft_start"));
	free(error);
	run_for(c, 200); /* Raft's close ends here */
	close(fd);
}

/* What the agent does when it stops right after a recovery was declared:
 * close the node from inside store_recover()'s answer, while the store is
 * closing Raft to restart it. */
struct close_in_answer {
	struct cluster *c;
	unsigned node;
	bool answered;
};

static void recover_then_close(void *userdata, json_t *result, const char *error)
{
	struct close_in_answer *x = userdata;
	struct node *n = &x->c->nodes[x->node];
	(void)result;
	(void)error;
	x->answered = true;
	n->up = false;
	if (n->peer_open)
		ctl_server_close(&n->peer, peer_closed_cb);
	store_close(n->store, store_closed_cb, n);
}

static bool answered(struct cluster *c, void *arg)
{
	(void)c;
	return ((struct close_in_answer *)arg)->answered;
}

/* The store closes while Raft is being closed to restart (a recovery
 * declared, a reset to a newer generation): Raft is closed once, and the
 * store closes. A second raft_close() crashed libraft. */
static void test_close_while_restarting(void **state)
{
	struct cluster *c = *state;
	c->all_seeds = true;
	int s, l = three_agreeing(c, 5, &s, "the three to agree");
	node_stop(c, (unsigned)l);
	node_stop(c, (unsigned)(3 - l - s));
	unsigned sv = (unsigned)s;
	wait_for(c, follows_no_one, &sv, "the survivor to lose its leader");
	struct close_in_answer x = {c, sv, false};
	char *error = NULL;
	int r = store_recover(c->nodes[sv].store, NULL, recover_then_close, &x, &error);
	if (r < 0)
		fail_msg("store_recover: %s", error ? error : strerror(-r));
	wait_for(c, answered, &x, "store_recover's answer");
	wait_for(c, node_closed, &c->nodes[sv], "the store to close while Raft restarts");
}

/* The leader closes with several disk writes in flight (the agent stops
 * right after its own writes): libraft 0.15 crashed in raft_close(), each
 * cancelled write truncating the log past its end. The close now waits for
 * the writes; every proposal is answered and the store closes. */
static void test_close_with_writes_in_flight(void **state)
{
	struct cluster *c = *state;
	cluster_start(c, 1, 1);
	struct op ops[4] = {0};
	for (unsigned k = 0; k < 4; k++) {
		struct store_cmd cmd = lease(100 + k);
		assert_int_equal(store_propose(c->nodes[0].store, &cmd, op_cb, &ops[k]), 0);
	}
	node_stop(c, 0);
	for (unsigned k = 0; k < 4; k++)
		assert_true(ops[k].done);
}

/* Anyone who reaches a Raft port can send libraft's handshake and a fence
 * message naming a newer generation, in clear and before any key is
 * judged. It made the host wipe its replica and rejoin; now the host asks
 * its members over the peer API, and none of them is newer: nothing
 * happens. */
static void test_forged_fence_resets_nothing(void **state)
{
	struct cluster *c = *state;
	int f;
	three_agreeing(c, 5, &f, "the three to agree");
	unsigned all = 7;
	uint8_t msg[24 + 16 + 16] = {0}, *p = msg;
	const uint64_t handshake[3] = {1, 99, 16}; /* protocol, server id, address size */
	for (unsigned i = 0; i < 3; i++, p += 8)
		for (unsigned b = 0; b < 8; b++)
			p[b] = (uint8_t)(handshake[i] >> (8 * b)); /* little-endian */
	memcpy(p, "127.0.0.1:9", 11);
	p += 16;
	const uint64_t fence[2] = {0x4554544d47454e31ull, 1000}; /* "ETTMGEN1", a generation */
	for (unsigned i = 0; i < 2; i++, p += 8)
		for (unsigned b = 0; b < 8; b++)
			p[b] = (uint8_t)(fence[i] >> (56 - 8 * b)); /* big-endian */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(c->raft_port[f]),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, msg, sizeof(msg)), (ssize_t)sizeof(msg));
	run_for(c, 1500);
	close(fd);
	json_t *st = store_status(c->nodes[f].store);
	assert_int_equal(json_integer_value(json_object_get(st, "generation")), 1);
	json_decref(st);
	assert_true(states_agree(c, &all));
}

/* Four nodes, three voters, five writes everywhere: the leader @l, the
 * standby @sb, and the two other voters @v and @lost. */
struct four {
	int l, sb, v, lost;
};

static struct four start_four(struct cluster *c)
{
	c->all_seeds = true;
	c->voters = 3;
	cluster_start(c, 4, 3);
	struct four f = {.l = leader_of(c), .sb = -1, .v = -1, .lost = -1};
	assert_true(f.l >= 0);
	uint64_t ids[16];
	size_t nv = store_voters(c->nodes[f.l].store, ids, 16);
	for (unsigned i = 0; i < 4; i++) {
		bool voter = false;
		for (size_t k = 0; k < nv; k++)
			voter |= ids[k] == c->nodes[i].o.id;
		if (!voter)
			f.sb = (int)i;
		else if ((int)i != f.l)
			*(f.v < 0 ? &f.v : &f.lost) = (int)i;
	}
	assert_true(f.sb >= 0 && f.v >= 0 && f.lost >= 0);
	propose_many(c, (unsigned)f.l, 1, 5, 5);
	unsigned all = 15;
	wait_for(c, states_agree, &all, "the four to agree");
	return f;
}

static bool knows_no_leader(struct cluster *c, void *arg)
{
	struct node *n = &c->nodes[*(unsigned *)arg];
	return node_running(n) && store_leader_id(n->store) == 0;
}

/* The voters go: the standby, which never stands for election, forgets
 * the leader it heard last (libraft keeps it for good), so its host sees
 * that no leader is elected (the failure detector, recovery). */
static void test_standby_forgets_a_silent_leader(void **state)
{
	struct cluster *c = *state;
	struct four f = start_four(c);
	unsigned sb = (unsigned)f.sb;
	assert_true(store_leader_id(c->nodes[sb].store) != 0);
	node_stop(c, (unsigned)f.l);
	node_stop(c, (unsigned)f.v);
	node_stop(c, (unsigned)f.lost);
	wait_for(c, knows_no_leader, &sb, "the standby to forget the leader");
}

/* A standby misses 20 acknowledged writes, the leader and another voter
 * are lost, and the recovery runs on the standby: it is declared from the
 * log of the voter that survived, so every write is on both survivors
 * without the lost hosts. Those come back, rejoin generation 2 (the fence
 * and the probe), and no second leader appears. */
static void test_recover_on_lagging_survivor(void **state)
{
	struct cluster *c = *state;
	struct four f = start_four(c);
	int l = f.l, sb = f.sb, v = f.v, lost = f.lost;
	unsigned all = 15;

	node_stop(c, (unsigned)sb);
	propose_many(c, (unsigned)l, 100, 20, 5);
	node_stop(c, (unsigned)l);
	node_stop(c, (unsigned)lost);
	unsigned s = (unsigned)sb;
	node_start(c, s);
	wait_for(c, raft_runs, &s, "the lagging standby's Raft to run");

	struct recover_wait w = recover_on(c, s, NULL);
	assert_int_equal(w.generation, 2);
	assert_int_equal(w.n_members, 2);
	struct formed two = {.mask = (1u << s) | (1u << v), .voters = 1, .generation = 2};
	wait_for(c, cluster_formed, &two, "the survivors to form generation 2");
	assert_int_equal(leader_of(c), v); /* the survivor that was ahead */
	unsigned both = two.mask;
	wait_for(c, states_agree, &both, "the survivors to agree");
	assert_int_equal(store_count(store_state(c->nodes[s].store), STORE_LEASES), 25);

	node_start(c, (unsigned)l);
	node_start(c, (unsigned)lost);
	struct one_leader back = {.mask = all, .generation = 2};
	wait_for(c, follow_one_leader, &back, "the lost hosts to follow generation 2's leader");
	assert_int_equal(leader_of(c), v);
	wait_for(c, states_agree, &all, "the four to agree again");
	const struct store_state *st = store_state(c->nodes[l].store);
	assert_int_equal(store_count(st, STORE_LEASES), 25);
	assert_int_equal(store_count(st, STORE_CONFLICTS), 0);
}

/* The failure detector names the voters whose ports are down: the
 * recovery does not ask them (it would wait out their timeouts) and leaves
 * them out of the new membership, even one that would have answered. */
static void test_recover_leaves_out_known_down(void **state)
{
	struct cluster *c = *state;
	struct four f = start_four(c);
	int l = f.l, sb = f.sb, lost = f.lost;
	node_stop(c, (unsigned)l);
	node_stop(c, (unsigned)lost);
	unsigned s = (unsigned)f.v;
	wait_for(c, follows_no_one, &s, "the surviving voter to lose its leader");

	const char *down[] = {c->nodes[l].o.name, c->nodes[lost].o.name, c->nodes[sb].o.name, NULL};
	struct recover_wait w = recover_on(c, s, down);
	assert_int_equal(w.generation, 2);
	assert_int_equal(w.n_members, 1); /* without the standby, which was up */
	struct formed alone = {.mask = 1u << s, .voters = 1, .generation = 2};
	wait_for(c, cluster_formed, &alone, "the survivor to lead generation 2 alone");
	assert_int_equal(store_count(store_state(c->nodes[s].store), STORE_LEASES), 5);
}

/* ---- a leader's peer API that does not answer as it should ---- */

/* What the scripted peer API of a leader does with store.propose and
 * store.barrier: hold them unanswered (a leader cut off right after the
 * command reached it), or answer with an index this host's Raft never
 * receives (a follower cut off from the leader right after the answer). */
enum script { SCRIPT_SILENT, SCRIPT_AHEAD };

struct scripted {
	enum script mode;
	struct ctl_deferred *held[4];
	unsigned n_held;
};

static int scripted_peer(void *userdata, struct ctl_client *client, const struct ctl_request *req,
                         json_t **ret_result, char **ret_error)
{
	struct scripted *sp = userdata;
	bool propose = strcmp(req->cmd, "store.propose") == 0;
	if (!propose && strcmp(req->cmd, "store.barrier") != 0) {
		*ret_error = strdup("not answered in this test");
		return -ENOENT;
	}
	if (sp->mode == SCRIPT_SILENT && sp->n_held < 4) {
		sp->held[sp->n_held++] = ctl_defer(client, req);
		return CTL_DEFERRED;
	}
	*ret_result = propose ? json_pack("{s:b, s:s, s:I, s:I}", "applied", 1, "reason", "",
	                                  "value", (json_int_t)0, "index", (json_int_t)1000000)
	                      : json_pack("{s:I}", "index", (json_int_t)1000000);
	return 0;
}

static bool has_text(const char *s, const char *part)
{
	if (!strstr(s, part))
		fail_msg("\"%s\" not in \"%s\"", part, s);
	return true;
}

/* Waits for @op, started at @t0, and checks that it failed with
 * -ETIMEDOUT after one forward timeout (10 election timeouts of 150 ms),
 * not long after. */
static void expect_timeout(struct cluster *c, struct op *op, uint64_t t0)
{
	wait_for(c, op_done, op, "the forwarded command's callback");
	uint64_t took = mono_ms() - t0;
	if (op->status != -ETIMEDOUT)
		fail_msg("status %d (%s), not -ETIMEDOUT", op->status, op->error);
	if (took < 1400 || took > 3000)
		fail_msg("answered after %" PRIu64 " ms, not about 1.5 s", took);
}

/* Every wait of a forwarded command has a bound and says what is known:
 * the leader never answers; the leader answers but this follower never
 * applies what it answered with (proposal and barrier). */
static void test_forward_timeouts(void **state)
{
	struct cluster *c = *state;
	cluster_start(c, 3, 3);
	int l = leader_of(c), f = follower_of(c, l);
	assert_true(l >= 0 && f >= 0);
	struct node *ln = &c->nodes[l];
	char name[8];
	snprintf(name, sizeof(name), "h%d", l + 1);

	/* The leader's store and Raft go on; its peer API is replaced. */
	ctl_server_close(&ln->peer, peer_closed_cb);
	while (ln->peer_open)
		uv_run(&c->loop, UV_RUN_ONCE);
	struct scripted sp = {.mode = SCRIPT_SILENT};
	assert_int_equal(
	    ctl_server_start_tcp(&ln->peer, &c->loop, ln->o.peer_address, scripted_peer, &sp), 0);
	ln->peer_open = true;

	struct store_cmd cmd = lease(11);
	struct op op = {0};
	uint64_t t0 = mono_ms();
	assert_int_equal(store_propose(c->nodes[f].store, &cmd, op_cb, &op), 0);
	expect_timeout(c, &op, t0);
	has_text(op.error, "forwarded to the leader");
	has_text(op.error, name);
	has_text(op.error, "no answer within 1.5 s: it may or may not have been committed");
	assert_int_equal(sp.n_held, 1);
	ctl_deferred_reply(sp.held[0], NULL, "too late");

	sp.mode = SCRIPT_AHEAD;
	op = (struct op){0};
	t0 = mono_ms();
	assert_int_equal(store_propose(c->nodes[f].store, &cmd, op_cb, &op), 0);
	expect_timeout(c, &op, t0);
	has_text(op.error, name);
	has_text(op.error, "committed it at index 1000000");
	has_text(op.error, "applied only up to");

	op = (struct op){0};
	t0 = mono_ms();
	assert_int_equal(store_barrier(c->nodes[f].store, op_cb, &op), 0);
	expect_timeout(c, &op, t0);
	has_text(op.error, "had applied up to index 1000000");
}

/* ---- Raft over mutual TLS ---- */

/* The same tests with every node's Raft and peer API over TLS, all with
 * one identity (one process). */
static int setup_tls(void **state)
{
	if (setup(state) < 0)
		return -1;
	struct cluster *c = *state;
	char *error = NULL;
	if (ctl_tls_open(c->dir, "cluster", &c->tls, &error) < 0) {
		fprintf(stderr, "TLS identity: %s\n", error ? error : "out of memory");
		free(error);
		return -1;
	}
	ctl_tls_set_default(c->tls);
	return 0;
}

static int teardown_tls(void **state)
{
	struct ctl_tls *tls = ((struct cluster *)*state)->tls;
	int r = teardown(state);
	ctl_tls_free(tls); /* and the default with it */
	return r;
}

static int refuse_ids(void *userdata, const char *fp, uint64_t raft_id, char **ret_error)
{
	struct cluster *c = userdata;
	c->raft_checks++;
	assert_string_equal(fp, ctl_tls_fingerprint(c->tls));
	if (c->raft_refused & (1u << (raft_id - 1))) {
		*ret_error = strdup("refused by the test");
		return -EACCES;
	}
	return 0;
}

static bool time_passed(struct cluster *c, void *arg)
{
	(void)c;
	return mono_ms() >= *(uint64_t *)arg;
}

/* The Raft check is asked about every connection; a server id it refuses
 * gets nothing more within a second (its running connections close), and
 * catches up once it is heard again. */
static void test_tls_raft_check(void **state)
{
	struct cluster *c = *state;
	cluster_start(c, 3, 3);
	for (unsigned i = 0; i < 3; i++)
		store_set_raft_check(c->nodes[i].store, refuse_ids, c);
	int l = leader_of(c);
	assert_true(l >= 0);
	propose_many(c, (unsigned)l, 1, 10, 5);
	unsigned all = 7;
	wait_for(c, states_agree, &all, "the three agree over TLS");
	/* Refuse the follower that is not needed for the majority. */
	int f = follower_of(c, l);
	assert_true(f >= 0);
	unsigned before = c->raft_checks;
	c->raft_refused = 1u << f;
	uint64_t until = mono_ms() + 1500;
	assert_true(run_until(c, time_passed, &until));
	assert_true(c->raft_checks > before);
	unsigned had = c->nodes[f].n_log;
	propose_many(c, (unsigned)l, 11, 10, 5);
	until = mono_ms() + 1000;
	assert_true(run_until(c, time_passed, &until));
	assert_int_equal(c->nodes[f].n_log, had);
	assert_int_equal(c->nodes[l].n_log, 20);
	/* Heard again: it catches up. */
	c->raft_refused = 0;
	wait_for(c, states_agree, &all, "the refused member caught up");
	assert_int_equal(c->nodes[f].n_log, 20);
}

int main(void)
{
	/* As ettmd: a peer that went away is an error on the write, not a
	 * signal. */
	signal(SIGPIPE, SIG_IGN);
	const char *filter = getenv("STORE_CLUSTER_TEST");
	if (filter)
		cmocka_set_test_filter(filter);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_single_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_three_join_same_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_follower_forwards, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_follower_barrier, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_forward_timeouts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_leader_loss, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lagging_catches_up, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_recover_new_generation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_recover_restarted_without_snapshot, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_standby_replaces_voter, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_recover_on_lagging_survivor, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_recover_leaves_out_known_down, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_while_restarting, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_with_writes_in_flight, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_standby_forgets_a_silent_leader, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_forged_fence_resets_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_fails_when_raft_cannot_listen, setup,
	                                    teardown),
	    /* Over TLS. */
	    cmocka_unit_test_setup_teardown(test_tls_raft_check, setup_tls, teardown_tls),
	    cmocka_unit_test_setup_teardown(test_three_join_same_order, setup_tls, teardown_tls),
	    cmocka_unit_test_setup_teardown(test_follower_forwards, setup_tls, teardown_tls),
	    cmocka_unit_test_setup_teardown(test_leader_loss, setup_tls, teardown_tls),
	    cmocka_unit_test_setup_teardown(test_lagging_catches_up, setup_tls, teardown_tls),
	    cmocka_unit_test_setup_teardown(test_recover_new_generation, setup_tls, teardown_tls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
