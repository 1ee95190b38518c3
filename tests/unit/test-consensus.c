/* The store's state machine under real Raft consensus, on libraft's
 * raft_fixture: simulated time, network and disk, no sleeps. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <raft.h>
#include <raft/fixture.h>

#include "store/fsm.h"
#include "store/membership.h"
#include "trust/tables.h"
#include "tables-all.h"

#define MAX 5

struct cluster {
	struct raft_fixture f;
	struct store_state *states[MAX];
	struct store_fsm fsms[MAX];
	unsigned corrupt[MAX];
	unsigned n;
};

static void on_corrupt(void *userdata, const char *why)
{
	(void)why;
	(*(unsigned *)userdata)++;
}

/* @n servers, the first @voters of them voting, the rest standbys. */
static struct cluster *cluster_new(unsigned n, unsigned voters)
{
	struct cluster *c = calloc(1, sizeof(*c));
	c->n = n;
	assert_int_equal(raft_fixture_initialize(&c->f), 0);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(store_state_new(&c->states[i]), 0);
		store_fsm_init(&c->fsms[i], c->states[i]);
		c->fsms[i].corrupt = on_corrupt;
		c->fsms[i].userdata = &c->corrupt[i];
		assert_int_equal(raft_fixture_grow(&c->f, &c->fsms[i].fsm), 0);
	}
	struct raft_configuration conf;
	assert_int_equal(raft_fixture_configuration(&c->f, voters, &conf), 0);
	assert_int_equal(raft_fixture_bootstrap(&c->f, &conf), 0);
	raft_configuration_close(&conf);
	assert_int_equal(raft_fixture_start(&c->f), 0);
	return c;
}

static void cluster_free(struct cluster *c)
{
	raft_fixture_close(&c->f);
	for (unsigned i = 0; i < c->n; i++)
		store_state_free(c->states[i]);
	free(c);
}

struct applied {
	int status;
	struct store_result result;
	bool done;
};

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct applied *a = req->data;
	a->status = status;
	if (result)
		a->result = *(struct store_result *)result;
	a->done = true;
	free(req);
}

/* Proposes on the current leader and runs the cluster until every live
 * replica has applied it. */
static struct applied propose(struct cluster *c, const struct store_cmd *cmd)
{
	uint8_t *data;
	size_t len, padded;
	struct applied a = {0};
	unsigned leader = raft_fixture_leader_index(&c->f);
	assert_true(leader < c->n);
	struct raft *r = raft_fixture_get(&c->f, leader);
	assert_int_equal(store_cmd_encode(cmd, &data, &len), 0);
	struct raft_buffer buf = {.base = store_fsm_entry(data, len, &padded)};
	buf.len = padded;
	free(data);
	struct raft_apply *req = calloc(1, sizeof(*req));
	req->data = &a;
	assert_int_equal(raft_apply(r, req, &buf, 1, apply_cb), 0);
	raft_index index = raft_last_index(r);
	for (unsigned i = 0; i < c->n; i++)
		if (raft_fixture_alive(&c->f, i))
			assert_true(raft_fixture_step_until_applied(&c->f, i, index, 5000));
	assert_true(a.done);
	return a;
}

static struct store_cmd trust(const char *digest_char, uint64_t time)
{
	struct store_cmd cmd = {.table = TRUST_TRUSTED, .op = STORE_PUT, .time_ms = time};
	memset(STORE_CMD_ROW(&cmd, struct trust_trusted)->digest, digest_char[0], 64);
	snprintf(STORE_CMD_ROW(&cmd, struct trust_trusted)->note,
	         sizeof(STORE_CMD_ROW(&cmd, struct trust_trusted)->note), "note %s", digest_char);
	return cmd;
}

static void assert_replicas_equal(struct cluster *c, unsigned skip)
{
	uint8_t *first = NULL, *snap;
	size_t first_len = 0, len;
	for (unsigned i = 0; i < c->n; i++) {
		if (i == skip)
			continue;
		assert_int_equal(store_state_snapshot(c->states[i], &snap, &len), 0);
		if (!first) {
			first = snap;
			first_len = len;
			continue;
		}
		assert_int_equal(len, first_len);
		assert_memory_equal(snap, first, len);
		free(snap);
	}
	free(first);
}

