/* The choice of the devices' manager, what the master learns from a
 * device's frames, and the manager's datapath view: pure functions of the
 * store (devices.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices.h"
#include "switch/desired.h"
#include "trust/tables.h"
#include "switch/tables.h"
#include "services/devices/tables.h"
#include "lib/array.h"
#include "lib/mac.h"

#define ETH_HLEN  14
#define ETH_IP    0x0800
#define ETH_ARP   0x0806
#define ARP_PLEN  28
#define IPV4_HLEN 20

static bool may_manage(const struct store_state *st, const struct store_member *m,
                       devices_alive_fn alive, void *userdata)
{
	uint8_t mac[6];
	const struct switch_location *l = switch_location_find(st, m->name);
	return trust_admission_find(st, m->name) && l && mac_parse(l->mac, mac) &&
	       alive(userdata, m);
}

const struct store_member *devices_pick_manager(const struct store_state *st,
                                                devices_alive_fn alive, void *userdata)
{
	const struct devices_manager *cur = devices_manager(st);
	const struct store_member *m = cur->host[0] ? store_member_find_name(st, cur->host) : NULL;
	if (m && may_manage(st, m, alive, userdata))
		return m;
	/* Members are in id order. */
	for (size_t i = 0; i < store_count(st, STORE_MEMBERS); i++) {
		m = store_row(st, STORE_MEMBERS, i);
		if (may_manage(st, m, alive, userdata))
			return m;
	}
	return NULL;
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A unicast address a device may hold: not 0.0.0.0 (an ARP probe's), not
 * loopback, multicast or broadcast. */
static bool usable(uint32_t a)
{
	return a != 0 && (a >> 24) != 127 && (a >> 28) < 14;
}

/* The sender's IPv4 address in an ARP or IPv4 frame, or 0. */
static uint32_t sender_addr(const uint8_t *frame, size_t len)
{
	if (len < ETH_HLEN)
		return 0;
	const uint8_t *p = frame + ETH_HLEN;
	uint16_t type = be16(frame + 12);
	uint32_t a = 0;
	/* ARP for IPv4 over Ethernet: htype 1, ptype 0x0800, 6 and 4. */
	if (type == ETH_ARP && len >= ETH_HLEN + ARP_PLEN && be16(p) == 1 &&
	    be16(p + 2) == ETH_IP && p[4] == 6 && p[5] == 4)
		a = be32(p + 14);
	else if (type == ETH_IP && len >= ETH_HLEN + IPV4_HLEN && (p[0] >> 4) == 4)
		a = be32(p + 12);
	return usable(a) ? a : 0;
}

bool devices_learn(const struct store_state *st, uint64_t dpid, uint32_t in_port,
                   const uint8_t *frame, size_t len, uint64_t now_ms, struct store_cmd *ret_cmd)
{
	if (len < ETH_HLEN || !dpid || !in_port)
		return false;
	char mac[STORE_MAC_MAX];
	const uint8_t *s = frame + 6;
	mac_format(s, mac);
	const struct devices_device *d = devices_device_find(st, mac);
	if (!d)
		return false;
	uint32_t addr = sender_addr(frame, len);
	if (d->dpid == dpid && d->port == in_port && (!addr || addr == d->address))
		return false;
	struct store_cmd cmd = {.table = DEVICES_DEVICES, .op = STORE_PUT, .time_ms = now_ms};
	(*STORE_CMD_ROW(&cmd, struct devices_device)) = *d;
	STORE_CMD_ROW(&cmd, struct devices_device)->dpid = dpid;
	STORE_CMD_ROW(&cmd, struct devices_device)->port = in_port;
	if (addr)
		STORE_CMD_ROW(&cmd, struct devices_device)->address = addr;
	*ret_cmd = cmd;
	return true;
}

int devices_datapath(const struct store_state *st, const char *self, const uint8_t own_mac[6],
                     struct devices_view *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (strcmp(devices_manager(st)->host, self) != 0)
		return 0;
	ret->enabled = true;
	memcpy(ret->own_mac, own_mac, 6);
	for (size_t i = 0; i < store_count(st, DEVICES_DEVICES); i++) {
		const struct devices_device *d = store_row(st, DEVICES_DEVICES, i);
		if (ARRAY_RESERVE(ret->v, ret->cap, (size_t)ret->n + 1) < 0)
			return -ENOMEM;
		struct devices_view_device *v = &ret->v[ret->n];
		*v = (struct devices_view_device){0};
		if (!mac_parse(d->mac, v->mac))
			continue;
		v->addr.s_addr = htonl(d->address);
		ret->n++;
	}
	return 0;
}

static struct devices_heard_member *heard_of(const struct devices_heard *h, uint64_t id)
{
	for (size_t i = 0; i < h->n; i++)
		if (h->v[i].id == id)
			return &h->v[i];
	return NULL;
}

void devices_heard_note(struct devices_heard *h, uint64_t id, uint64_t now_ms)
{
	struct devices_heard_member *m = heard_of(h, id);
	if (!m && ARRAY_RESERVE(h->v, h->cap, h->n + 1) == 0) {
		m = &h->v[h->n++];
		m->id = id;
	}
	if (m) /* else out of memory: the grace, or the next answer, counts */
		m->ms = now_ms;
}

bool devices_heard_alive(const struct devices_heard *h, uint64_t id, uint64_t now_ms,
                         unsigned dead_after_ms)
{
	const struct devices_heard_member *m = heard_of(h, id);
	uint64_t t = m && m->ms > h->grace_ms ? m->ms : h->grace_ms;
	return t && now_ms - t < dead_after_ms;
}

void devices_heard_free(struct devices_heard *h)
{
	if (!h)
		return;
	free(h->v);
	*h = (struct devices_heard){0};
}

void devices_view_free(struct devices_view *v)
{
	if (!v)
		return;
	free(v->v);
	v->v = NULL;
	v->n = 0;
	v->cap = 0;
}
