/* LLDP (IEEE 802.1AB) frames as ETTM uses them: the master's probes, sent
 * out of every switch port to find switch-to-switch links, and each AEE's
 * announcement of itself on its uplink. Both carry the standard chassis,
 * port and TTL TLVs (so tcpdump and other LLDP tools read them) and one
 * organisationally specific TLV with what ETTM needs (docs/switch.md). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define LLDP_ETHERTYPE 0x88cc
#define LLDP_FRAME_MAX 256

enum lldp_kind {
	LLDP_PROBE = 1,    /* from a switch port, sent by the master */
	LLDP_ANNOUNCE = 2, /* from an AEE's uplink */
};

struct lldp_info {
	uint8_t kind; /* enum lldp_kind */
	uint8_t src_mac[6];
	/* LLDP_PROBE */
	uint64_t dpid;
	uint32_t port;
	/* LLDP_ANNOUNCE */
	char host[32];
	uint32_t control_addr, guest_addr; /* host byte order */
};

/* Writes the Ethernet frame for @in into @buf; returns its length, or 0 when
 * @size is too small. */
size_t lldp_encode(uint8_t *buf, size_t size, const struct lldp_info *in);

/* Decodes a frame. Returns 0; -EBADMSG for a malformed LLDP frame or one
 * that is not LLDP; -ENOENT for valid LLDP that ETTM did not send. */
int lldp_decode(const uint8_t *frame, size_t len, struct lldp_info *ret);