static void test_commit_and_agree(void **state)
{
	(void)state;
	struct cluster *c = cluster_new(3, 3);
	raft_fixture_elect(&c->f, 0);
	const char *digits = "0123456789";
	for (int i = 0; i < 10; i++) {
		struct store_cmd cmd = trust(&digits[i], 1000 + (uint64_t)i);
		struct applied a = propose(c, &cmd);
		assert_int_equal(a.status, 0);
		assert_true(a.result.applied);
	}
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(store_count(c->states[i], TRUST_TRUSTED), 10);
	assert_replicas_equal(c, MAX);
	cluster_free(c);
}

/* A command the state does not allow is committed and rejected identically
 * on every replica, with the reason the proposer gets. */
static void test_rejected_everywhere(void **state)
{
	(void)state;
	struct cluster *c = cluster_new(3, 3);
	raft_fixture_elect(&c->f, 1);
	struct store_cmd cmd = trust("a", 1);
	assert_true(propose(c, &cmd).result.applied);
	struct applied again = propose(c, &cmd);
	assert_int_equal(again.status, 0);
	assert_false(again.result.applied);
	assert_string_equal(again.result.reason, "aaaaaaaaaaaaaaaa... is already trusted");
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(store_count(c->states[i], TRUST_TRUSTED), 1);
	assert_replicas_equal(c, MAX);
	cluster_free(c);
}

/* Losing the leader loses no committed write, and the new leader goes on. */
static void test_leader_loss(void **state)
{
	(void)state;
	struct cluster *c = cluster_new(3, 3);
	raft_fixture_elect(&c->f, 0);
	struct store_cmd a = trust("1", 1), b = trust("2", 2);
	propose(c, &a);
	propose(c, &b);
	raft_fixture_kill(&c->f, 0);
	assert_true(raft_fixture_step_until_has_no_leader(&c->f, 10000));
	assert_true(raft_fixture_step_until_has_leader(&c->f, 10000));
	unsigned leader = raft_fixture_leader_index(&c->f);
	assert_true(leader == 1 || leader == 2);
	struct store_cmd d = trust("3", 3);
	assert_true(propose(c, &d).result.applied);
	for (unsigned i = 1; i < 3; i++)
		assert_int_equal(store_count(c->states[i], TRUST_TRUSTED), 3);
	assert_replicas_equal(c, 0);
	cluster_free(c);
}

/* The membership policy, driven on a real leader: a voter gone for longer
 * than promote_after_ms is replaced by a caught-up standby, one change at a
 * time, and the dead voter is demoted. */
static void test_standby_promotion(void **state)
{
	(void)state;
	struct cluster *c = cluster_new(4, 3); /* servers 1-3 vote, 4 is a standby */
	raft_fixture_elect(&c->f, 0);
	struct store_cmd cmd = trust("c", 1);
	propose(c, &cmd);
	struct membership m = {.promote_after_ms = 1000, .self = 1};
	struct raft *leader = raft_fixture_get(&c->f, 0);

	raft_fixture_kill(&c->f, 2); /* server 3, a voter */
	bool promoted = false, demoted = false;
	struct raft_change *change = NULL;
	for (int step = 0; step < 100 && !(promoted && demoted); step++) {
		raft_fixture_step_until_elapsed(&c->f, 100);
		struct membership_change next =
		    membership_next(&m, leader, c->states[0], raft_fixture_time(&c->f));
		if (next.action != MEMBERSHIP_ASSIGN)
			continue;
		if (next.id == 4) {
			assert_int_equal(next.role, RAFT_VOTER);
			assert_false(demoted); /* the replacement votes first */
			promoted = true;
		} else {
			assert_int_equal(next.id, 3);
			assert_int_equal(next.role, RAFT_STANDBY);
			assert_true(promoted);
			demoted = true;
		}
		change = calloc(1, sizeof(*change));
		assert_int_equal(raft_assign(leader, change, next.id, next.role, NULL), 0);
		raft_fixture_step_until_elapsed(&c->f, 500);
		free(change);
		/* Nothing more while nothing changed: one change at a time. */
	}
	assert_true(promoted);
	assert_true(demoted);
	int roles[5] = {0};
	for (unsigned i = 0; i < leader->configuration.n; i++)
		roles[leader->configuration.servers[i].id] = leader->configuration.servers[i].role;
	assert_int_equal(roles[4], RAFT_VOTER);
	assert_int_equal(roles[3], RAFT_STANDBY);
	/* The cluster still commits with its new voters. */
	struct store_cmd more = trust("d", 2);
	assert_true(propose(c, &more).result.applied);
	cluster_free(c);
}

