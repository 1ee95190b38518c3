/* Packets the kernel hands to the agent for a verdict (NFQUEUE): the
 * first packet of a flow that only the agent can judge, e.g. by the
 * program in the guest that owns it (docs/policy.md).
 *
 * This kernel has no nftables `queue` (FACTS.md), so packets are steered
 * to a queue by iptables-nft rules in a chain of the agent's own
 * (DP_QUEUE_CHAIN, table mangle, hook forward: before the agent's
 * nftables table), with --queue-bypass: while no agent reads the queue,
 * its packets go on to the nftables rules. The queue's socket is read by
 * the caller's loop (dp_queue_fd()). */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define DP_QUEUE_CHAIN "ETTM-QUEUE"

/* What the steering sends to a queue: the packets of every flow whose
 * original source (or, with @reply, reply source) is @addr and whose ct
 * mark is not @unless_ct_mark (the flows already judged). With @stamped,
 * only those that come in by @iif from @from/@from_len with @stamp in the
 * two low bits of their DSCP; with @skip too, all of those, which are then
 * not queued by the rules after (@addr, @reply and @queue unused). */
struct dp_steer {
	struct in_addr addr;
	bool reply;
	uint32_t unless_ct_mark;
	uint16_t queue;
	bool stamped, skip;
	uint8_t stamp, from_len;
	struct in_addr from;
	char iif[16];
};

/* @v's @n rules as iptables-restore input for DP_QUEUE_CHAIN, into @f. */
void dp_steer_render(const struct dp_steer *v, size_t n, FILE *f);

/* Makes DP_QUEUE_CHAIN hold exactly @v's @n rules (none: empty), with the
 * jump to it from mangle FORWARD, in the caller's network namespace.
 * Returns 0 or a negative errno with *@ret_error (iptables' words). */
int dp_steer(const struct dp_steer *v, size_t n, char **ret_error);

struct dp_queue;

/* One queued packet, its addresses and ports (0 for a protocol without),
 * its TOS byte, and the interface it came in by (0: not known). */
struct dp_queued {
	uint32_t id;
	uint8_t proto, tos;
	struct in_addr src, dst;
	uint16_t sport, dport; /* host byte order */
	uint32_t indev;
};

/* Binds the queue @num (copying each packet's first 128 bytes: headers
 * are all that is judged). Returns 0 or a negative errno. */
int dp_queue_open(uint16_t num, struct dp_queue **ret);
void dp_queue_close(struct dp_queue *q);

/* The socket to poll for readability. */
int dp_queue_fd(const struct dp_queue *q);

/* Reads what is queued without blocking and calls @fn for each packet;
 * @fn must give each a verdict (dp_queue_verdict()). A packet that is not
 * IPv4 (or too short to show its ports) is dropped here. Returns the
 * number of packets read or a negative errno. */
int dp_queue_read(struct dp_queue *q, void (*fn)(void *userdata, const struct dp_queued *pkt),
                  void *userdata);

/* Accepts (with the meta mark @mark, 0: none) or drops packet @id. */
int dp_queue_verdict(struct dp_queue *q, uint32_t id, bool accept, uint32_t mark);

/* ---- packets the kernel logs (nftables `log group N`) ---- */

struct dp_log;

/* Binds the nflog group @group, each packet delivered as it is logged
 * (its first 128 bytes). Returns 0 or a negative errno. */
int dp_log_open(uint16_t group, struct dp_log **ret);
void dp_log_close(struct dp_log *l);
int dp_log_fd(const struct dp_log *l);

/* Reads what is logged without blocking and calls @fn with each packet's
 * prefix ("" when it has none) and its addresses and ports (id 0). Returns
 * the number of packets read or a negative errno. */
int dp_log_read(struct dp_log *l,
                void (*fn)(void *userdata, const char *prefix, const struct dp_queued *pkt),
                void *userdata);
