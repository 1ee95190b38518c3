/* The AEE's links: kernel forwarding between the guest link and the uplink.
 *
 * The guest keeps its /16 and believes its peers are on-link; the AEE
 * answers ARP for them by proxy on the guest link, and for its guest on the
 * uplink, and routes between the two (DESIGN.md, "One host"). */
#pragma once

#include "datapath.h"

/* Brings both links up, puts the control address on the uplink, routes the
 * guest's address to the guest link, with @nat enabled routes the rest to
 * the ISP gateway, and turns on IPv4 forwarding and immediate proxy ARP on
 * both links. Idempotent: running it again on a set-up
 * AEE changes nothing and cuts no connection. Returns 0, or a negative errno
 * and a newly allocated message in *ret_error (if not NULL). */
int dp_link_setup(const struct dp_config *cfg, const struct dp_nat *nat, char **ret_error);

/* The unmanaged devices' link (docs/devices.md): with @devices enabled, the
 * veth pair DP_DEVICE_PEER/DP_DEVICE_IF (the latter wearing the uplink's MAC,
 * with proxy ARP), a host route and a permanent neighbour entry on it for
 * each device whose address is known, and no longer those of @old (what the
 * last call set up); not enabled, the pair is removed. Idempotent. Returns 0,
 * or a negative errno and a message in *ret_error. */
int dp_link_devices(const struct dp_devices *old, const struct dp_devices *devices,
                    char **ret_error);

/* NAT's conntrack UDP timers in this (the AEE's) network namespace: 120 s
 * for a flow the peer has not answered, 300 s once it has (RFC 4787 REQ-5).
 * Returns 0, or a negative errno and a message in *ret_error. */
int dp_link_nat_timers(char **ret_error);
