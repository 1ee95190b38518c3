/* What a generation change rests on, without a cluster: which orphans the
 * journal places in a new history (by generation, term and index, never
 * by a position of another history), and the generation fence between two
 * Raft transports over loopback TCP. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/fence.h"
#include "store/journal.h"
#include "ports.h"

/* ---- orphans across histories ---- */

static void test_in_history(void **state)
{
	(void)state;
	/* Generation 2 began from the declarer's last entry: term 5, index 40. */
	struct journal_origin o = {.generation = 2, .from_term = 5, .from_index = 40};
	struct {
		struct journal_pos pos;
		bool in;
	} cases[] = {
	    {{1, 5, 40}, true},  /* the declarer's last entry */
	    {{1, 3, 12}, true},  /* committed before it: leader completeness */
	    {{1, 5, 41}, false}, /* past the declarer's log: it lagged */
	    {{1, 6, 30}, false}, /* committed at a later term: the declarer's
	                          * entry at 30 may be another one */
	    {{1, 0, 10}, false}, /* no term recorded: left to the merge rules */
	    {{0, 1, 3}, false},  /* an older generation: positions of another history */
	    {{2, 5, 10}, false}, /* the new generation itself */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(journal_in_history(&cases[i].pos, &o), cases[i].in);
}

struct seen {
	uint64_t index[64];
	uint64_t generation[64];
	unsigned n;
};

static void collect(void *userdata, const struct journal_pos *pos, const void *data, size_t len)
{
	struct seen *s = userdata;
	assert_int_equal(len, 8);
	uint64_t v;
	memcpy(&v, data, 8);
	assert_int_equal(v, pos->index * 100 + pos->generation);
	assert_true(s->n < 64);
	s->index[s->n] = pos->index;
	s->generation[s->n++] = pos->generation;
}

static char *tmpdir(void)
{
	char *d = strdup("/tmp/ettm-test-recovery-XXXXXX");
	assert_non_null(mkdtemp(d));
	return d;
}

static void rmdir_all(char *d)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	assert_int_equal(system(cmd), 0);
	free(d);
}

static void append(struct journal *j, uint64_t gen, uint64_t term, uint64_t index)
{
	uint64_t v = index * 100 + gen;
	struct journal_pos pos = {.generation = gen, .term = term, .index = index};
	journal_append(j, &pos, &v, sizeof(v));
}

/* A host applied indexes 1-30 of generation 1 (terms 2, then 4 from index
 * 21), missed generation 2, and learns of generation 3, which began at
 * index 25 of generation 2's history: none of its commands can be placed
 * by position in that history, so every one is an orphan. Against a
 * generation 2 that began at term 4, index 25 of its own history, only
 * 26-30 are. */
static void test_orphans_across_histories(void **state)
{
	(void)state;
	char *dir = tmpdir();
	struct journal *j;
	assert_int_equal(journal_open(dir, &j), 0);
	for (uint64_t i = 1; i <= 30; i++)
		append(j, 1, i <= 20 ? 2 : 4, i);
	assert_int_equal(journal_take_orphans(j), 0);
	assert_true(journal_has_orphans(j));
	append(j, 2, 4, 31); /* the new journal: not an orphan */

	struct seen s = {0};
	struct journal_origin next = {.generation = 2, .from_term = 4, .from_index = 25};
	assert_int_equal(journal_each_orphan(j, &next, collect, &s), 0);
	assert_int_equal(s.n, 5);
	for (unsigned k = 0; k < s.n; k++)
		assert_int_equal(s.index[k], 26 + k);

	/* The old filter (index > from_index) would have skipped 1-25 here. */
	struct seen all = {0};
	struct journal_origin later = {.generation = 3, .from_term = 9, .from_index = 25};
	assert_int_equal(journal_each_orphan(j, &later, collect, &all), 0);
	assert_int_equal(all.n, 30);
	for (unsigned k = 0; k < all.n; k++)
		assert_int_equal(all.index[k], 1 + k);

	/* A declarer that lagged at term 2 (index 22): the term-4 commands at
	 * 21 and 22 are another history's, so they are orphans too. */
	struct seen lag = {0};
	struct journal_origin lagging = {.generation = 2, .from_term = 2, .from_index = 22};
	assert_int_equal(journal_each_orphan(j, &lagging, collect, &lag), 0);
	assert_int_equal(lag.n, 10);
	assert_int_equal(lag.index[0], 21);

	journal_drop_orphans(j);
	assert_false(journal_has_orphans(j));
	journal_close(j);
	rmdir_all(dir);
}

