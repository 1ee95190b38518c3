/* The controller's control requests: "switches" (every member's view,
 * gathered over the peer API and merged by switch), "switch.local" (this
 * agent's view), "topology" and "flows" (a switch's desired flows against
 * the ones it holds); the dispatch of these and of bench.c's command. */
#include "switch-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/client.h"
#include "api/server.h"
#include "lib/error.h"
#include "store/store.h"
#include "switch/tables.h"
#include "trust/tables.h"
#include "lib/addr.h"

static json_t *ports_json(const struct sw *s)
{
	json_t *a = json_array();
	for (unsigned i = 0; i < s->n_ports; i++) {
		const struct port *p = &s->ports[i];
		if (p->desc.port_no > OF13_PORT_MAX)
			continue;
		double speed = (double)p->desc.curr_speed * 1000.0;
		double use =
		    speed > 0 ? (p->tx_bps > p->rx_bps ? p->tx_bps : p->rx_bps) / speed : 0;
		json_array_append_new(a,
		                      json_pack("{s:i, s:s, s:s, s:f, s:f, s:f, s:I, s:I}", "port",
		                                (int)p->desc.port_no, "name", p->desc.name, "state",
		                                p->down_since_ms ? "down" : "up", "rx_bps",
		                                p->rx_bps, "tx_bps", p->tx_bps, "utilisation", use,
		                                "rx_packets", (json_int_t)p->rx_packets,
		                                "tx_packets", (json_int_t)p->tx_packets));
	}
	return a;
}

/* This agent's view of each switch. */
static json_t *local_view(struct swc *c)
{
	json_t *a = json_array();
	char d[17];
	for (unsigned i = 0; i < c->o.n_switches; i++) {
		const struct sw *s = &c->sw[i];
		json_t *o = json_pack("{s:i, s:s, s:b, s:s, s:I, s:I}", "index", (int)s->index,
		                      "address", c->o.switches[i], "connected", s->up, "role",
		                      s->up ? sw_role_name(s->role) : "none", "term",
		                      (json_int_t)(s->role_term & 0xffffffffu), "generation",
		                      (json_int_t)(s->role_term >> 32));
		if (s->up) {
			json_object_set_new(o, "dpid", json_string(sw_dpid_str(s->dpid, d)));
			json_object_set_new(o, "flows", json_integer(s->n_flows));
			json_object_set_new(o, "groups", json_integer(s->n_groups));
			json_object_set_new(o, "ports", ports_json(s));
		}
		json_object_set_new(o, "flow_mods", json_integer(s->flow_mods));
		json_object_set_new(o, "refused_writes", json_integer(s->refused));
		json_object_set_new(o, "deposals", json_integer(s->deposals));
		if (s->seen_known) {
			/* As hex text: JSON numbers lose precision above 2^53. */
			char seen[19];
			snprintf(seen, sizeof(seen), "%#" PRIx64, s->seen_id);
			json_object_set_new(o, "generation_seen", json_string(seen));
		}
		json_object_set_new(o, "reconciled_ms", json_integer((json_int_t)s->reconciled_ms));
		json_array_append_new(a, o);
	}
	return json_pack("{s:s, s:o}", "host", c->self.name, "switches", a);
}

/* "switches": every member's view, merged by switch. */
struct gather {
	struct swc *c;
	struct ctl_deferred *d;
	json_t *views;
	int waiting;
};

static void gather_finish(struct gather *g)
{
	/* Switch index -> {its own facts from the first agent connected, and
	 * every agent's connection and role}. */
	json_t *out = json_array();
	for (unsigned i = 0; i < g->c->o.n_switches; i++) {
		json_t *sw = json_pack("{s:i, s:s, s:o}", "index", (int)i + 1, "address",
		                       g->c->o.switches[i], "agents", json_array());
		size_t k;
		json_t *view;
		json_array_foreach(g->views, k, view)
		{
			json_t *mine = json_array_get(json_object_get(view, "switches"), i);
			if (!mine)
				continue;
			json_array_append_new(
			    json_object_get(sw, "agents"),
			    json_pack("{s:O, s:O, s:O, s:O, s:O?}", "host",
			              json_object_get(view, "host"), "connected",
			              json_object_get(mine, "connected"), "role",
			              json_object_get(mine, "role"), "refused_writes",
			              json_object_get(mine, "refused_writes"), "deposals",
			              json_object_get(mine, "deposals")));
			const char *role = json_string_value(json_object_get(mine, "role"));
			bool better =
			    !json_object_get(sw, "dpid") || (role && strcmp(role, "master") == 0);
			if (json_is_true(json_object_get(mine, "connected")) && better) {
				const char *keys[] = {"dpid", "flows", "groups", "ports"};
				for (size_t j = 0; j < 4; j++)
					json_object_set(sw, keys[j],
					                json_object_get(mine, keys[j]));
			}
		}
		json_array_append_new(out, sw);
	}
	ctl_deferred_reply(g->d, json_pack("{s:o}", "switches", out), NULL);
	json_decref(g->views);
	free(g);
}

