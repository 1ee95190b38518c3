/* Unmanaged devices (docs/devices.md): printers, phones, visitors that run
 * no agent. They are allowed by policy (the store's devices table, by MAC),
 * never by trust. The leader keeps one member as their manager (the store's
 * manager row): the switches steer every frame of an allowed device to the
 * manager's AEE, which forwards it under its guest's rules, and steer
 * what is for the device from there to it. The master learns where each
 * device sits, and its IPv4 address, from the frames it sends.
 *
 * The pure parts (flows, the choice of manager, learning, the datapath's
 * view) take the store's state and are tested without root; devices.c is
 * the service on the agent's loop. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "datapath/datapath.h"
#include "store/tables.h"
#include "switch/tables.h"
#include "switch/switch.h"

/* Priorities. Table 0 (admission): a device's frames at its own port enter
 * table 1 (copied to the master while its address is unknown); its ARP
 * only from the address the store knows, other ARP goes to the master
 * alone, which learns the new address from it (so the manager never
 * answers, by proxy, a device's ARP for its own new address). Anywhere
 * else its frames go to the master only, which learns where the device
 * is. Table 1: from a device, above every other flow, to the manager; ARP
 * for its address to the manager; to the device. */
#define DEV_PRIO_SEEN    1500 /* table 0: eth_src, any port: to the master */
#define DEV_PRIO_ADMIT   2000 /* table 0: its port and MAC: table 1 */
#define DEV_PRIO_LEARN   2010 /* table 0: its ARP at its port: to the master */
#define DEV_PRIO_ARP_OWN 2020 /* table 0: its ARP from its known address: table 1 */
#define DEV_PRIO_FROM    2500 /* table 1: eth_src: to the manager */
#define DEV_PRIO_ARP     2100 /* table 1: ARP request for its address: to the manager */
#define DEV_PRIO_TO      2000 /* table 1: eth_dst: to the device */

/* The manager's location when the manager row names an admitted, located
 * member, or NULL. */
const struct switch_location *devices_manager_location(const struct store_state *st);

/* The devices' flows for switch @dpid (a struct sw_service flows body).
 * Returns 0 or -ENOMEM. */
int devices_flows(const struct store_state *st, uint64_t dpid, struct sw_flows *out);

/* Whether member @m may manage the devices now, as the leader judges it
 * (reachable lately). */
typedef bool (*devices_alive_fn)(void *userdata, const struct store_member *m);

/* The member that should manage the devices: the current manager while it
 * is admitted, located and alive; else the lowest id that is; NULL when
 * none is. */
const struct store_member *devices_pick_manager(const struct store_state *st,
                                                devices_alive_fn alive, void *userdata);

/* When the leader last reached each member (loop time, ms), one entry per
 * member whatever its id, and when it became leader (@grace_ms): from then
 * on every member counts as heard once, so none is judged gone before it
 * had dead-after to answer. */
struct devices_heard_member {
	uint64_t id;
	uint64_t ms;
};

struct devices_heard {
	struct devices_heard_member *v; /* growable (lib/array.h) */
	size_t n, cap;
	uint64_t grace_ms;
};

/* Member @id answered at @now_ms. */
void devices_heard_note(struct devices_heard *h, uint64_t id, uint64_t now_ms);
/* Whether member @id was heard (or the grace began) less than
 * @dead_after_ms before @now_ms. */
bool devices_heard_alive(const struct devices_heard *h, uint64_t id, uint64_t now_ms,
                         unsigned dead_after_ms);
/* NULL-accepting; leaves @h empty. */
void devices_heard_free(struct devices_heard *h);

/* What a frame that switch @dpid sent up from port @in_port teaches about
 * the device that sent it: true, with the put to propose in *ret_cmd, when
 * the sender is an allowed device and its port, switch or IPv4 address (ARP
 * sender, IPv4 source) differ from the store's; false otherwise. */
