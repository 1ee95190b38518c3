/* Reconciliation (the master's part): the flows and groups each switch
 * should hold (ETTM's own and the services'), read back against what the
 * switch holds, and the flow-mods and group-mods that repair the
 * difference, confirmed by a barrier. The periodic read of the flows (the
 * statistics round) also lands here, and repairs drift: flows someone
 * changed behind the master's back. */
#include "switch-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "api/server.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "store/store.h"

int reconcile_desired(struct swc *c, struct sw *s, struct sw_flows *ret, struct sw_groups *groups)
{
	struct sw_port_ref refs[SW_MAX_UPLINKS];
	size_t n = sw_uplinks(c, refs, NULL);
	const struct store_state *st = store_state(c->store);
	struct sw_groups ignore = {0};
	struct sw_groups *g = groups ? groups : &ignore;
	uint32_t addrs[SW_MAX_SWITCHES];
	struct sw_control control = {.switch_addrs = addrs, .n_switches = c->o.n_switches};
	for (unsigned i = 0; i < c->o.n_switches; i++) {
		struct sockaddr_in sa;
		if (ctl_parse_address(c->o.switches[i], &sa) == 0)
			addrs[control.n_switch_addrs++] = ntohl(sa.sin_addr.s_addr);
	}
	/* The start-up flows first: without them no agent reaches another,
	 * and no host reaches another (docs/switch.md). */
	struct sw_flows out = {0};
	int r = sw_startup_flows(&out);
	if (r == 0) {
		struct sw_flows more = {0};
		r = sw_desired(st, refs, n, &control, s->dpid, &more);
		for (size_t i = 0; r == 0 && i < more.n; i++)
			r = sw_flows_add(&out, &more.v[i]);
		sw_flows_free(&more);
	}
	if (r < 0)
		sw_flows_free(&out);
	else
		*ret = out;
	for (size_t i = 0; r == 0 && i < c->n_svcs; i++) {
		r = c->svcs[i].svc->flows(c->svcs[i].data, st, refs, n, s->dpid, ret, g);
		if (r < 0)
			sw_flows_free(ret);
	}
	if (r < 0 || !groups)
		sw_groups_free(g);
	return r;
}

static void reconcile(struct sw *s);

/* Tells the services what @s holds now. */
static void notify_installed(struct sw *s)
{
	for (size_t i = 0; i < s->ctl->n_svcs; i++)
		if (s->ctl->svcs[i].svc->installed)
			s->ctl->svcs[i].svc->installed(s->ctl->svcs[i].data, s->dpid,
			                               &s->installed);
}

static void barrier_done(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                         size_t len, bool last)
{
	struct sw *s = userdata;
	(void)conn;
	(void)msg;
	(void)len;
	(void)last;
	s->reconciling = false;
	if (status < 0 || s->role != ROLE_MASTER)
		return; /* gone, or deposed meanwhile: nothing was reconciled */
	s->reconciled_ms = wall_ms();
	double ms = (double)(mono_ns() - s->reconcile_started_ns) / 1e6;
	if (s->reconciled_term != s->role_term)
		log_info("switch %u: reconciled as master of term %" PRIu64 ", generation %" PRIu64
		         " in %.1f ms",
		         s->index, s->role_term & 0xffffffffu, s->role_term >> 32, ms);
	else
		log_debug("switch %u: reconciled in %.1f ms", s->index, ms);
	s->reconciled_term = s->role_term;
	if (s->dirty) {
		reconcile(s);
		return;
	}
	notify_installed(s);
}

/* Keeps @bytes (taken) as what group @id is on the switch now. */
static void remember_group(struct sw *s, uint32_t id, struct obuf *bytes)
{
	if (s->n_groups_sent == s->cap_groups_sent) {
		size_t cap = s->cap_groups_sent ? 2 * s->cap_groups_sent : 4;
		struct sent_group *v = reallocarray(s->groups_sent, cap, sizeof(*v));
		if (!v) {
			obuf_free(bytes); /* sent again next time: harmless */
			return;
		}
		s->groups_sent = v;
		s->cap_groups_sent = cap;
	}
	s->groups_sent[s->n_groups_sent++] = (struct sent_group){id, bytes->data, bytes->len};
}

/* A group as this agent last sent it to the switch: sent again only when it
 * changes (and after each role claim, when the memory is cleared). The
 * switch refuses ADD for a group it has (OFPGMFC_GROUP_EXISTS, ignored)
 * and MODIFY for one it has not, so both go, in that order. */
