/* store_subscribe() handles on a real one-host store (bootstrapped in a
 * temporary directory, Raft on the loopback): a subscriber is called for its
 * table's applied commands until it releases its handle, even from inside a
 * notification, and store_close() releases the handles left. */
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

#include "store/store.h"
#include "tables-all.h"
#include "ports.h"

struct fixture {
	uv_loop_t loop;
	struct store *store;
	char dir[64];
	struct store_subscription *leases, *every, *once;
	int leases_seen, every_seen, once_seen, done;
};

static void on_leases(void *userdata, const struct store_cmd *cmd,
                      const struct store_result *result)
{
	struct fixture *f = userdata;
	assert_int_equal(cmd->table, STORE_LEASES);
	assert_true(result->applied);
	f->leases_seen++;
}

static void on_every(void *userdata, const struct store_cmd *cmd, const struct store_result *result)
{
	(void)cmd, (void)result;
	((struct fixture *)userdata)->every_seen++;
}

/* Releases its own handle at its first call. */
static void on_once(void *userdata, const struct store_cmd *cmd, const struct store_result *result)
{
	(void)cmd, (void)result;
	struct fixture *f = userdata;
	f->once_seen++;
	store_unsubscribe(f->store, f->once);
	f->once = NULL;
}

static void proposed(void *userdata, int status, const struct store_result *result,
                     const char *error)
{
	struct fixture *f = userdata;
	if (status != 0)
		fail_msg("proposal failed: %s", error ? error : "?");
	assert_true(result->applied);
	f->done++;
}

/* Runs the loop until the store leads (a one-host cluster elects itself). */
static void run_until_leader(struct fixture *f)
{
	for (int i = 0; i < 2000 && !store_is_leader(f->store); i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	assert_true(store_is_leader(f->store));
}

static void propose_lease(struct fixture *f, unsigned n)
{
	struct store_cmd cmd = {.table = STORE_LEASES, .op = STORE_PUT, .time_ms = 1000};
	struct store_lease *l = STORE_CMD_ROW(&cmd, struct store_lease);
	snprintf(l->mac, sizeof(l->mac), "02:00:00:00:00:%02x", n);
	l->addr = 0x0a4d0200 + n;
	snprintf(l->host, sizeof(l->host), "h1");
	l->expires_ms = 99999;
	int before = f->done;
	assert_int_equal(store_propose(f->store, &cmd, proposed, f), 0);
	for (int i = 0; i < 5000 && f->done == before; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(200);
	}
	assert_int_equal(f->done, before + 1);
}

static void test_handles(void **state)
{
	(void)state;
	struct fixture f = {0};
	strcpy(f.dir, "/tmp/ettm-test-subscribe-XXXXXX");
	assert_non_null(mkdtemp(f.dir));
	assert_int_equal(uv_loop_init(&f.loop), 0);
	struct store_options o;
	store_options_default(&o);
	o.id = 1;
	snprintf(o.name, sizeof(o.name), "h1");
	uint16_t port[2];
	assert_int_equal(loopback_ports(port, 2), 0);
	snprintf(o.raft_address, sizeof(o.raft_address), "127.0.0.1:%u", port[0]);
	snprintf(o.peer_address, sizeof(o.peer_address), "127.0.0.1:%u", port[1]);
	snprintf(o.dir, sizeof(o.dir), "%s", f.dir);
	o.bootstrap = true;
	char *error = NULL;
	if (store_open(&f.loop, &o, &f.store, &error) < 0)
		fail_msg("store_open: %s", error ? error : "?");
	assert_int_equal(store_subscribe(f.store, STORE_LEASES, on_leases, &f, &f.leases), 0);
	assert_int_equal(store_subscribe(f.store, 0, on_every, &f, &f.every), 0);
	assert_int_equal(store_subscribe(f.store, STORE_LEASES, on_once, &f, &f.once), 0);
	run_until_leader(&f);

	propose_lease(&f, 1);
	assert_int_equal(f.leases_seen, 1);
	assert_int_equal(f.once_seen, 1);
	int every = f.every_seen;
	assert_true(every >= 1);

	store_unsubscribe(f.store, f.leases);
	propose_lease(&f, 2);
	assert_int_equal(f.leases_seen, 1);     /* released */
	assert_int_equal(f.once_seen, 1);       /* released from inside its call */
	assert_true(f.every_seen >= every + 1); /* and whatever the leader committed */
	store_unsubscribe(f.store, NULL);       /* nothing */

	/* The handle left (every) is released by store_close(). */
	store_close(f.store, NULL, NULL);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f.loop), 0);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f.dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	register_all_tables();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_handles),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