bool devices_learn(const struct store_state *st, uint64_t dpid, uint32_t in_port,
                   const uint8_t *frame, size_t len, uint64_t now_ms, struct store_cmd *ret_cmd);

/* The devices' view of the datapath (docs/devices.md): on the agent chosen
 * as their manager, frames from the devices' MACs leave the uplink for a
 * veth pair, enter the IP stack on its far side (DEVICES_IF, wearing the
 * uplink's MAC) and are forwarded under the guest's rules; what is routed to
 * a device goes back out of the uplink. Addresses in network byte order. */
#define DEVICES_IF   "dv1" /* the devices' side of the IP stack */
#define DEVICES_PEER "dv0" /* its peer: frames to and from the uplink */

struct devices_view_device {
	uint8_t mac[6];
	struct in_addr addr; /* 0.0.0.0: not known yet */
};

struct devices_view {
	bool enabled;       /* this AEE is the devices' manager */
	uint8_t own_mac[6]; /* the uplink's */
	unsigned n;
	size_t cap;
	struct devices_view_device *v; /* growable (lib/array.h): every device */
};

/* What the AEE of host @self forwards for the devices (enabled when the
 * manager row names it), into @ret (its old contents ignored; free with
 * devices_view_free(), whatever the result); @own_mac is its uplink's MAC.
 * Returns 0 or -ENOMEM. */
int devices_datapath(const struct store_state *st, const char *self, const uint8_t own_mac[6],
                     struct devices_view *ret);

/* Frees @v's devices; NULL-accepting; leaves @v with none. */
void devices_view_free(struct devices_view *v);

/* ---- ruleset.c: pure ---- */

struct dp_fragment;

/* The devices' fragment of the datapath for @d into @out: the link
 * DEVICES_PEER/DEVICES_IF (present only while @d is enabled, so a former
 * manager's is removed) with a route for each device whose address is
 * known; and, enabled, their forwarding at DP_FORWARD_OUT and
 * DP_FORWARD_IN, their anti-spoofing at DP_INPUT, the steering of their
 * frames at DP_INGRESS and the netdev chain to_uplink on DEVICES_PEER.
 * Returns 0 or a negative errno. */
int devices_ruleset_build(const struct dp_config *cfg, const struct devices_view *d,
                          struct dp_fragment *out);

/* A datapath source (dp_build_fn) for the agent's start, before the
 * service is open (@userdata unused): not the manager, so a link left by a
 * former run is removed. devices_open() replaces it. */
int devices_fragment_idle(void *userdata, const struct dp_config *cfg, struct dp_fragment *out);

/* The name of the devices' datapath source. */
#define DEVICES_DP_SOURCE "devices"

/* ---- devices.c: the service ---- */

struct devices;
struct store;
struct swc;
struct datapath;

/* Starts the service for host @name: the manager check while this agent
 * leads (a manager silent for @dead_after_ms is replaced), learning as
 * master, and the datapath when this host manages. Returns 0 or a negative
 * errno. */
int devices_open(uv_loop_t *loop, const char *name, unsigned dead_after_ms, struct store *store,
                 struct swc *switches, struct datapath *dp, struct devices **ret);
/* Stops the service; frees @d and calls @done(@arg) (may be NULL) once its
 * last handle is closed. */
void devices_close(struct devices *d, void (*done)(void *arg), void *arg);

/* The devices' part in the switches (their flows, learning from
 * packet-ins as master), called with the struct devices of devices_open(). */
extern const struct sw_service devices_sw;

/* Control requests "devices", "devices.allow", "devices.remove"; -ENOENT
 * (no error) for others. */
struct ctl_client;
struct ctl_request;
int devices_handle_request(struct devices *d, struct ctl_client *client,
                           const struct ctl_request *req, json_t **ret_result, char **ret_error);

struct service;
/* The devices as a service of the agent (service.c). */
extern const struct service devices_service;
