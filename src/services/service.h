/* The service interface (DESIGN.md, "How a service plugs in"): what every
 * service of ettmd is to the agent, in the shape of BIRD's struct protocol.
 *
 * A service is one constant struct of callbacks, listed once in the agent's
 * static array (src/ettmd/services.c). This header is types only: the
 * agent runs the services (src/ettmd/svcset.h). It opens the services in the
 * array's order, answers each request by looking its command up in the
 * commands the services declare (each command has exactly one owner, and a
 * scope that says on which socket it may be asked), registers the store
 * tables they own on every host, hands their switch part to the switch
 * controller and their datapath part to the datapath, and closes them in
 * the reverse order. The store, the datapath and the switch controller know
 * no service's types; services never call each other, they meet in the
 * store. docs/design.md, "Adding a service", shows the steps. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

struct ctl_client;
struct ctl_request;
struct datapath;
struct dp_config;
struct dp_fragment;
struct store;
struct store_table;
struct sw_service;
struct swc;

/* Where a command may be asked (a bit set), and so who may ask it. The
 * peer API grants each connection the scopes its source earns
 * (src/ettmd/peers.h, docs/control-protocol.md, "Who may ask what"). */
enum svc_scope {
	SVC_ADMIN = 1u << 0, /* the local control socket: ettmctl, the host's admin */
	SVC_PEER = 1u << 1,  /* the peer API, from a member of the store: the protocols */
	/* The peer API, from an admitted agent acting for its own admin (a
	 * command relayed to the leader, a delegated recovery, a view an
	 * admin command gathers from every member). */
	SVC_RELAY = 1u << 2,
	/* The peer API, from anyone on the control range, rate-limited per
	 * source: how a host that is no member yet joins (store.join, the
	 * join protocol of docs/trust.md). */
	SVC_JOIN = 1u << 3,
	SVC_BOTH = SVC_ADMIN | SVC_PEER,
};

/* Answers one request, as ctl_handler_fn does: 0 with *ret_result (may stay
 * NULL for {}), a negative errno with *ret_error (error_set()), or
 * CTL_DEFERRED after ctl_defer(). @self is what the service's open()
 * returned. */
typedef int (*svc_handler_fn)(void *self, struct ctl_client *client, const struct ctl_request *req,
                              json_t **ret_result, char **ret_error);

struct svc_command {
	const char *name; /* the request's "cmd", exactly */
	unsigned scope;   /* enum svc_scope bits */
	svc_handler_fn handle;
};

/* Who this host is, as the agent's configuration says. */
struct svc_host {
	const char *name;
	uint16_t id;
	const char *state_dir;
	const char *guest_netns;     /* NULL: not known */
	const char *measured_config; /* the configuration as the TPM measures it */
	const struct dp_config *datapath;
	uint16_t raft_port, peer_port; /* on the datapath's control address */
};

/* What the agent shares with its services. A service that provides one of
 * the shared parts publishes it here when it opens, for the services after
 * it in the array: the store's service sets @store, the switch
 * controller's sets @switches. */
struct svc_env {
	uv_loop_t *loop;
	const struct svc_host *host;
	struct datapath *dp;
	struct store *store;
	struct swc *switches; /* NULL: this host controls no switch */
};

struct service {
	const char *name; /* "nat": in `ettmctl services` and log lines */
	/* NULL when the service runs on this host with @env's configuration;
	 * else why not, a sentence every command of the service answers with
	 * ("NAT is off on this host: its configuration has no
	 * nat.public-addresses"). NULL pointer: always runs. */
	const char *(*off)(const struct svc_env *env, const void *options);
	/* Starts the service; *ret_self is handed back to every callback.
	 * Returns 0, or a negative errno with *ret_error; the agent then does
	 * not start. */
	int (*open)(struct svc_env *env, const void *options, void **ret_self, char **ret_error);
	/* Stops the service and frees @self; calls @done(@arg) exactly once,
	 * when its last handle is closed (possibly before close returns).
	 * NULL: nothing to stop. */
	void (*close)(void *self, void (*done)(void *arg), void *arg);
	/* Its state for `ettmctl status` and `ettmctl services`; NULL: none. */
	json_t *(*status)(void *self);
	/* The commands it owns, ending with {NULL}; NULL: none. */
	const struct svc_command *commands;
	/* The store tables it owns, NULL-terminated; registered on every host,
	 * whether or not the service runs there (every host replicates every
	 * table). NULL: none. */
	const struct store_table *const *tables;
	/* Its part in the switches: the controller computes its flows and
	 * groups, and hands it packet-ins and read-back flows (called with
	 * @self). Registered once the service is open, when this host has
	 * switches; removed before it closes. NULL: none. */
	const struct sw_service *sw;
	/* Its part in the datapath until it opens, and for good when it is
	 * off: the fragment that stands in for it under the service's name.
	 * Every service's stand-in is added before the first reconciliation,
	 * so the fragments compose in the array's order; an open service
	 * replaces it, keeping its place, with dp_set_source() under its own
	 * name. NULL: none. */
	int (*datapath_boot)(const struct svc_env *env, const void *options,
	                     const struct dp_config *cfg, struct dp_fragment *out);
};

/* One line of the agent's array: a service and where its options are in
 * the agent's configuration (SVC_NO_OPTIONS: it has none). */
#define SVC_NO_OPTIONS ((ptrdiff_t)-1)
struct svc_entry {
	const struct service *service;
	ptrdiff_t options; /* offsetof() in the configuration */
};
