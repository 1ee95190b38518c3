/* Loopback ports for the unit tests that listen (see ports.h). */
#include "ports.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define PORTS_LOW 10000u

/* The first port of the ephemeral range, 32768 if it cannot be read. */
static unsigned ephemeral_low(void)
{
	unsigned lo = 32768, hi;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f) {
		if (fscanf(f, "%u %u", &lo, &hi) != 2)
			lo = 32768;
		fclose(f);
	}
	return lo > PORTS_LOW + 1000 ? lo : 32768;
}

static int bound_on(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int loopback_ports(uint16_t *ports, unsigned n)
{
	unsigned span = ephemeral_low() - PORTS_LOW;
	unsigned start;
	if (getrandom(&start, sizeof(start), 0) != sizeof(start))
		start = (unsigned)getpid() * 2654435761u;
	int fds[64];
	unsigned got = 0;
	if (n > 64)
		return -EINVAL;
	/* Holding each port bound until all are found keeps them distinct. */
	for (unsigned i = 0; i < span && got < n; i++) {
		uint16_t port = (uint16_t)(PORTS_LOW + (start + i) % span);
		int fd = bound_on(port);
		if (fd == -EADDRINUSE)
			continue;
		if (fd < 0) {
			while (got > 0)
				close(fds[--got]);
			return fd;
		}
		fds[got] = fd;
		ports[got++] = port;
	}
	for (unsigned i = 0; i < got; i++)
		close(fds[i]);
	return got == n ? 0 : -EADDRINUSE;
}

uint16_t loopback_port(void)
{
	uint16_t port;
	int r = loopback_ports(&port, 1);
	if (r < 0) {
		fprintf(stderr, "no free loopback port: %s\n", strerror(-r));
		abort();
	}
	return port;
}
