/* The devices service on the agent's loop (devices.h, docs/devices.md). */
#include "devices.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/server.h"
#include "datapath/fragment.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "store/store.h"
#include "services/devices/tables.h"
#include "switch/tables.h"
#include "trust/tables.h"

#define TICK_MS 100

struct devices {
	uv_loop_t *loop;
	char name[STORE_NAME_MAX];
	unsigned dead_after_ms;
	struct store *store;
	struct swc *sw;
	struct datapath *dp;
	struct store_subscription *subs[5]; /* the tables it follows */
	uv_timer_t tick, soon;
	bool leader;
	struct devices_heard heard; /* whom the leader reached, when */
	bool choosing;              /* a manager row is being committed */
	bool learning;              /* a learned place is being committed */
	bool managing;
	int open_handles;
	void (*closed)(void *arg); /* devices_close()'s completion */
	void *closed_arg;
};

static const struct store_state *state(struct devices *d)
{
	return store_state(d->store);
}

/* ---- the datapath: on the manager only ---- */

/* The devices' datapath source (dp_build_fn). */
static int datapath_build(void *userdata, const struct dp_config *cfg, struct dp_fragment *out)
{
	struct devices *d = userdata;
	struct devices_view v;
	int r = devices_datapath(state(d), d->name, sw_own_mac(d->sw), &v);
	if (r == 0)
		r = devices_ruleset_build(cfg, &v, out);
	devices_view_free(&v);
	return r;
}

static void update_datapath(struct devices *d)
{
	struct devices_view v;
	int r = devices_datapath(state(d), d->name, sw_own_mac(d->sw), &v);
	devices_view_free(&v);
	if (r < 0) {
		log_error("devices: datapath: %s", strerror(-r));
		return;
	}
	if (v.enabled != d->managing)
		log_info("devices: this host %s the devices' manager",
		         v.enabled ? "is" : "is no longer");
	d->managing = v.enabled;
	if (dp_changed(d->dp) < 0)
		log_error("devices: datapath: %s", d->dp->error ? d->dp->error : "failed");
}

/* ---- the manager, as the leader keeps it ---- */

static bool alive(void *userdata, const struct store_member *m)
{
	struct devices *d = userdata;
	return devices_heard_alive(&d->heard, m->id, uv_now(d->loop), d->dead_after_ms);
}

static void chose(void *userdata, int status, const struct store_result *res, const char *error)
{
	struct devices *d = userdata;
	d->choosing = false;
	if (status < 0)
		log_debug("devices: manager not committed: %s", error);
	else if (!res->applied)
		log_warn("devices: manager refused: %s", res->reason);
}

static void check_manager(struct devices *d)
{
	const struct store_state *st = state(d);
	uint64_t now = uv_now(d->loop);
	for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++) {
		const struct store_member *m = store_row(st, STORE_MEMBERS, i);
		if (store_member_reachable(d->store, m->id) == 1)
			devices_heard_note(&d->heard, m->id, now);
	}
	if (d->choosing)
		return;
	const struct store_member *m = devices_pick_manager(st, alive, d);
	const char *cur = devices_manager(st)->host;
	if (!m || strcmp(m->name, cur) == 0)
		return;
	struct store_cmd cmd = {.table = DEVICES_MANAGER, .op = STORE_PUT, .time_ms = wall_ms()};
	snprintf(STORE_CMD_ROW(&cmd, struct devices_manager)->host,
	         sizeof(STORE_CMD_ROW(&cmd, struct devices_manager)->host), "%s", m->name);
	STORE_CMD_ROW(&cmd, struct devices_manager)->since_ms = cmd.time_ms;
	log_info("devices: %s manages the unmanaged devices%s%s", m->name,
	         cur[0] ? ", replacing " : "", cur);
	if (store_propose(d->store, &cmd, chose, d) == 0)
		d->choosing = true;
}

static void tick_cb(uv_timer_t *t)
{
	struct devices *d = t->data;
	bool leader = store_is_leader(d->store);
	if (leader && !d->leader) {
		/* A new leader has heard nobody yet: everyone gets the same
		 * grace as a voter before it is judged gone. */
		d->heard.grace_ms = uv_now(d->loop);
	}
	d->leader = leader;
	if (leader)
		check_manager(d);
	update_datapath(d);
}

static void soon_cb(uv_timer_t *t)
{
	struct devices *d = t->data;
	update_datapath(d);
	sw_kick(d->sw);
}

