/* The NAT service's frame on the agent's loop (nat.h, docs/nat.md): open and
 * close, the timers that drive the other parts (nat-internal.h), the store's
 * subscriptions and the barrier after the start, the datapath source and
 * the guest's ephemeral ports, and the uplink this host's flows leave by. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datapath/conntrack.h"
#include "datapath/datapath.h"
#include "datapath/fragment.h"
#include "guest/guest.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "services/nat/nat-internal.h"
#include "services/nat/pmp.h"
#include "services/nat/tables.h"
#include "store/store.h"
#include "switch/switch.h"
#include "switch/tables.h"
#include "trust/tables.h"

#define TICK_MS  1000
#define WATCH_MS 50

/* ---- the datapath ---- */

/* The guest's ephemeral port blocks for @d's own blocks, newly allocated
 * into *@ret_b (d->n_own of them); 0 or -ENOMEM. */
static int guest_ports_of(const struct nat_view *d, struct guest_port_block **ret_b)
{
	struct guest_port_block *b = calloc(d->n_own ? d->n_own : 1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < d->n_own; i++)
		b[i] = (struct guest_port_block){.start = d->own[i].start, .size = d->own[i].size};
	*ret_b = b;
	return 0;
}

static void log_guest_ports(const struct guest_port_block *b, size_t k)
{
	unsigned lo = 65535, hi = 0;
	for (size_t i = 0; i < k; i++) {
		unsigned end = b[i].start + b[i].size - 1u;
		lo = b[i].start < lo ? b[i].start : lo;
		hi = end > hi ? end : hi;
	}
	log_info("nat: the guest's ephemeral ports are %u-%u (%zu block%s)", lo, hi, k,
	         k == 1 ? "" : "s");
}

/* Every ephemeral port the guest picks lies in this host's blocks, so SNAT
 * keeps it and the mapping is endpoint-independent (guest.h). Set again
 * whenever the blocks change; a failure is retried every tick, logged
 * once. */
static void update_guest_ports(struct nat *n, const struct nat_view *d)
{
	if (!n->guest_netns || d->n_own == 0)
		return;
	struct guest_port_block *b;
	size_t k = d->n_own;
	if (guest_ports_of(d, &b) < 0) {
		log_error("nat: the guest's ephemeral ports: %s", strerror(ENOMEM));
		return;
	}
	bool same = k == n->n_ports && memcmp(b, n->ports, k * sizeof(*b)) == 0;
	if (same && !n->ports_failed) {
		free(b);
		return;
	}
	const char *failed = NULL;
	int r = guest_set_local_ports(n->guest_netns, b, k, &failed);
	if (r < 0 && (!same || !n->ports_failed))
		log_error("nat: the guest's ephemeral ports (%s): %s; its mappings depend on the "
		          "destination",
		          failed ? failed : n->guest_netns, strerror(-r));
	else if (r == 0)
		log_guest_ports(b, k);
	free(n->ports);
	n->ports = b;
	n->n_ports = k;
	n->ports_failed = r < 0;
}

/* What this AEE translates (nat_datapath()), with only the blocks in use
 * (steered.c); before the store has caught up, no blocks. */
static int view(struct nat *n, struct nat_view *d)
{
	int r = nat_datapath(n->synced ? nat_state(n) : NULL, &n->o, n->self, sw_own_mac(n->sw),
	                     n->uplink, d);
	nat_steered_filter(n, d);
	return r;
}

/* NAT's datapath source (dp_build_fn): until the store has caught up, no
 * blocks, and the table from before a restart held as it is. */
static int datapath_build(void *userdata, const struct dp_config *cfg, struct dp_fragment *out)
{
	struct nat *n = userdata;
	struct nat_view d;
	int r = view(n, &d);
	out->hold = !n->synced;
	if (r == 0)
		r = nat_ruleset_build(cfg, &d, out);
	nat_view_free(&d);
	return r;
}

void nat_datapath_update(struct nat *n)
{
	if (!n->synced)
		return;
	nat_steered_check(n, true);
	struct nat_view d;
	int r = view(n, &d);
	if (dp_changed(n->dp) < 0)
		log_error("nat: datapath: %s", n->dp->error ? n->dp->error : "failed");
	if (r == 0)
		update_guest_ports(n, &d);
	nat_view_free(&d);
}

/* ---- timers ---- */

static void choose_uplink(struct nat *n)
{
	struct sw_port_ref ups[SW_MAX_UPLINKS];
	bool up[SW_MAX_UPLINKS];
	size_t k = sw_uplinks(n->sw, ups, up);
	bool any = false;
	for (size_t i = 0; i < k; i++)
		any |= up[i];
	unsigned u = nat_uplink_for(n->self, any ? up : NULL,
	                            (unsigned)(k < n->o.n_publics ? k : n->o.n_publics));
	if (u == n->uplink)
		return;
	char a[ADDR_STR_MAX];
	log_info("nat: flows now leave by uplink %u (%s)", u + 1, addr_format(n->o.publics[u], a));
	n->uplink = u;
}

static void sync_done(void *userdata, int status, const struct store_result *res, const char *error)
{
	struct nat *n = userdata;
	(void)res;
	n->syncing = false;
	if (status < 0) {
		log_debug("nat: waiting for the store: %s", error);
		return;
	}
	if (!n->synced)
		log_info("nat: the store has caught up; translating");
	n->synced = true;
	nat_datapath_update(n);
}

/* Once after the start: everything committed so far is applied here. */
static void sync_store(struct nat *n)
{
	if (!n->synced && !n->syncing && store_barrier(n->store, sync_done, n) == 0)
		n->syncing = true;
}

