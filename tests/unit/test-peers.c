/* Who may ask what on the peer API: the scopes a client earns from the
 * store's members and admissions (src/ettmd/peers.c), the guard that
 * refuses out of scope and over the rate, and the per-source token buckets
 * under it (src/lib/ratelimit.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include <cmocka.h>

#include "ettmd/peers.h"
#include "lib/ratelimit.h"
#include "services/service.h"
#include "tables-all.h"

static struct in_addr ip(const char *text)
{
	struct in_addr a;
	assert_int_equal(inet_pton(AF_INET, text, &a), 1);
	return a;
}

static void put(struct store_state *st, const struct store_cmd *cmd)
{
	struct store_result res;
	assert_int_equal(store_state_apply(st, cmd, &res), 0);
	assert_true(res.applied);
}

static void member(struct store_state *st, uint64_t id, const char *name, const char *addr)
{
	struct store_cmd cmd = {.table = STORE_MEMBERS, .op = STORE_PUT, .time_ms = 1};
	struct store_member *m = STORE_CMD_ROW(&cmd, struct store_member);
	m->id = id;
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->address, sizeof(m->address), "%s:7700", addr);
	snprintf(m->peer, sizeof(m->peer), "%s:7701", addr);
	snprintf(m->raft_version, sizeof(m->raft_version), "test");
	put(st, &cmd);
}

static void admit(struct store_state *st, const char *host)
{
	struct store_cmd a = {.table = TRUST_ADMISSIONS, .op = STORE_PUT, .time_ms = 1};
	snprintf(STORE_CMD_ROW(&a, struct trust_admission)->host,
	         sizeof(STORE_CMD_ROW(&a, struct trust_admission)->host), "%s", host);
	put(st, &a);
}

static void test_scope_by_membership_and_admission(void **state)
{
	(void)state;
	struct store_state *st;
	assert_int_equal(store_state_new(&st), 0);
	const char *who = "x";

	/* A store not open yet: everyone is a stranger. */
	assert_int_equal(peer_scope(NULL, ip("10.77.0.1"), false, NULL, &who), SVC_JOIN);
	assert_null(who);

	member(st, 1, "h1", "10.77.0.1");
	member(st, 2, "h2", "10.77.0.2");
	/* No host is admitted anywhere: every member may relay. */
	assert_int_equal(peer_scope(st, ip("10.77.0.2"), false, NULL, &who),
	                 SVC_JOIN | SVC_PEER | SVC_RELAY);
	assert_string_equal(who, "h2");

	admit(st, "h1");
	/* Once the network admits hosts, only admitted members relay. */
	assert_int_equal(peer_scope(st, ip("10.77.0.1"), false, NULL, &who),
	                 SVC_JOIN | SVC_PEER | SVC_RELAY);
	assert_string_equal(who, "h1");
	assert_int_equal(peer_scope(st, ip("10.77.0.2"), false, NULL, &who), SVC_JOIN | SVC_PEER);
	/* A guest, a device, an address no member has, the guest of a
	 * member: strangers. */
	assert_int_equal(peer_scope(st, ip("10.77.1.1"), false, NULL, &who), SVC_JOIN);
	assert_null(who);
	assert_int_equal(peer_scope(st, ip("10.77.2.1"), false, NULL, NULL), SVC_JOIN);
	assert_int_equal(peer_scope(st, ip("10.77.0.99"), false, NULL, NULL), SVC_JOIN);
	/* Over TLS the key's admitted host decides, never the address: a
	 * key no admitted host holds is a stranger even at a member's
	 * address. */
	assert_int_equal(peer_scope(st, ip("10.77.0.99"), true, "h1", &who),
	                 SVC_JOIN | SVC_PEER | SVC_RELAY);
	assert_string_equal(who, "h1");
	assert_int_equal(peer_scope(st, ip("10.77.0.1"), true, "h9", NULL), SVC_JOIN);
	assert_int_equal(peer_scope(st, ip("10.77.0.1"), true, NULL, &who), SVC_JOIN);
	assert_null(who);
	assert_int_equal(peer_scope(st, ip("10.77.0.2"), true, "h2", &who), SVC_JOIN | SVC_PEER);
	assert_string_equal(who, "h2");
	store_state_free(st);
}