static void store_changed(void *userdata, const struct store_cmd *cmd,
                          const struct store_result *result)
{
	struct devices *d = userdata;
	(void)cmd;
	if (result->applied && !uv_is_active((uv_handle_t *)&d->soon))
		uv_timer_start(&d->soon, soon_cb, 5, 0);
}

/* ---- the switches: flows, learning as master ---- */

static void learned(void *userdata, int status, const struct store_result *res, const char *error)
{
	struct devices *d = userdata;
	d->learning = false;
	if (status < 0)
		log_debug("devices: learned place not committed: %s", error);
	else if (!res->applied)
		log_warn("devices: learned place refused: %s", res->reason);
}

static void packet_in(void *userdata, uint64_t dpid, uint32_t in_port, const uint8_t *frame,
                      size_t len)
{
	struct devices *d = userdata;
	struct store_cmd cmd;
	/* One change at a time; the next frame proposes against the state
	 * this one leaves, so a chatty device costs one commit. */
	if (d->learning || !devices_learn(state(d), dpid, in_port, frame, len, wall_ms(), &cmd))
		return;
	const struct devices_device *v = STORE_CMD_ROW(&cmd, struct devices_device);
	log_info("devices: %s (%s) at %016" PRIx64 "/%u, address %u.%u.%u.%u", v->name, v->mac,
	         v->dpid, v->port, v->address >> 24, (v->address >> 16) & 255,
	         (v->address >> 8) & 255, v->address & 255);
	if (store_propose(d->store, &cmd, learned, d) == 0)
		d->learning = true;
}

static int flows(void *userdata, const struct store_state *st, const struct sw_port_ref *uplinks,
                 size_t n_uplinks, uint64_t dpid, struct sw_flows *out, struct sw_groups *groups)
{
	(void)userdata;
	(void)uplinks;
	(void)n_uplinks;
	(void)groups;
	return devices_flows(st, dpid, out);
}

const struct sw_service devices_sw = {
    .flows = flows,
    .packet_in = packet_in,
};

int devices_open(uv_loop_t *loop, const char *name, unsigned dead_after_ms, struct store *store,
                 struct swc *switches, struct datapath *dp, struct devices **ret)
{
	struct devices *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->loop = loop;
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->dead_after_ms = dead_after_ms;
	d->store = store;
	d->sw = switches;
	d->dp = dp;
	unsigned tables[] = {DEVICES_DEVICES, DEVICES_MANAGER, TRUST_ADMISSIONS, SWITCH_LOCATIONS,
	                     STORE_MEMBERS};
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		int r = store_subscribe(store, tables[i], store_changed, d, &d->subs[i]);
		if (r < 0) {
			for (size_t k = 0; k < i; k++)
				store_unsubscribe(store, d->subs[k]);
			free(d);
			return r;
		}
	}
	uv_timer_t *timers[] = {&d->tick, &d->soon};
	for (size_t i = 0; i < 2; i++) {
		uv_timer_init(loop, timers[i]);
		timers[i]->data = d;
	}
	uv_timer_start(&d->tick, tick_cb, TICK_MS, TICK_MS);
	int r = dp_set_source(dp, DEVICES_DP_SOURCE, datapath_build, d);
	if (r < 0)
		log_error("devices: datapath source: %s", strerror(-r));
	*ret = d;
	return 0;
}

static void closed(uv_handle_t *h)
{
	struct devices *d = h->data;
	if (--d->open_handles > 0)
		return;
	void (*done)(void *arg) = d->closed;
	void *arg = d->closed_arg;
	devices_heard_free(&d->heard);
	free(d);
	if (done)
		done(arg);
}

void devices_close(struct devices *d, void (*done)(void *arg), void *arg)
{
	if (!d) {
		if (done)
			done(arg);
		return;
	}
	d->closed = done;
	d->closed_arg = arg;
	for (size_t i = 0; i < sizeof(d->subs) / sizeof(d->subs[0]); i++)
		store_unsubscribe(d->store, d->subs[i]);
	dp_remove_source(d->dp, DEVICES_DP_SOURCE);
	d->open_handles = 2;
	uv_close((uv_handle_t *)&d->tick, closed);
	uv_close((uv_handle_t *)&d->soon, closed);
}

/* ---- control requests ---- */