static void soon_cb(uv_timer_t *t)
{
	struct nat *n = t->data;
	choose_uplink(n);
	nat_datapath_update(n);
	nat_claim_check(n);
	sw_kick(n->sw);
}

/* Between ticks, a burst of new flows can use a block up in far less
 * than a second: the table's size, cheap to read, is looked at every
 * WATCH_MS, and the exact count (and a claim) follows when it is close. */
static void watch_cb(uv_timer_t *t)
{
	struct nat *n = t->data;
	unsigned long total;
	if (n->synced && dp_conntrack_total(&total) == 0 && nat_claim_soon(n, total)) {
		n->watched = total;
		nat_claim_check(n);
	}
}

static void tick_cb(uv_timer_t *t)
{
	struct nat *n = t->data;
	sync_store(n);
	soon_cb(t);
	nat_claim_reclaim(n);
	if (n->synced) {
		nat_inbound_expire(n);
		nat_inbound_auto(n);
	}
	nat_switches_resolve(n);
}

static void store_changed(void *userdata, const struct store_cmd *cmd,
                          const struct store_result *result)
{
	struct nat *n = userdata;
	(void)cmd;
	if (result->applied && !uv_is_active((uv_handle_t *)&n->soon))
		uv_timer_start(&n->soon, soon_cb, 5, 0);
}

/* ---- open and close ---- */

static void unsubscribe(struct nat *n)
{
	for (size_t i = 0; i < NAT_TABLES_WATCH; i++) {
		store_unsubscribe(n->store, n->subs[i]);
		n->subs[i] = NULL;
	}
}

static int subscribe(struct nat *n)
{
	static const unsigned tables[NAT_TABLES_WATCH] = {
	    NAT_BLOCKS, NAT_MAPPINGS, TRUST_ADMISSIONS, SWITCH_LOCATIONS, STORE_MEMBERS};
	for (size_t i = 0; i < NAT_TABLES_WATCH; i++) {
		int r = store_subscribe(n->store, tables[i], store_changed, n, &n->subs[i]);
		if (r < 0) {
			unsubscribe(n);
			return r;
		}
	}
	return 0;
}

static struct nat *nat_new(uv_loop_t *loop, const struct nat_options *o, uint64_t self,
                           const char *name, const char *guest_netns)
{
	struct nat *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->loop = loop;
	n->o = *o;
	n->self = self;
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->in_use = -1;
	n->uplink = nat_uplink_for(self, NULL, o->n_publics);
	if (guest_netns && !(n->guest_netns = strdup(guest_netns))) {
		free(n);
		return NULL;
	}
	return n;
}

static void nat_free(struct nat *n)
{
	free(n->ports);
	free(n->steered);
	free(n->orphans);
	free(n->autos);
	free(n->guest_netns);
	free(n);
}

/* The parts that may fail without stopping NAT: each says what is off. */
static void start_parts(struct nat *n, const char *guest_netns)
{
	int r = guest_netns && n->o.n_expose ? guest_open(guest_netns, &n->guest) : 0;
	if (r < 0)
		log_error("nat: the guest's namespace %s: %s; no automatic mappings", guest_netns,
		          strerror(-r));
	r = nat_pmp_server_open(n);
	if (r < 0)
		log_error("nat: NAT-PMP/PCP on port %u: %s; port mapping requests are off",
		          PMP_PORT, uv_strerror(r));
	r = dp_set_source(n->dp, NAT_DP_SOURCE, datapath_build, n);
	if (r < 0)
		log_error("nat: datapath source: %s", strerror(-r));
}

int nat_open(uv_loop_t *loop, const struct nat_options *o, uint64_t self, const char *name,
             struct store *store, struct swc *switches, struct datapath *dp,
             const char *guest_netns, struct nat **ret)
{
	struct nat *n = nat_new(loop, o, self, name, guest_netns);
	if (!n)
		return -ENOMEM;
	n->store = store;
	n->sw = switches;
	n->dp = dp;
	int r = subscribe(n);
	if (r < 0) {
		nat_free(n);
		return r;
	}
	uv_timer_t *timers[] = {&n->tick, &n->soon, &n->watch, &n->steer_poll};
	for (size_t i = 0; i < 4; i++) {
		uv_timer_init(loop, timers[i]);
		timers[i]->data = n;
	}
	uv_timer_start(&n->tick, tick_cb, 10, TICK_MS);
	uv_timer_start(&n->watch, watch_cb, WATCH_MS, WATCH_MS);
	n->started_ms = uv_now(loop);
	start_parts(n, guest_netns);
	*ret = n;
	return 0;
}

static void closed(uv_handle_t *h)
{
	struct nat *n = h->data;
	if (--n->open_handles > 0)
		return;
	void (*done)(void *arg) = n->closed;
	void *arg = n->closed_arg;
	nat_free(n);
	if (done)
		done(arg);
}

void nat_close(struct nat *n, void (*done)(void *arg), void *arg)
{
	if (!n) {
		if (done)
			done(arg);
		return;
	}
	n->closed = done;
	n->closed_arg = arg;
	unsubscribe(n);
	dp_remove_source(n->dp, NAT_DP_SOURCE);
	guest_close(n->guest);
	n->guest = NULL;
	n->open_handles = 4 + n->pmp_open;
	uv_close((uv_handle_t *)&n->tick, closed);
	uv_close((uv_handle_t *)&n->soon, closed);
	uv_close((uv_handle_t *)&n->watch, closed);
	uv_close((uv_handle_t *)&n->steer_poll, closed);
	if (n->pmp_open)
		uv_close((uv_handle_t *)&n->pmp, closed);
}
