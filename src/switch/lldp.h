/* LLDP (IEEE 802.1AB) frames as ETTM uses them: the master's probes, sent
 * out of every switch port to find switch-to-switch links, and each AEE's
 * announcement of itself on its uplink. Both carry the standard chassis,
 * port and TTL TLVs (so tcpdump and other LLDP tools read them) and
 * organisationally specific TLVs with what ETTM needs (docs/switch.md,
 * "Topology"): a probe the token of its port and round, an announcement
 * the token of the last probe its uplink heard, the agent's TLS key and
 * its signature, so that the master can tell its own probes and an
 * admitted host's announcements from a stranger's forgeries and replays. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/tls.h"

#define LLDP_ETHERTYPE 0x88cc
/* The largest frame lldp_encode() writes: a signed announcement is about
 * 325 bytes. */
#define LLDP_FRAME_MAX 512
/* A P-256 SubjectPublicKeyInfo in DER is 91 bytes; room for other
 * encodings of the same key, which ctl_tls_verify() refuses anyway. */
#define LLDP_SPKI_MAX 128
#define LLDP_SIG_MAX  CTL_TLS_SIG_MAX
/* How far a signed announcement's clock may be from the master's. */
#define LLDP_SKEW_MS 30000

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
	/* LLDP_PROBE: the master's token for this port and round; LLDP_ANNOUNCE:
	 * the token of the last probe the uplink heard (signed with the rest).
	 * 0: none. */
	uint64_t token;
	/* LLDP_ANNOUNCE */
	char host[32];
	uint32_t control_addr, guest_addr; /* host byte order */
	/* A signed announcement has all of these (spki_len > 0), an unsigned
	 * one none: the agent's TLS key (DER SubjectPublicKeyInfo), its wall
	 * clock when it signed, and the signature (lldp_sign()). */
	uint64_t time_ms;
	uint8_t spki[LLDP_SPKI_MAX];
	uint16_t spki_len;
	uint8_t sig[LLDP_SIG_MAX];
	uint16_t sig_len;
};

/* Writes the Ethernet frame for @in into @buf; returns its length, or 0 when
 * @size is too small. */
size_t lldp_encode(uint8_t *buf, size_t size, const struct lldp_info *in);

/* Decodes a frame. Returns 0; -EBADMSG for a malformed LLDP frame or one
 * that is not LLDP (a TLV that runs past the frame, an ETTM TLV of the
 * wrong length, twice or of the other kind, a signature without its key or
 * time); -ENOENT for valid LLDP that ETTM did not send. */
int lldp_decode(const uint8_t *frame, size_t len, struct lldp_info *ret);

/* Signs the announcement @info (host, addresses, source MAC, token) with @tls's
 * key at wall-clock time @now_ms: fills its key, time and signature.
 * Returns 0 or a negative errno from ctl_tls_sign(). */
int lldp_sign(struct lldp_info *info, const struct ctl_tls *tls, uint64_t now_ms);

/* Checks the announcement @info against the key fingerprint @tls_fp (hex,
 * as ctl_tls_fingerprint()) of its host's admission, at the master's
 * wall-clock time @now_ms. Returns 0 when it carries that key, a good
 * signature and a time within LLDP_SKEW_MS; otherwise -ENOKEY (unsigned),
 * -EKEYREJECTED (another key), -EBADMSG (the signature is not good) or
 * -ETIME (signed too long ago, or ahead). */
int lldp_verify(const struct lldp_info *info, const char *tls_fp, uint64_t now_ms);

/* Why lldp_verify() returned @r, for a log line. */
const char *lldp_verify_why(int r);

/* The tokens of one switch port's probes: the master accepts a probe back
 * with this round's or the last round's, so that one sent just before a
 * new round still counts. */
struct lldp_tokens {
	uint64_t now, before;
};

/* Starts a new round with the random @fresh (not 0). */
void lldp_tokens_roll(struct lldp_tokens *t, uint64_t fresh);
/* True when @token is this round's or the last's (0 never is). */
bool lldp_tokens_match(const struct lldp_tokens *t, uint64_t token);