static void send_group(struct sw *s, const struct of13_group_mod *gm)
{
	struct obuf want = {0};
	int r = of13_group_mod_encode(&want, 0, gm);
	if (r < 0) {
		log_warn_limited(&s->group_log, mono_ms(), SW_REFUSAL_LOG_MS,
		                 "switch %u: group %" PRIu32 " with %u buckets not sent: %s", s->index,
		                 gm->group_id, gm->n_buckets,
		                 r == -EMSGSIZE ? "larger than one OpenFlow message (64 KiB)"
		                                : strerror(-r));
		obuf_free(&want);
		return;
	}
	for (size_t i = 0; i < s->n_groups_sent; i++) {
		struct sent_group *g = &s->groups_sent[i];
		if (g->id != gm->group_id)
			continue;
		if (g->len == want.len && memcmp(g->bytes, want.data, want.len) == 0) {
			obuf_free(&want);
			return;
		}
		free(g->bytes);
		*g = s->groups_sent[--s->n_groups_sent];
		break;
	}
	for (int cmd = OF13_GROUP_ADD; cmd <= OF13_GROUP_MODIFY; cmd++) {
		struct of13_group_mod m = *gm;
		m.command = (uint16_t)cmd;
		struct obuf b = {0};
		of13_group_mod_encode(&b, of_conn_xid(s->conn), &m);
		of_conn_send(s->conn, &b, NULL, NULL);
	}
	remember_group(s, gm->group_id, &want);
}

void reconcile_forget_groups(struct sw *s)
{
	for (size_t i = 0; i < s->n_groups_sent; i++)
		free(s->groups_sent[i].bytes);
	s->n_groups_sent = 0;
}

static void collect_flow(void *userdata, const struct of13_flow_stats *fs)
{
	struct sw *s = userdata;
	s->n_flows_dump++;
	if (!sw_cookie_owned(fs->cookie))
		return;
	struct of13_flow_mod fm;
	of13_flow_mod_init(&fm, OF13_FLOW_ADD);
	fm.cookie = fs->cookie;
	fm.table_id = fs->table_id;
	fm.priority = fs->priority;
	fm.match = fs->match;
	fm.n_instructions = fs->n_instructions;
	memcpy(fm.instructions, fs->instructions, sizeof(fm.instructions));
	sw_flow_canonical(&fm);
	sw_flows_add(&s->dump, &fm);
}

/* Applies the difference between the flows just read back and the desired
 * set, then a barrier marks the end. */
static void apply_diff(struct sw *s)
{
	struct sw_flows want = {0};
	struct sw_diff d = {0};
	struct sw_groups groups = {0};
	if (reconcile_desired(s->ctl, s, &want, &groups) < 0 ||
	    sw_diff(&want, &s->installed, &d) < 0) {
		log_error("switch %u: out of memory computing flows", s->index);
		s->reconciling = false;
		sw_flows_free(&want);
		sw_groups_free(&groups);
		return;
	}
	/* Groups before the flows that use them. */
	for (size_t i = 0; i < groups.n; i++)
		send_group(s, &groups.v[i]);
	sw_groups_free(&groups);
	for (size_t i = 0; i < d.n_del; i++) {
		struct of13_flow_mod fm = *d.del[i];
		fm.command = OF13_FLOW_DELETE_STRICT;
		bool startup = fm.cookie == SW_STARTUP_COOKIE;
		fm.cookie = startup ? SW_STARTUP_COOKIE : SW_COOKIE;
		fm.cookie_mask = startup ? ~0ull : SW_COOKIE_MASK;
		fm.n_instructions = 0;
		sw_send_flow_mod(s, &fm);
	}
	for (size_t i = 0; i < d.n_add; i++)
		sw_send_flow_mod(s, d.add[i]);
	if (d.n_add || d.n_del)
		log_info("switch %u: reconciled: %zu flow(s) added or changed, %zu removed",
		         s->index, d.n_add, d.n_del);
	/* What the switch will hold once the barrier returns. */
	sw_flows_free(&s->installed);
	s->installed = want;
	sw_diff_free(&d);
	struct obuf b = {0};
	of13_simple_encode(&b, OF13_BARRIER_REQUEST, of_conn_xid(s->conn), NULL, 0);
	if (of_conn_send(s->conn, &b, barrier_done, s) < 0)
		s->reconciling = false;
}

static void flow_dump_done(struct sw *s)
{
	sw_flows_free(&s->installed);
	s->installed = s->dump;
	s->dump = (struct sw_flows){0};
	s->installed_valid = true;
	s->n_flows = s->n_flows_dump;
	s->dumping = false;
	notify_installed(s);
}

static void dump_cb(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                    size_t len, bool last);