static void gather_cb(void *userdata, int status, json_t *result, const char *error)
{
	struct gather *g = userdata;
	(void)error;
	if (status == 0)
		json_array_append(g->views, result);
	if (--g->waiting == 0)
		gather_finish(g);
}

static int handle_switches(struct swc *c, struct ctl_client *client, const struct ctl_request *req)
{
	struct gather *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->c = c;
	g->d = ctl_defer(client, req);
	g->views = json_array();
	json_array_append_new(g->views, local_view(c));
	g->waiting = 1;
	const struct store_state *st = store_state(c->store);
	for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(st, STORE_MEMBERS, i);
		if (strcmp(m->name, c->self.name) == 0 || !m->peer[0])
			continue;
		if (ctl_call(c->loop, m->peer, "switch.local", json_object(), SW_PEER_TIMEOUT_MS,
		             gather_cb, g) == 0)
			g->waiting++;
	}
	if (--g->waiting == 0)
		gather_finish(g);
	return CTL_DEFERRED;
}

static json_t *topology(struct swc *c)
{
	const struct store_state *st = store_state(c->store);
	char d[17], e[17];
	json_t *switches = json_array(), *links = json_array(), *hosts = json_array();
	for (unsigned i = 0; i < c->o.n_switches; i++) {
		const struct sw *s = &c->sw[i];
		json_array_append_new(switches,
		                      json_pack("{s:i, s:s, s:s?}", "index", (int)s->index,
		                                "address", c->o.switches[i], "dpid",
		                                s->up ? sw_dpid_str(s->dpid, d) : NULL));
	}
	for (size_t i = 0; i < store_count(st, SWITCH_LINKS); i++) {
		const struct switch_link *l = store_row(st, SWITCH_LINKS, i);
		json_t *o = json_pack("{s:s, s:i, s:s, s:i}", "dpid", sw_dpid_str(l->dpid, d),
		                      "port", (int)l->port, "peer_dpid",
		                      sw_dpid_str(l->peer_dpid, e), "peer_port", (int)l->peer_port);
		struct sw *s = sw_find_dpid(c, l->dpid);
		struct port *p = s ? stats_find_port(s, l->port) : NULL;
		if (p) {
			double speed = (double)p->desc.curr_speed * 1000.0;
			json_object_set_new(o, "tx_bps", json_real(p->tx_bps));
			json_object_set_new(o, "utilisation",
			                    json_real(speed > 0 ? p->tx_bps / speed : 0));
			json_object_set_new(o, "state",
			                    json_string(p->down_since_ms ? "down" : "up"));
		}
		json_array_append_new(links, o);
	}
	for (size_t i = 0; i < store_count(st, SWITCH_LOCATIONS); i++) {
		const struct switch_location *l = store_row(st, SWITCH_LOCATIONS, i);
		json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:o, s:o, s:b}", "host", l->host, "mac",
		                      l->mac, "dpid", sw_dpid_str(l->dpid, d), "port", (int)l->port,
		                      "control", addr_json_host(l->control_addr), "guest",
		                      addr_json_host(l->guest_addr), "admitted",
		                      trust_admission_find(st, l->host) != NULL);
		struct sw *s = sw_find_dpid(c, l->dpid);
		struct port *p = s ? stats_find_port(s, l->port) : NULL;
		if (p)
			json_object_set_new(o, "port_state",
			                    json_string(p->down_since_ms ? "down" : "up"));
		json_array_append_new(hosts, o);
	}
	return json_pack("{s:o, s:o, s:o}", "switches", switches, "links", links, "hosts", hosts);
}

static char *flow_text(const struct of13_flow_mod *fm)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return NULL;
	sw_flow_format(f, fm);
	fclose(f);
	return text;
}

