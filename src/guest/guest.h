/* Looking into the guest (DESIGN.md, "One host"): the AEE reads the guest's
 * sockets from inside the guest's network namespace with sock_diag, so
 * services can act on what the guest's applications do (a server that
 * starts listening) rather than on ports an admin typed in. */
#pragma once

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_LISTENERS_MAX 256

struct guest_listener {
	uint8_t proto; /* 6 TCP (listening), 17 UDP (bound, unconnected) */
	uint16_t port;
	struct in_addr addr; /* 0.0.0.0 for any */
};

struct guest;

/* Opens a sock_diag socket inside the network namespace at @netns_path
 * (e.g. /run/netns/NAME), then returns to the caller's namespace. Returns 0
 * or a negative errno. */
int guest_open(const char *netns_path, struct guest **ret);
void guest_close(struct guest *g);

/* The guest's IPv4 TCP listeners and bound UDP sockets, at most @max into
 * @out. Returns how many, or a negative errno. */
int guest_listeners(struct guest *g, struct guest_listener *out, size_t max);
