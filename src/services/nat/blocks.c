/* Port blocks and the datapath's view of NAT (nat.h): pure functions of the
 * store's state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nat.h"
#include "switch/desired.h"
#include "trust/tables.h"
#include "switch/tables.h"
#include "services/nat/tables.h"
#include "lib/array.h"
#include "lib/mac.h"

/* Locally administered, "e7 7e" for ETTM's NAT, then the address's low 24
 * bits; the gateway stand-in is 02:e7:7f:00:00:01. */
const uint8_t nat_gateway_mac[6] = {0x02, 0xe7, 0x7f, 0x00, 0x00, 0x01};

void nat_public_mac(struct in_addr addr, uint8_t mac[6])
{
	uint32_t a = ntohl(addr.s_addr);
	mac[0] = 0x02;
	mac[1] = 0xe7;
	mac[2] = 0x7e;
	mac[3] = (uint8_t)(a >> 16);
	mac[4] = (uint8_t)(a >> 8);
	mac[5] = (uint8_t)a;
}

bool nat_may_expose(const struct nat_options *o, uint8_t proto, uint16_t port)
{
	for (unsigned i = 0; i < o->n_expose; i++)
		if (o->expose[i].proto == proto && port >= o->expose[i].lo &&
		    port <= o->expose[i].hi)
			return true;
	return false;
}

struct in_addr nat_gateway(const struct nat_options *o, unsigned uplink)
{
	if (o->n_gateways == 0)
		return (struct in_addr){0};
	return o->gateways[uplink < o->n_gateways ? uplink : 0];
}

int nat_block_pick(const struct store_state *st, const struct nat_options *o, uint16_t *ret_start)
{
	uint32_t size = o->block_size;
	uint32_t start = (o->first_port + size - 1) / size * size;
	size_t n = store_count(st, NAT_BLOCKS);
	for (; start + size <= 65536; start += size) {
		bool taken = false;
		for (size_t i = 0; i < n && !taken; i++) {
			const struct nat_block *b = store_row(st, NAT_BLOCKS, i);
			taken = b->start < start + size && start < (uint32_t)b->start + b->size;
		}
		if (!taken) {
			*ret_start = (uint16_t)start;
			return 0;
		}
	}
	return -ENOSPC;
}

static bool block_taken(const struct store_state *st, uint32_t start, uint32_t size,
                        const uint16_t *also, size_t n_also)
{
	for (size_t i = 0; i < n_also; i++)
		if (also[i] == start)
			return true;
	for (size_t i = 0; i < store_count(st, NAT_BLOCKS); i++) {
		const struct nat_block *b = store_row(st, NAT_BLOCKS, i);
		if (b->start < start + size && start < (uint32_t)b->start + b->size)
			return true;
	}
	return false;
}

size_t nat_blocks_pick(const struct store_state *st, const struct nat_options *o,
                       uint16_t *ret_starts, size_t want)
{
	uint32_t size = o->block_size;
	size_t k = 0;
	for (uint32_t start = (o->first_port + size - 1) / size * size;
	     k < want && start + size <= 65536; start += size)
		if (!block_taken(st, start, size, ret_starts, k))
			ret_starts[k++] = (uint16_t)start;
	return k;
}

size_t nat_blocks_wanted(size_t held, unsigned block_size, unsigned long in_use,
                         unsigned long ahead)
{
	unsigned long want = in_use + ahead;
	/* The fewest blocks whose 3/4 is more than want. */
	size_t need = (size_t)(want * 4 / (3ul * block_size)) + 1;
	return need > held ? need - held : 0;
}

size_t nat_blocks_of(const struct store_state *st, uint64_t owner)
{
	size_t k = 0;
	for (size_t i = 0; i < store_count(st, NAT_BLOCKS); i++)
		k += ((const struct nat_block *)store_row(st, NAT_BLOCKS, i))->owner == owner;
	return k;
}

uint64_t nat_port_owner(const struct store_state *st, uint16_t port)
{
	for (size_t i = 0; i < store_count(st, NAT_BLOCKS); i++) {
		const struct nat_block *b = store_row(st, NAT_BLOCKS, i);
		if (port >= b->start && port - b->start < b->size)
			return b->owner;
	}
	return 0;
}

bool nat_member_mac(const struct store_state *st, uint64_t id, uint8_t mac[6])
{
	const struct store_member *m = store_member_find(st, id);
	if (!m || !trust_admission_find(st, m->name))
		return false;
	const struct switch_location *l = switch_location_find(st, m->name);
	return l && mac_parse(l->mac, mac);
}

unsigned nat_uplink_for(uint64_t id, const bool *up, unsigned n)
{
	unsigned live = 0;
	for (unsigned i = 0; i < n; i++)
		live += !up || up[i];
	if (live == 0)
		return n ? (unsigned)(id % n) : 0;
	unsigned k = (unsigned)(id % live);
	for (unsigned i = 0; i < n; i++)
		if ((!up || up[i]) && k-- == 0)
			return i;
	return 0;
}

/* The reassembler of inbound fragments (struct nat_view_fragments). */
static void reassembler(const struct store_state *st, uint64_t self, struct nat_view_fragments *ret)
{
	uint64_t best = 0;
	uint8_t mac[6];
	for (size_t i = 0; st && i < store_count(st, NAT_BLOCKS); i++) {
		const struct nat_block *b = store_row(st, NAT_BLOCKS, i);
		if ((best == 0 || b->owner < best) && nat_member_mac(st, b->owner, mac)) {
			best = b->owner;
			ret->known = true;
			ret->self = best == self;
			memcpy(ret->mac, mac, 6);
		}
	}
}