/* ---- the generation fence ---- */

struct side {
	struct fence f;
	uint64_t generation, newer;
	int accepted;
	int connected; /* 1 ok, -1 refused, 0 not yet */
	struct raft_uv_connect req;
	bool closed;
};

static uint64_t side_generation(void *userdata)
{
	return ((struct side *)userdata)->generation;
}

static void side_newer(void *userdata, uint64_t generation)
{
	((struct side *)userdata)->newer = generation;
}

static void stream_closed(uv_handle_t *h)
{
	raft_free(h);
}

static void side_accept(struct raft_uv_transport *t, raft_id id, const char *address,
                        uv_stream_t *stream)
{
	struct side *s = (struct side *)((char *)t - offsetof(struct side, f.t));
	(void)id;
	(void)address;
	s->accepted++;
	uv_close((uv_handle_t *)stream, stream_closed);
}

static void side_connected(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
	struct side *s = req->data;
	s->connected = status == 0 ? 1 : -1;
	if (stream)
		uv_close((uv_handle_t *)stream, stream_closed);
}

static void side_closed(struct raft_uv_transport *t)
{
	struct side *s = (struct side *)((char *)t - offsetof(struct side, f.t));
	s->closed = true;
}

static void side_init(struct side *s, uv_loop_t *loop, uint64_t generation, raft_id id,
                      const char *address)
{
	memset(s, 0, sizeof(*s));
	s->generation = generation;
	assert_int_equal(fence_init_transport(&s->f, loop), 0);
	s->f.generation = side_generation;
	s->f.newer = side_newer;
	s->f.userdata = s;
	assert_int_equal(s->f.t.init(&s->f.t, id, address), 0);
}

static void side_close(struct side *s, uv_loop_t *loop)
{
	s->f.t.close(&s->f.t, side_closed);
	while (!s->closed)
		uv_run(loop, UV_RUN_ONCE);
	fence_close_transport(&s->f);
}

/* Connects a host at @mine to one at @theirs; returns whether the
 * acceptor's Raft got the stream, and each side's newer generation. */
static bool exchange(uint64_t mine, uint64_t theirs, uint64_t *ret_mine_newer,
                     uint64_t *ret_theirs_newer)
{
	char address[32];
	snprintf(address, sizeof(address), "127.0.0.1:%u", loopback_port());
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct side a, b;
	side_init(&b, &loop, theirs, 2, address);
	assert_int_equal(b.f.t.listen(&b.f.t, side_accept), 0);
	side_init(&a, &loop, mine, 1, "127.0.0.1:17829");
	a.req.data = &a;
	assert_int_equal(a.f.t.connect(&a.f.t, &a.req, 2, address, side_connected), 0);
	uint64_t until = uv_now(&loop) + 3000;
	while ((a.connected == 0 || (a.connected == 1 && !b.accepted) ||
	        (mine != theirs && mine && theirs && !a.newer && !b.newer)) &&
	       uv_now(&loop) < until) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(1000);
		uv_update_time(&loop);
	}
	/* Let a refusing side finish its answer. */
	for (int i = 0; i < 50; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	bool ok = a.connected == 1 && b.accepted == 1;
	if (!ok)
		assert_int_equal(b.accepted, 0);
	*ret_mine_newer = a.newer;
	*ret_theirs_newer = b.newer;
	side_close(&a, &loop);
	side_close(&b, &loop);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	return ok;
}

static void test_fence(void **state)
{
	(void)state;
	uint64_t an, bn;
	assert_true(exchange(3, 3, &an, &bn));
	assert_int_equal(an + bn, 0);
	assert_true(exchange(0, 3, &an, &bn)); /* a fresh replica joining */
	assert_true(exchange(3, 0, &an, &bn));

	/* An old-generation host connects to the new generation: refused,
	 * and it learns of the newer one. */
	assert_false(exchange(1, 2, &an, &bn));
	assert_int_equal(an, 2);
	assert_int_equal(bn, 0);
	/* The new generation connects to an old host: refused, and the old
	 * host learns. */
	assert_false(exchange(2, 1, &an, &bn));
	assert_int_equal(an, 0);
	assert_int_equal(bn, 2);

	assert_true(fence_admits(0, 7) && fence_admits(7, 0) && fence_admits(7, 7));
	assert_false(fence_admits(6, 7) || fence_admits(7, 6));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_in_history),
	    cmocka_unit_test(test_orphans_across_histories),
	    cmocka_unit_test(test_fence),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
