#pragma once

#include <stdint.h>

/* Fills @ports with @n distinct loopback TCP ports for a test's own
 * listeners. They lie below the kernel's ephemeral range, which the
 * outgoing connections of tests running in parallel draw from (a port
 * found free there a moment ago may be a client's by the time the test
 * listens on it); each is checked free by binding it, from a random start
 * so that parallel tests seldom try the same ones. Returns 0, or -errno. */
int loopback_ports(uint16_t *ports, unsigned n);

/* One such port. Aborts the test if none is free. */
uint16_t loopback_port(void);
