/* The kernel's connection tracking table, read through ctnetlink (libmnl)
 * in the calling process's network namespace: what services such as NAT
 * count of their translated flows. IPv4 only. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One direction of a connection. @has_port: @sport/@dport are the
 * protocol's ports (TCP, UDP, UDP-Lite, SCTP, DCCP); @has_id: @id is the
 * ICMP echo id. Addresses in network byte order, ports and ids in host
 * order. */
struct dp_ct_tuple {
	struct in_addr src, dst;
	uint8_t proto;
	bool has_port, has_id;
	uint16_t sport, dport, id;
};

struct dp_ct_entry {
	struct dp_ct_tuple orig, reply;
};

/* True when @e is one the caller counts. */
typedef bool (*dp_ct_match_fn)(void *userdata, const struct dp_ct_entry *e);

/* Counts the IPv4 entries @match accepts into *ret_count. Returns 0 or a
 * negative errno (-EPROTONOSUPPORT when the kernel has no ctnetlink). */
int dp_conntrack_count(dp_ct_match_fn match, void *userdata, unsigned long *ret_count);

/* How many entries the table holds, every family and protocol (the
 * namespace's nf_conntrack_count): a cheap upper bound of any count above,
 * to read often. Returns 0 or a negative errno. */
int dp_conntrack_total(unsigned long *ret_count);

/* Parses one IPCTNL_MSG_CT_NEW message of @len bytes (header included), as
 * a dump returns them, into *@ret. Returns 0, -EBADMSG when it is cut or
 * malformed, or -ENOENT when it is not an IPv4 entry with both tuples. */
int dp_conntrack_parse(const void *msg, size_t len, struct dp_ct_entry *ret);