void nat_view_free(struct nat_view *v)
{
	if (!v)
		return;
	free(v->own);
	free(v->others);
	free(v->own_maps);
	free(v->other_maps);
	v->own = v->others = NULL;
	v->own_maps = v->other_maps = NULL;
	v->n_own = v->n_others = v->n_own_maps = v->n_other_maps = 0;
	v->cap_own = v->cap_others = v->cap_own_maps = v->cap_other_maps = 0;
}

#define VIEW_ADD(v, n, cap, x)                                                                     \
	(ARRAY_RESERVE(v, cap, (size_t)(n) + 1) < 0 ? -ENOMEM : ((v)[(n)++] = (x), 0))

int nat_datapath(const struct store_state *st, const struct nat_options *o, uint64_t self,
                 const uint8_t own_mac[6], unsigned uplink, struct nat_view *ret)
{
	struct nat_view *d = ret;
	memset(d, 0, sizeof(*d));
	if (!nat_enabled(o))
		return 0;
	d->enabled = true;
	d->filtering = o->filtering;
	if (uplink >= o->n_publics)
		uplink = 0;
	d->public_addr = o->publics[uplink];
	for (unsigned i = 0; i < o->n_publics && i < NAT_PUBLIC_MAX; i++)
		d->publics[d->n_publics++] = o->publics[i];
	d->gateway = nat_gateway(o, uplink);
	memcpy(d->gateway_mac, nat_gateway_mac, 6);
	memcpy(d->own_mac, own_mac, 6);

	int r = 0;
	for (size_t i = 0; r == 0 && st && i < store_count(st, NAT_BLOCKS); i++) {
		const struct nat_block *b = store_row(st, NAT_BLOCKS, i);
		struct nat_view_block x = {.start = b->start, .size = b->size};
		if (b->owner == self)
			r = VIEW_ADD(d->own, d->n_own, d->cap_own, x);
		else if (nat_member_mac(st, b->owner, x.mac))
			r = VIEW_ADD(d->others, d->n_others, d->cap_others, x);
	}
	reassembler(st, self, &d->fragments);
	for (size_t i = 0; r == 0 && st && i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *m = store_row(st, NAT_MAPPINGS, i);
		struct nat_view_mapping x = {
		    .proto = m->proto, .public_port = m->public_port, .guest_port = m->guest_port};
		if (m->owner == self)
			r = VIEW_ADD(d->own_maps, d->n_own_maps, d->cap_own_maps, x);
		else if (nat_port_owner(st, m->public_port) != m->owner &&
		         nat_member_mac(st, m->owner, x.mac))
			/* Ports inside the owner's block go with the block. */
			r = VIEW_ADD(d->other_maps, d->n_other_maps, d->cap_other_maps, x);
	}
	return r;
}

const struct nat_mapping *nat_mapping_of(const struct store_state *st, uint64_t owner,
                                         uint8_t proto, uint16_t guest_port)
{
	for (size_t i = 0; i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *m = store_row(st, NAT_MAPPINGS, i);
		if (m->owner == owner && m->proto == proto && m->guest_port == guest_port)
			return m;
	}
	return NULL;
}

static bool mapped(const struct store_state *st, uint8_t proto, uint16_t port)
{
	for (size_t i = 0; i < store_count(st, NAT_MAPPINGS); i++) {
		const struct nat_mapping *m = store_row(st, NAT_MAPPINGS, i);
		if (m->proto == proto && m->public_port == port)
			return true;
	}
	return false;
}

int nat_mapping_port(const struct store_state *st, uint64_t self, uint8_t proto,
                     uint16_t guest_port, uint16_t suggested, uint16_t *ret_port)
{
	const struct nat_mapping *m = nat_mapping_of(st, self, proto, guest_port);
	if (m) {
		*ret_port = m->public_port;
		return 0;
	}
	if (suggested && !mapped(st, proto, suggested)) {
		uint64_t owner = nat_port_owner(st, suggested);
		if (owner == 0 || owner == self) {
			*ret_port = suggested;
			return 0;
		}
	}
	for (size_t i = 0; i < store_count(st, NAT_BLOCKS); i++) {
		const struct nat_block *b = store_row(st, NAT_BLOCKS, i);
		if (b->owner != self)
			continue;
		/* From the top of the block down: translations take ports from
		 * anywhere in it, but the kernel keeps a guest's own port when
		 * it can, and guests' ephemeral ports are high. */
		for (uint32_t p = (uint32_t)b->start + b->size; p-- > b->start;)
			if (!mapped(st, proto, (uint16_t)p)) {
				*ret_port = (uint16_t)p;
				return suggested ? 1 : 0;
			}
	}
	return -ENOSPC;
}

int nat_map_next(const struct store_state *st, uint64_t self, const struct nat_map_ask *a,
                 uint16_t *ret_port)
{
	if (a->refused >= NAT_MAP_TRIES)
		return -EAGAIN;
	const struct nat_mapping *old = nat_mapping_of(st, self, a->proto, a->guest_port);
	if (old && old->expires_ms == 0)
		return -EPERM;
	uint16_t port;
	int r = nat_mapping_port(st, self, a->proto, a->guest_port, a->suggested, &port);
	if (r < 0)
		return r;
	if (r == 1 && a->prefer_failure)
		return -EEXIST;
	*ret_port = port;
	return 0;
}