static void test_guard_refuses_out_of_scope(void **state)
{
	(void)state;
	struct peer_guard *g = malloc(sizeof(*g));
	assert_non_null(g);
	peer_guard_init(g);
	char *error = NULL;
	struct in_addr guest = ip("10.77.1.1"), h2 = ip("10.77.0.2");
	const unsigned stranger = SVC_JOIN, member_only = SVC_JOIN | SVC_PEER,
	               admitted = SVC_JOIN | SVC_PEER | SVC_RELAY;

	/* What the join protocol needs, anyone may ask. */
	assert_int_equal(peer_guard_check(g, guest, stranger, SVC_JOIN, "trust.challenge", 1000,
	                                  &error),
	                 0);
	/* The admin's commands, from no one on the peer API. */
	unsigned admin_only = SVC_ADMIN;
	assert_int_equal(
	    peer_guard_check(g, guest, stranger, admin_only, "store.dump", 1000, &error), -EPERM);
	assert_non_null(strstr(error, "store.dump"));
	assert_non_null(strstr(error, "10.77.1.1"));
	free(error);
	error = NULL;
	assert_int_equal(
	    peer_guard_check(g, h2, admitted, admin_only, "cluster", 1000, &error), -EPERM);
	free(error);
	error = NULL;
	/* A relayed admin command: not from a stranger, nor a member that is
	 * not admitted; from an admitted member. */
	unsigned relay = SVC_ADMIN | SVC_RELAY;
	assert_int_equal(
	    peer_guard_check(g, guest, stranger, relay, "cluster.remove", 1000, &error), -EPERM);
	free(error);
	error = NULL;
	assert_int_equal(
	    peer_guard_check(g, h2, member_only, relay, "store.propose", 1000, &error), -EPERM);
	assert_non_null(strstr(error, "not admitted"));
	free(error);
	error = NULL;
	assert_int_equal(peer_guard_check(g, h2, admitted, relay, "cluster.remove", 1000, &error),
	                 0);
	/* A member's protocol command. */
	assert_int_equal(peer_guard_check(g, h2, member_only, SVC_ADMIN | SVC_PEER,
	                                  "store.barrier", 1000, &error),
	                 0);
	assert_int_equal(peer_guard_check(g, guest, stranger, SVC_ADMIN | SVC_PEER,
	                                  "store.barrier", 1000, &error),
	                 -EPERM);
	free(error);
	error = NULL;
	/* An unknown command goes on, to be answered as unknown. */
	assert_int_equal(peer_guard_check(g, h2, admitted, 0, "nonsense", 1000, &error), 0);
	free(g);
}

static void test_guard_rate_of_strangers(void **state)
{
	(void)state;
	struct peer_guard *g = malloc(sizeof(*g));
	assert_non_null(g);
	peer_guard_init(g);
	char *error = NULL;
	struct in_addr rogue = ip("10.77.0.200"), other = ip("10.77.0.201"), h1 = ip("10.77.0.1");
	uint64_t t = 5000;
	/* The burst, then refusals, all at one instant. */
	for (int i = 0; i < (int)PEER_JOIN_BURST; i++)
		assert_int_equal(
		    peer_guard_check(g, rogue, SVC_JOIN, SVC_JOIN, "store.hello", t, &error), 0);
	assert_int_equal(peer_guard_check(g, rogue, SVC_JOIN, SVC_JOIN, "store.hello", t, &error),
	                 -EBUSY);
	assert_non_null(strstr(error, "10.77.0.200"));
	free(error);
	error = NULL;
	/* Another source has its own bucket; members are not counted. */
	assert_int_equal(peer_guard_check(g, other, SVC_JOIN, SVC_JOIN, "store.hello", t, &error),
	                 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(peer_guard_check(g, h1, SVC_JOIN | SVC_PEER, SVC_PEER,
		                                  "store.barrier", t, &error),
		                 0);
	/* A second later, PEER_JOIN_PER_S more. */
	t += 1000;
	for (int i = 0; i < (int)PEER_JOIN_PER_S; i++)
		assert_int_equal(
		    peer_guard_check(g, rogue, SVC_JOIN, SVC_JOIN, "store.hello", t, &error), 0);
	assert_int_equal(peer_guard_check(g, rogue, SVC_JOIN, SVC_JOIN, "store.hello", t, &error),
	                 -EBUSY);
	free(error);
	free(g);
}

static void test_rate_limiter(void **state)
{
	(void)state;
	struct rate_limiter *rl = malloc(sizeof(*rl));
	assert_non_null(rl);
	rate_limiter_init(rl, 2, 3);
	uint32_t a = 1, b = 2;
	assert_true(rate_take(rl, a, 100));
	assert_true(rate_take(rl, a, 100));
	assert_true(rate_take(rl, a, 100));
	assert_false(rate_take(rl, a, 100));
	/* 2 a second: one more after half a second, never above the burst. */
	assert_false(rate_take(rl, a, 400));
	assert_true(rate_take(rl, a, 600));
	assert_false(rate_take(rl, a, 600));
	assert_true(rate_take(rl, a, 100600));
	assert_true(rate_take(rl, a, 100600));
	assert_true(rate_take(rl, a, 100600));
	assert_false(rate_take(rl, a, 100600));
	/* A clock that goes back refills nothing. */
	assert_false(rate_take(rl, a, 50));
	assert_true(rate_take(rl, b, 50));

	/* Once a period per source. */
	assert_true(rate_log_due(rl, a, 1000, 60000));
	assert_false(rate_log_due(rl, a, 30000, 60000));
	assert_true(rate_log_due(rl, b, 30000, 60000));
	assert_true(rate_log_due(rl, a, 61000, 60000));

	/* A full table forgets the source heard from least recently: the
	 * others keep their empty buckets. */
	rate_limiter_init(rl, 0, 1);
	for (uint32_t i = 0; i < RATE_SOURCES; i++)
		assert_true(rate_take(rl, 1000 + i, 10 + i));
	for (uint32_t i = 1; i < RATE_SOURCES; i++)
		assert_false(rate_take(rl, 1000 + i, 10 + RATE_SOURCES));
	assert_true(rate_take(rl, 5000, 20 + RATE_SOURCES)); /* takes source 1000's slot */
	assert_true(rate_take(rl, 1000, 21 + RATE_SOURCES)); /* 1000 is new again: full */
	assert_false(rate_take(rl, 1001 + RATE_SOURCES / 2, 22 + RATE_SOURCES));
	free(rl);
}

static int setup(void **state)
{
	(void)state;
	register_all_tables();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scope_by_membership_and_admission),
	    cmocka_unit_test(test_guard_refuses_out_of_scope),
	    cmocka_unit_test(test_guard_rate_of_strangers),
	    cmocka_unit_test(test_rate_limiter),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
