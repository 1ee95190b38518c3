/* The control plane closed to guests and devices (DESIGN.md, "Who may
 * speak on the control plane"; docs/control-protocol.md, "Who may ask
 * what"): this AEE drops what its guest, and the unmanaged devices it
 * manages, send to any agent's control address or to a switch's address,
 * and what they send to this agent's own Raft and peer API ports. Only
 * the uplink (other agents, a host that joins) and the agent itself reach
 * those ports. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "services/service.h"

struct dp_config;
struct dp_fragment;
struct store_state;

/* At most this many addresses are guarded (members and switches). */
#define CONTROL_ADDRS_MAX 512

/* What the fragment closes. */
struct control_view {
	uint32_t addrs[CONTROL_ADDRS_MAX]; /* network order; each once */
	size_t n_addrs;
	uint16_t ports[2]; /* this agent's Raft and peer API ports; 0: none */
};

/* Adds @addr (network order) to @v once; false when @v is full. */
bool control_view_add(struct control_view *v, uint32_t addr);

/* The store's members' Raft and peer addresses, into @v. */
void control_view_members(struct control_view *v, const struct store_state *st);

/* The fragment for @v: a guard (nothing the guest or a forwarded link
 * sends out of the uplink to one of @v's addresses) and, in the input
 * hook, a drop of TCP to @v's ports from every link but the uplink and
 * loopback, counted in "control_refused". Pure. Returns 0 or a negative
 * errno. */
int control_ruleset_build(const struct dp_config *cfg, const struct control_view *v,
                          struct dp_fragment *out);

extern const struct service control_service;