static json_t *devices_list(struct devices *d)
{
	const struct store_state *st = state(d);
	const struct switch_location *mgr = devices_manager_location(st);
	json_t *a = store_table_dump(st, DEVICES_DEVICES);
	size_t i;
	json_t *x;
	json_array_foreach(a, i, x)
	{
		const struct devices_device *v = store_row(st, DEVICES_DEVICES, i);
		char dpid[17];
		snprintf(dpid, sizeof(dpid), "%016" PRIx64, v->dpid);
		json_object_set_new(x, "dpid", v->dpid ? json_string(dpid) : json_null());
		json_object_set_new(x, "managed_by", mgr ? json_string(mgr->host) : json_null());
	}
	return json_pack("{s:o, s:o}", "manager", store_table_dump(st, DEVICES_MANAGER), "devices",
	                 a);
}

/* The MAC argument, lowercased, or an error naming it. */
static int mac_arg(const struct ctl_request *req, char mac[STORE_MAC_MAX], char **ret_error)
{
	const char *s = json_string_value(json_object_get(req->args, "mac"));
	if (!s) {
		*ret_error = strdup("field \"mac\": expected a string");
		return -EINVAL;
	}
	size_t n = strlen(s);
	for (size_t i = 0; i < n && i < STORE_MAC_MAX - 1; i++)
		mac[i] = (char)tolower((unsigned char)s[i]);
	mac[n < STORE_MAC_MAX - 1 ? n : STORE_MAC_MAX - 1] = '\0';
	if (n >= STORE_MAC_MAX || !devices_device_mac_valid(mac)) {
		if (asprintf(ret_error,
		             "MAC \"%s\": expected six hex pairs like 02:aa:00:00:00:01, of a "
		             "unicast address, not all zero",
		             s) < 0)
			*ret_error = NULL;
		return -EINVAL;
	}
	return 0;
}

static int allow(struct devices *d, struct ctl_client *client, const struct ctl_request *req,
                 char **ret_error)
{
	struct store_cmd cmd = {.table = DEVICES_DEVICES, .op = STORE_PUT, .time_ms = wall_ms()};
	struct devices_device *v = STORE_CMD_ROW(&cmd, struct devices_device);
	char mac[STORE_MAC_MAX];
	int r = mac_arg(req, mac, ret_error);
	if (r < 0)
		return r;
	const char *name = json_string_value(json_object_get(req->args, "name"));
	if (!name || !devices_device_name_valid(name)) {
		if (asprintf(ret_error,
		             "name \"%s\": expected 1 to %d letters, digits, '.', '_' or '-'",
		             name ? name : "", STORE_NAME_MAX - 1) < 0)
			*ret_error = NULL;
		return -EINVAL;
	}
	/* Allowed again (or renamed): where it was seen stays known. */
	const struct devices_device *old = devices_device_find(state(d), mac);
	if (old)
		*v = *old;
	snprintf(v->mac, sizeof(v->mac), "%s", mac);
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->allowed_ms = cmd.time_ms;
	return store_propose_reply(d->store, client, req, &cmd, true, ret_error);
}

static int remove_device(struct devices *d, struct ctl_client *client,
                         const struct ctl_request *req, char **ret_error)
{
	struct store_cmd cmd = {.table = DEVICES_DEVICES, .op = STORE_DELETE, .time_ms = wall_ms()};
	int r = mac_arg(req, STORE_CMD_ROW(&cmd, struct devices_device)->mac, ret_error);
	if (r < 0)
		return r;
	if (!devices_device_find(state(d), STORE_CMD_ROW(&cmd, struct devices_device)->mac)) {
		if (asprintf(ret_error, "no device with MAC %s is allowed",
		             STORE_CMD_ROW(&cmd, struct devices_device)->mac) < 0)
			*ret_error = NULL;
		return -ENOENT;
	}
	return store_propose_reply(d->store, client, req, &cmd, true, ret_error);
}

int devices_handle_request(struct devices *d, struct ctl_client *client,
                           const struct ctl_request *req, json_t **ret_result, char **ret_error)
{
	if (strcmp(req->cmd, "devices") == 0) {
		*ret_result = devices_list(d);
		return *ret_result ? 0 : -ENOMEM;
	}
	if (strcmp(req->cmd, "devices.allow") == 0)
		return allow(d, client, req, ret_error);
	if (strcmp(req->cmd, "devices.remove") == 0)
		return remove_device(d, client, req, ret_error);
	return -ENOENT;
}
