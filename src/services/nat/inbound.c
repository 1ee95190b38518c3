/* NAT's inbound mappings kept by the agent (nat-internal.h, docs/nat.md):
 * automatic ones for the guest's listeners that policy lets be reached
 * (mapped, renewed while listening, unmapped when closed), and the expiry
 * of mappings the guest requested (NAT-PMP/PCP) once their lifetime is
 * over. The admin's mappings (no expiry) are not touched. */
#include <arpa/inet.h>
#include <string.h>

#include "datapath/datapath.h"
#include "guest/guest.h"
#include "lib/array.h"
#include "lib/cleanup.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "services/nat/nat-internal.h"
#include "services/nat/tables.h"
#include "store/store.h"

#define AUTO_LIFETIME_MS 120000 /* an automatic mapping, renewed while listening */
#define AUTO_RENEW_MS    60000

int nat_inbound_propose(struct nat *n, enum store_op op, const struct nat_mapping *m,
                        store_done_cb cb, void *userdata)
{
	struct store_cmd cmd = {.table = NAT_MAPPINGS, .op = op, .time_ms = wall_ms()};
	(*STORE_CMD_ROW(&cmd, struct nat_mapping)) = *m;
	return store_propose(n->store, &cmd, cb, userdata);
}

/* ---- expiry: one lapsed mapping at a time ---- */

static void expire_done(void *userdata, int status, const struct store_result *res,
                        const char *error)
{
	struct nat *n = userdata;
	(void)status;
	(void)res;
	(void)error;
	n->expiring = false;
}

void nat_inbound_expire(struct nat *n)
{
	const struct store_state *st = nat_state(n);
	uint64_t now = wall_ms();
	for (size_t i = 0; !n->expiring && i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *m = store_row(st, NAT_MAPPINGS, i);
		if (m->owner != n->self || m->expires_ms == 0 || m->expires_ms > now)
			continue;
		log_info("nat: mapping of public port %u/%s lapsed", m->public_port,
		         nat_proto_name(m->proto));
		if (nat_inbound_propose(n, STORE_DELETE, m, expire_done, n) == 0)
			n->expiring = true;
	}
}

/* ---- automatic mappings: a guest server that policy lets be reached ---- */

static void auto_done(void *userdata, int status, const struct store_result *res, const char *error)
{
	struct nat *n = userdata;
	n->auto_busy = false;
	if (status < 0 || !res->applied)
		log_info("nat: automatic mapping not committed: %s",
		         status < 0 ? error : res->reason);
}

static bool auto_known(struct nat *n, uint8_t proto, uint16_t port, bool remove)
{
	for (size_t i = 0; i < n->n_autos; i++)
		if (n->autos[i].proto == proto && n->autos[i].port == port) {
			if (remove)
				n->autos[i] = n->autos[--n->n_autos];
			return true;
		}
	return false;
}

static void auto_propose(struct nat *n, enum store_op op, const struct nat_mapping *m)
{
	if (nat_inbound_propose(n, op, m, auto_done, n) == 0)
		n->auto_busy = true;
}

static bool listening(const struct guest_listener *ls, size_t k, uint8_t proto, uint16_t port)
{
	for (size_t i = 0; i < k; i++)
		if (ls[i].proto == proto && ls[i].port == port)
			return true;
	return false;
}

/* Whether listener @l wants a mapping proposed now: one policy allows, on
 * the guest's address, not the admin's nor fresh enough. */
static bool auto_wanted(struct nat *n, const struct guest_listener *l, uint64_t now)
{
	if ((l->addr.s_addr && l->addr.s_addr != n->dp->cfg.guest_addr.s_addr) ||
	    !nat_may_expose(&n->o, l->proto, l->port))
		return false;
	const struct nat_mapping *m = nat_mapping_of(nat_state(n), n->self, l->proto, l->port);
	return !m || (m->expires_ms != 0 && m->expires_ms <= now + AUTO_RENEW_MS);
}

/* Maps or renews the first listener that needs it; true when one did. */
static bool auto_map(struct nat *n, const struct guest_listener *ls, size_t k)
{
	uint64_t now = wall_ms();
	for (size_t i = 0; i < k; i++) {
		const struct guest_listener *l = &ls[i];
		if (!auto_wanted(n, l, now))
			continue;
		struct nat_mapping want = {
		    .proto = l->proto,
		    .owner = n->self,
		    .guest_addr = ntohl(n->dp->cfg.guest_addr.s_addr),
		    .guest_port = l->port,
		    .expires_ms = now + AUTO_LIFETIME_MS,
		};
		if (nat_mapping_port(nat_state(n), n->self, l->proto, l->port, l->port,
		                     &want.public_port) < 0)
			continue;
		if (!auto_known(n, l->proto, l->port, false)) {
			if (ARRAY_RESERVE(n->autos, n->cap_autos, n->n_autos + 1) < 0)
				continue; /* out of memory: tried again at the next change */
			n->autos[n->n_autos++] = (struct nat_auto){l->proto, l->port};
			log_info("nat: guest listens on %s port %u: public port %u",
			         nat_proto_name(l->proto), l->port, want.public_port);
		}
		auto_propose(n, STORE_PUT, &want);
		return true;
	}
	return false;
}

/* Forgets the first mapped listener that closed, unmapping it. */
static void auto_unmap(struct nat *n, const struct guest_listener *ls, size_t k)
{
	for (size_t i = 0; i < n->n_autos; i++) {
		uint8_t proto = n->autos[i].proto;
		uint16_t port = n->autos[i].port;
		if (listening(ls, k, proto, port))
			continue;
		auto_known(n, proto, port, true);
		const struct nat_mapping *m = nat_mapping_of(nat_state(n), n->self, proto, port);
		if (m && m->expires_ms != 0) {
			log_info("nat: guest closed %s port %u: unmapping public port %u",
			         nat_proto_name(proto), port, m->public_port);
			auto_propose(n, STORE_DELETE, m);
		}
		return;
	}
}

void nat_inbound_auto(struct nat *n)
{
	if (!n->guest || n->auto_busy || !nat_blocks_of(nat_state(n), n->self))
		return;
	_cleanup_free_ struct guest_listener *ls = NULL;
	size_t k;
	int r = guest_listeners(n->guest, &ls, &k);
	if (r < 0) {
		if (!n->guest_failed)
			log_warn("nat: cannot read the guest's sockets: %s", strerror(-r));
		n->guest_failed = true;
		return;
	}
	n->guest_failed = false;
	if (!auto_map(n, ls, k))
		auto_unmap(n, ls, k);
}