static void add_flow_json(json_t *a, const char *state, const struct of13_flow_mod *fm)
{
	char *text = flow_text(fm), cookie[19];
	snprintf(cookie, sizeof(cookie), "%#" PRIx64, fm->cookie);
	json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "state", state, "flow",
	                                   text ? text : "?", "cookie", cookie));
	free(text);
}

/* @s's desired flows against the ones read back last; NULL when memory
 * ran out. */
static json_t *flows_view(struct sw *s)
{
	struct sw_flows want = {0};
	if (reconcile_desired(s->ctl, s, &want, NULL) < 0)
		return NULL;
	json_t *a = json_array();
	unsigned missing = 0, extra = 0;
	for (size_t i = 0; i < want.n; i++) {
		bool there = false;
		for (size_t k = 0; k < s->installed.n && !there; k++)
			there = sw_flow_equal(&want.v[i], &s->installed.v[k]);
		missing += !there;
		add_flow_json(a, there ? "installed" : "missing", &want.v[i]);
	}
	for (size_t k = 0; k < s->installed.n; k++) {
		bool wanted = false;
		for (size_t i = 0; i < want.n && !wanted; i++)
			wanted = sw_flow_equal(&want.v[i], &s->installed.v[k]);
		if (!wanted) {
			extra++;
			add_flow_json(a, "unexpected", &s->installed.v[k]);
		}
	}
	char d[17];
	json_t *r = json_pack("{s:i, s:s, s:i, s:i, s:i, s:i, s:o}", "index", (int)s->index,
	                      "dpid", sw_dpid_str(s->dpid, d), "desired", (int)want.n,
	                      "installed", (int)s->installed.n, "missing", (int)missing,
	                      "unexpected", (int)extra, "flows", a);
	sw_flows_free(&want);
	return r;
}

struct flow_waiter {
	struct flow_waiter *next;
	struct ctl_deferred *d;
};

void requests_flows_read(struct sw *s, const char *error)
{
	while (s->flow_waiters) {
		struct flow_waiter *w = s->flow_waiters;
		s->flow_waiters = w->next;
		json_t *r = error ? NULL : flows_view(s);
		ctl_deferred_reply(w->d, r, r ? NULL : error ? error : strerror(ENOMEM));
		free(w);
	}
}

/* Only the master reads a switch's flows all the time (docs/switch.md,
 * "Statistics"); any other agent reads them when asked, and answers once
 * they are in. */
static int handle_flows(struct swc *c, struct ctl_client *client, const struct ctl_request *req,
                        json_t **ret_result, char **ret_error)
{
	const char *name = json_string_value(json_object_get(req->args, "switch"));
	if (!name)
		return error_set(
		    ret_error, -EINVAL,
		    "field \"switch\": expected a switch (s1, s2... or a datapath id)");
	struct sw *s = sw_find_name(c, name);
	if (!s)
		return error_set(ret_error, -ENOENT, "no switch \"%s\" (this agent knows s1..s%u)",
		                 name, c->o.n_switches);
	if (!s->up)
		return error_set(ret_error, -ENOTCONN, "switch s%u (%s) is not connected", s->index,
		                 c->o.switches[s->index - 1]);
	if (s->role == ROLE_MASTER && s->installed_valid) {
		*ret_result = flows_view(s);
		return *ret_result ? 0 : -ENOMEM;
	}
	struct flow_waiter *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->d = ctl_defer(client, req);
	w->next = s->flow_waiters;
	s->flow_waiters = w;
	if (!s->dumping)
		reconcile_read_flows(s);
	return CTL_DEFERRED;
}

int sw_handle_request(struct swc *c, struct ctl_client *client, const struct ctl_request *req,
                      json_t **ret_result, char **ret_error)
{
#ifdef ETTM_BENCH_HOOKS
	if (strcmp(req->cmd, "switch.bench") == 0)
		return bench_handle_request(c, client, req, ret_error);
#endif
	const char *cmd = req->cmd;
	if (strcmp(cmd, "switch.local") == 0) {
		*ret_result = local_view(c);
		return 0;
	}
	if (strcmp(cmd, "switches") == 0)
		return handle_switches(c, client, req);
	if (strcmp(cmd, "topology") == 0) {
		*ret_result = topology(c);
		return 0;
	}
	if (strcmp(cmd, "flows") == 0)
		return handle_flows(c, client, req, ret_result, ret_error);
	return -ENOENT;
}