/* New standbys catch up one at a time: the leader sends each the whole
 * log until it has, so the next spare waits for the one before (within
 * MEMBERSHIP_CAUGHT_UP_LAG entries), or for MEMBERSHIP_CATCH_UP_MS. A
 * leader state built by hand: server 1 leads alone, 2 has just been made a
 * standby, 3 and 4 are spares. */
static void test_one_catch_up_at_a_time(void **state)
{
	(void)state;
	struct raft_server servers[] = {{.id = 1, .address = "1", .role = RAFT_VOTER},
	                                {.id = 2, .address = "2", .role = RAFT_STANDBY},
	                                {.id = 3, .address = "3", .role = RAFT_SPARE},
	                                {.id = 4, .address = "4", .role = RAFT_SPARE}};
	struct raft_progress progress[4] = {{.match_index = 1000}, {.match_index = 10}};
	struct raft r = {.commit_index = 1000};
	r.configuration.servers = servers;
	r.configuration.n = 4;
	r.leader_state.progress = progress;
	struct store_state *st;
	assert_int_equal(store_state_new(&st), 0);
	struct membership m = {.self = 1, .promote_after_ms = 60000, .catching_up = 2};

	struct membership_change next = membership_next(&m, &r, st, 1000);
	assert_int_equal(next.action, MEMBERSHIP_NONE);
	/* Within the lag it has caught up: the next spare goes. */
	progress[1].match_index = 1000 - MEMBERSHIP_CAUGHT_UP_LAG;
	next = membership_next(&m, &r, st, 1000);
	assert_int_equal(next.action, MEMBERSHIP_ASSIGN);
	assert_int_equal(next.id, 3);
	assert_int_equal(next.role, RAFT_STANDBY);
	servers[2].role = RAFT_STANDBY;
	/* Server 3 never answers: 4 waits, then goes after the catch-up time. */
	next = membership_next(&m, &r, st, 1000 + MEMBERSHIP_CATCH_UP_MS - 1);
	assert_int_not_equal(next.action == MEMBERSHIP_ASSIGN && next.id == 4, true);
	next = membership_next(&m, &r, st, 1000 + MEMBERSHIP_CATCH_UP_MS);
	assert_int_equal(next.action, MEMBERSHIP_ASSIGN);
	assert_int_equal(next.id, 4);
	assert_int_equal(next.role, RAFT_STANDBY);
	store_state_free(st);
}

/* A new replica is added and made a standby before anything else. */
static void test_new_member_added(void **state)
{
	(void)state;
	struct cluster *c = cluster_new(3, 3);
	raft_fixture_elect(&c->f, 0);
	struct store_cmd join = {.table = STORE_MEMBERS, .op = STORE_PUT, .time_ms = 1};
	(*STORE_CMD_ROW(&join, struct store_member)) =
	    (struct store_member){.id = 9, .name = "h9", .address = "9"};
	propose(c, &join);
	struct membership m = {.self = 1, .promote_after_ms = 1000};
	struct membership_change next =
	    membership_next(&m, raft_fixture_get(&c->f, 0), c->states[0], 0);
	assert_int_equal(next.action, MEMBERSHIP_ADD);
	assert_int_equal(next.id, 9);
	assert_string_equal(next.address, "9");
	cluster_free(c);
}

/* A log entry that does not decode stops every replica's state machine
 * (the hook fires) instead of being guessed at. */
static void test_corrupt_entry(void **state)
{
	(void)state;
	struct cluster *c = cluster_new(3, 3);
	raft_fixture_elect(&c->f, 0);
	struct raft *r = raft_fixture_get(&c->f, 0);
	struct raft_buffer buf = {.base = raft_malloc(8), .len = 8};
	memcpy(buf.base, "garbage!", 8);
	struct raft_apply *req = calloc(1, sizeof(*req));
	struct applied a = {0};
	req->data = &a;
	assert_int_equal(raft_apply(r, req, &buf, 1, apply_cb), 0);
	raft_fixture_step_until_elapsed(&c->f, 2000);
	assert_true(c->corrupt[0] >= 1);
	assert_int_equal(store_count(c->states[0], TRUST_TRUSTED), 0);
	cluster_free(c);
}

int main(void)
{
	register_all_tables();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_commit_and_agree), cmocka_unit_test(test_rejected_everywhere),
	    cmocka_unit_test(test_leader_loss),      cmocka_unit_test(test_standby_promotion),
	    cmocka_unit_test(test_new_member_added), cmocka_unit_test(test_corrupt_entry),
	    cmocka_unit_test(test_one_catch_up_at_a_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
