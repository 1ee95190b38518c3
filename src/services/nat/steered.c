/* Which of this host's blocks the switches steer to it already
 * (nat-internal.h, docs/nat.md "Port blocks"): a new block is put to use
 * (the guest's ephemeral ports, the SNAT ranges) only once every switch on
 * the way from the uplink to this host holds the block's flows, or once
 * it was claimed NAT_STEER_WAIT_MS ago. Before that, an answer to a port of
 * the block reaches any AEE, and one whose replica has not applied the
 * block yet drops it: the connection waits for its SYN's retransmission,
 * a second later. */
#include <inttypes.h>
#include <stdlib.h>

#include "lib/array.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "services/nat/nat-internal.h"
#include "services/nat/tables.h"
#include "store/store.h"
#include "switch/switch.h"
#include "switch/tables.h"

#define POLL_MS           10 /* how often the switches are asked while a block waits */

static bool known(const struct nat *n, uint16_t start)
{
	for (size_t i = 0; i < n->n_steered; i++)
		if (n->steered[i] == start)
			return true;
	return false;
}

/* Forgets the blocks this host no longer holds. */
static void forget_gone(struct nat *n, const struct store_state *st)
{
	for (size_t i = 0; i < n->n_steered;) {
		uint64_t owner = nat_port_owner(st, n->steered[i]);
		if (owner != n->self)
			n->steered[i] = n->steered[--n->n_steered];
		else
			i++;
	}
}

/* The switches from the uplink this host's flows leave by to its own, into
 * @path; how many (0: not known yet). */
static size_t path_of(struct nat *n, const struct store_state *st, uint64_t *path)
{
	struct sw_port_ref ups[SW_MAX_UPLINKS];
	size_t k = sw_uplinks(n->sw, ups, NULL);
	const struct switch_location *l = switch_location_find(st, n->name);
	if (n->uplink >= k || !l)
		return 0;
	return nat_steer_path(st, ups[n->uplink].dpid, l->dpid, path, SW_MAX_SWITCHES);
}

/* Whether every switch of @path holds @b's flows; with @ask, asks those
 * that do not (or are not known) for their flows again. */
static bool steered(struct nat *n, const struct store_state *st, const struct nat_block *b,
                    const uint64_t *path, size_t k, bool ask)
{
	bool all = k > 0;
	for (size_t i = 0; i < k; i++) {
		const struct sw_flows *f = sw_installed(n->sw, path[i]);
		if (f && nat_block_steered(st, &n->o, path[i], b, f) == 1)
			continue;
		all = false;
		if (ask)
			sw_read_flows(n->sw, path[i]);
	}
	return all;
}

static void poll_cb(uv_timer_t *t);

bool nat_steered_check(struct nat *n, bool ask)
{
	const struct store_state *st = nat_state(n);
	forget_gone(n, st);
	uint64_t path[SW_MAX_SWITCHES];
	size_t k = path_of(n, st, path);
	uint64_t now = wall_ms();
	bool changed = false, waiting = false;
	for (size_t i = 0; i < store_count(st, NAT_BLOCKS); i++) {
		const struct nat_block *b = store_row(st, NAT_BLOCKS, i);
		if (b->owner != n->self || known(n, b->start))
			continue;
		uint64_t age = now >= b->claimed_ms ? now - b->claimed_ms : 0;
		bool late = age >= NAT_STEER_WAIT_MS;
		if (!late && !steered(n, st, b, path, k, ask)) {
			waiting = true;
			continue;
		}
		if (ARRAY_RESERVE(n->steered, n->cap_steered, n->n_steered + 1) < 0) {
			waiting = true; /* out of memory: tried again at the next poll */
			continue;
		}
		n->steered[n->n_steered++] = b->start;
		changed = true;
		/* A block claimed long before (the agent restarted) is in
		 * use at once, and says nothing. */
		if (late && age < NAT_STEER_WAIT_MS + 1000)
			log_warn("nat: ports %u-%u not seen steered to this host %" PRIu64
			         " ms after the claim; in use anyway",
			         b->start, b->start + b->size - 1u, age);
		else if (!late)
			log_info("nat: ports %u-%u in use: steered %" PRIu64 " ms after the claim",
			          b->start, b->start + b->size - 1u, age);
	}
	if (waiting && !uv_is_active((uv_handle_t *)&n->steer_poll))
		uv_timer_start(&n->steer_poll, poll_cb, POLL_MS, POLL_MS);
	else if (!waiting)
		uv_timer_stop(&n->steer_poll);
	return changed;
}

static void poll_cb(uv_timer_t *t)
{
	struct nat *n = t->data;
	if (nat_steered_check(n, true))
		nat_datapath_update(n);
}

void nat_steered_filter(const struct nat *n, struct nat_view *d)
{
	unsigned k = 0;
	for (unsigned i = 0; i < d->n_own; i++)
		if (known(n, d->own[i].start))
			d->own[k++] = d->own[i];
	d->n_own = k;
}
