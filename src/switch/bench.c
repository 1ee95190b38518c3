/* switch.bench, a benchmark's hook (bench/switch): built only with
 * `meson setup -Dbench_hooks=true` (ETTM_BENCH_HOOKS); a production build
 * answers it as any unknown command. */
#include "switch-internal.h"

#include <errno.h>
#include <stdlib.h>

#include "api/server.h"
#include "lib/clock.h"
#include "lib/error.h"

/* switch.bench: flow-mods per second from this agent (the master) to one
 * switch: @count flows sent back to back, timed to the barrier that
 * confirms them, then removed. They use their own cookie, outside ETTM's,
 * in a table ETTM does not use, so reconciliation leaves them alone. */
#define BENCH_COOKIE 0xe77e000000000000ull
#define BENCH_TABLE  7

struct bench {
	struct sw *s;
	struct ctl_deferred *d;
	unsigned count, refused_before;
	bool keep; /* leave the flows for inspection */
	uint64_t t0;
};

static void bench_done(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                       size_t len, bool last)
{
	struct bench *b = userdata;
	(void)msg;
	(void)len;
	(void)last;
	double sec = (double)(mono_ns() - b->t0) / 1e9;
	if (status < 0) {
		ctl_deferred_reply(b->d, NULL, "the switch went away during the benchmark");
	} else if (b->s->refused != b->refused_before) {
		ctl_deferred_reply(b->d, NULL, "the switch refused the flows: not master");
	} else {
		ctl_deferred_reply(b->d,
		                   json_pack("{s:i, s:f, s:f}", "count", (int)b->count, "seconds",
		                             sec, "per_second", (double)b->count / sec),
		                   NULL);
	}
	if (status == 0 && !b->keep) {
		struct of13_flow_mod fm;
		of13_flow_mod_init(&fm, OF13_FLOW_DELETE);
		fm.table_id = BENCH_TABLE;
		fm.cookie = BENCH_COOKIE;
		fm.cookie_mask = SW_COOKIE_MASK;
		struct obuf o = {0};
		of13_flow_mod_encode(&o, of_conn_xid(conn), &fm);
		of_conn_send(conn, &o, NULL, NULL);
	}
	free(b);
}

int bench_handle_request(struct swc *c, struct ctl_client *client, const struct ctl_request *req,
                         char **ret_error)
{
	const char *name = json_string_value(json_object_get(req->args, "switch"));
	json_int_t count = json_integer_value(json_object_get(req->args, "count"));
	struct sw *s = name ? sw_find_name(c, name) : NULL;
	if (!s || count < 1 || count > 1000000)
		return error_set(ret_error, -EINVAL,
		                 "fields \"switch\" (s1, s2...) and \"count\" (1-1000000) "
		                 "expected");
	if (!s->up || s->role != ROLE_MASTER)
		return error_set(ret_error, -EPERM,
		                 "this agent is not master of s%u; run it on the leader", s->index);
	struct bench *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	*b = (struct bench){.s = s,
	                    .count = (unsigned)count,
	                    .refused_before = s->refused,
	                    .keep = json_is_true(json_object_get(req->args, "keep"))};
	b->t0 = mono_ns();
	for (json_int_t i = 0; i < count; i++) {
		struct of13_flow_mod fm;
		of13_flow_mod_init(&fm, OF13_FLOW_ADD);
		fm.table_id = BENCH_TABLE;
		fm.priority = 100;
		fm.cookie = BENCH_COOKIE;
		const uint8_t mac[6] = {
		    0x02,      0xbe, (uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8),
		    (uint8_t)i};
		of13_match_add_eth(&fm.match, OF13_OXM_ETH_DST, mac, NULL);
		fm.instructions[0] = (struct of13_instruction){
		    .type = OF13_INSTRUCTION_APPLY_ACTIONS, .n_actions = 1};
		fm.instructions[0].actions[0] =
		    (struct of13_action){.type = OF13_ACTION_OUTPUT, .output = {.port = 1}};
		fm.n_instructions = 1;
		sw_send_flow_mod(s, &fm);
	}
	struct obuf o = {0};
	of13_simple_encode(&o, OF13_BARRIER_REQUEST, of_conn_xid(s->conn), NULL, 0);
	b->d = ctl_defer(client, req);
	if (of_conn_send(s->conn, &o, bench_done, b) < 0) {
		ctl_deferred_reply(b->d, NULL, "the switch went away");
		free(b);
	}
	return CTL_DEFERRED;
}
