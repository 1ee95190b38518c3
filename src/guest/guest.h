/* Looking into the guest (DESIGN.md, "One host"): the AEE reads the guest's
 * sockets from inside the guest's network namespace with sock_diag, so
 * services can act on what the guest's applications do (a server that
 * starts listening) rather than on ports an admin typed in. */
#pragma once

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

struct guest_listener {
	uint8_t proto; /* 6 TCP (listening), 17 UDP (bound, unconnected) */
	uint16_t port;
	struct in_addr addr; /* 0.0.0.0 for any */
};

struct guest;

/* Opens a sock_diag socket inside the network namespace at @netns_path
 * (e.g. /run/netns/NAME), made by a short-lived thread that enters it, so
 * the caller's thread never changes namespace. Returns 0 or a negative
 * errno. */
int guest_open(const char *netns_path, struct guest **ret);
void guest_close(struct guest *g);

/* The guest's IPv4 TCP listeners and bound UDP sockets, all of them, in a
 * newly allocated array (*@ret_v, free(); NULL when there are none) of
 * *@ret_n. Returns 0 or a negative errno. */
int guest_listeners(struct guest *g, struct guest_listener **ret_v, size_t *ret_n);

/* ---- who owns a flow (docs/policy.md, "Programs and users") ---- */

/* The guest's socket of one flow, as the AEE sees the flow: its local
 * address and port in the guest and the far end's. */
struct guest_flow {
	uint8_t proto; /* 6 TCP, 17 UDP */
	struct in_addr local, remote;
	uint16_t local_port, remote_port; /* host byte order */
};

struct guest_owner {
	uint32_t uid;
	uint64_t inode; /* the socket's; 0 when it has none (e.g. TIME_WAIT) */
};

/* The owner of the guest's socket for @f, by the kernel's own lookup (a
 * connected socket, else the listener or the unconnected UDP socket on
 * the local port). Returns 0, -ENOENT when the guest has no such socket,
 * or a negative errno. */
int guest_flow_owner(struct guest *g, const struct guest_flow *f, struct guest_owner *ret);

/* Where the last socket was found: the process, and its descriptor. */
struct guest_hint {
	int pid; /* 0: none */
	int fd;  /* -1: none */
};

/* The executable of a process in @g's network namespace that holds the socket @inode, into
 * @ret_path (of @size): found by reading the processes' descriptors in /proc, where @hint says
 * first (a program that opens many flows holds the next one too, often at the same descriptor),
 * and where it was found left in *@hint. Returns 0, -ENOENT when no process holds it (any more),
 * or a negative errno. */
int guest_socket_program(struct guest *g, uint64_t inode, struct guest_hint *hint, char *ret_path,
                         size_t size);

/* ---- the guest's ephemeral ports (docs/nat.md, "Mapping and filtering
 * behaviour") ----
 *
 * RFC 4787 REQ-1 asks for endpoint-independent mapping: one internal
 * address and port keeps one external port whatever the destination. The
 * kernel's SNAT keeps a source port that is inside the rule's range and
 * still unique, so when every ephemeral port the guest picks lies in this
 * host's NAT blocks, the public port is the guest's own port for every
 * destination. */

struct guest_port_block {
	uint16_t start, size;
};

/* "LO HI\n", with its NUL, at most. */
#define GUEST_PORT_RANGE_MAX 13

/* The values for the guest's net.ipv4.ip_local_port_range ("LO HI\n": from
 * the lowest block's first port to the highest block's last) into
 * @ret_range and net.ipv4.ip_local_reserved_ports (the gaps between
 * @blocks, "A-B,C-D\n", or "\n" when there are none), newly allocated to
 * fit, into *@ret_reserved (free()). @blocks (@n of them, any order) must
 * not overlap; the port space bounds how many there can be. Returns 0,
 * -EINVAL (no block, an empty one, overlapping or past port 65535) or
 * -ENOMEM. */
int guest_ports_render(const struct guest_port_block *blocks, size_t n,
                       char ret_range[GUEST_PORT_RANGE_MAX], char **ret_reserved);

/* Sets the guest's ephemeral ports to @blocks (see guest_ports_render())
 * inside the network namespace at @netns_path, from a short-lived thread.
 * Returns 0 or a negative errno; on failure *@ret_failed (if not NULL) names
 * the file that could not be written (or the namespace). The kernel refuses
 * a range starting below the guest's net.ipv4.ip_unprivileged_port_start
 * (-EINVAL). */
int guest_set_local_ports(const char *netns_path, const struct guest_port_block *blocks, size_t n,
                          const char **ret_failed);