void reconcile_read_flows(struct sw *s)
{
	struct of13_flow_stats_request req = {
	    .table_id = 0xff,
	    .out_port = OF13_PORT_ANY,
	    .out_group = OF13_GROUP_ANY,
	};
	struct obuf b = {0};
	of13_flow_stats_request_encode(&b, of_conn_xid(s->conn), &req);
	sw_flows_free(&s->dump);
	s->n_flows_dump = 0;
	s->dumping = true;
	if (of_conn_send(s->conn, &b, dump_cb, s) < 0) {
		s->dumping = false;
		s->reconciling = false;
		requests_flows_read(s, "the switch could not be asked for its flows");
	}
}

/* Reads the switch's flows back and makes them the desired set. Only once
 * the switch has confirmed this agent as master for the current term. */
static void reconcile(struct sw *s)
{
	struct swc *c = s->ctl;
	if (!s->up || s->role != ROLE_MASTER || !c->leader || s->role_term != c->term)
		return;
	if (s->reconciling || s->dumping) {
		s->dirty = true;
		return;
	}
	s->dirty = false;
	s->reconciling = true;
	s->reconcile_started_ns = mono_ns();
	reconcile_read_flows(s);
}

void reconcile_start(struct sw *s)
{
	reconcile(s);
}

void reconcile_repair(struct sw *s)
{
	if (s->ctl->leader)
		reconcile(s);
	else if (s->up && s->role == ROLE_MASTER && !s->dumping && !s->reconciling)
		reconcile_read_flows(s); /* dump_cb() restores the start-up flows */
}

/* The start-up flows missing from what @s holds, sent again: what a master
 * without leadership may write (they depend on no store). */
static void restore_startup(struct sw *s)
{
	struct sw_flows want = {0};
	struct sw_diff d = {0};
	if (sw_startup_flows(&want) == 0 && sw_diff(&want, &s->installed, &d) == 0 && d.n_add) {
		log_warn("switch %u: %zu start-up flow(s) missing; putting them back (no leader)",
		         s->index, d.n_add);
		for (size_t i = 0; i < d.n_add; i++)
			sw_send_flow_mod(s, d.add[i]);
	}
	sw_diff_free(&d);
	sw_flows_free(&want);
}

static void kick_cb(uv_timer_t *t)
{
	struct swc *c = t->data;
	for (unsigned i = 0; i < c->o.n_switches; i++)
		reconcile(&c->sw[i]);
}

void reconcile_kick(struct swc *c)
{
	if (!c->closing && !uv_is_active((uv_handle_t *)&c->kick))
		uv_timer_start(&c->kick, kick_cb, 5, 0);
}

/* The switch's flows, read back: for a reconciliation, the difference to
 * apply; for the periodic read, the counts, and a repair when someone
 * changed the switch behind the master's back. */
static void dump_cb(void *userdata, struct of_conn *conn, int status, const uint8_t *msg,
                    size_t len, bool last)
{
	struct sw *s = userdata;
	(void)conn;
	if (status < 0) {
		s->reconciling = s->dumping = false;
		sw_flows_free(&s->dump);
		requests_flows_read(s, "the switch did not answer the read of its flows");
		return;
	}
	uint16_t flags;
	of13_flow_stats_reply_decode(msg, len, &flags, collect_flow, s);
	if (!last)
		return;
	flow_dump_done(s);
	requests_flows_read(s, NULL);
	if (s->reconciling) {
		if (s->role == ROLE_MASTER && s->ctl->leader && s->role_term == s->ctl->term)
			apply_diff(s);
		else
			s->reconciling = false;
		return;
	}
	if (s->dirty) {
		reconcile(s); /* a change came in during the read */
		return;
	}
	if (s->role == ROLE_MASTER && !s->ctl->leader) {
		restore_startup(s);
		return;
	}
	if (s->role == ROLE_MASTER && s->ctl->leader) {
		struct sw_flows want = {0};
		struct sw_diff d = {0};
		if (reconcile_desired(s->ctl, s, &want, NULL) == 0 &&
		    sw_diff(&want, &s->installed, &d) == 0 && (d.n_add || d.n_del)) {
			log_warn("switch %u: %zu flow(s) missing or different, %zu unexpected; "
			         "reconciling",
			         s->index, d.n_add, d.n_del);
			reconcile(s);
		}
		sw_diff_free(&d);
		sw_flows_free(&want);
	}
}

const struct sw_flows *sw_installed(struct swc *c, uint64_t dpid)
{
	struct sw *s = sw_find_dpid(c, dpid);
	return s && s->up && s->installed_valid && !s->reconciling && !s->dumping ? &s->installed
	                                                                          : NULL;
}

int sw_read_flows(struct swc *c, uint64_t dpid)
{
	struct sw *s = sw_find_dpid(c, dpid);
	if (!s || !s->up)
		return -ENOTCONN;
	bool leads = s->role == ROLE_MASTER && c->leader && s->role_term == c->term;
	if (!s->dumping && !s->reconciling && !leads)
		reconcile_read_flows(s);
	return 0;
}
