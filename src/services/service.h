/* The service interface (DESIGN.md, "How a service plugs in"): what every
 * service of ettmd is to the agent, in the shape of BIRD's struct protocol.
 *
 * A service is one constant struct of callbacks, listed once in the agent's
 * static array (src/ettmd/services.c). The agent opens the services in the
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

#include <jansson.h>
#include <uv.h>

struct config;
struct ctl_client;
struct ctl_request;
struct datapath;
struct store;
struct store_table;
struct sw_service;
struct swc;

/* Where a command may be asked (a bit set). */
enum svc_scope {
	SVC_ADMIN = 1u << 0, /* the local control socket: ettmctl, the host's admin */
	SVC_PEER = 1u << 1,  /* the peer API: other agents */
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

/* What the agent shares with its services. The switch controller's service
 * publishes its controller in @switches when it opens, for the services
 * after it in the array. */
struct svc_env {
	uv_loop_t *loop;
	const struct config *cfg;
	const char *config_path;
	struct store *store;
	struct datapath *dp;
	struct swc *switches; /* NULL: this host controls no switch */
};

struct service {
	const char *name; /* "nat": in `ettmctl services` and log lines */
	/* NULL when the service runs on this host with @env's configuration;
	 * else why not, a sentence every command of the service answers with
	 * ("NAT is off on this host: its configuration has no
	 * nat.public-addresses"). NULL pointer: always runs. */
	const char *(*off)(const struct svc_env *env);
	/* Starts the service; *ret_self is handed back to every callback.
	 * Returns 0, or a negative errno with *ret_error; the agent then does
	 * not start. */
	int (*open)(struct svc_env *env, void **ret_self, char **ret_error);
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
	 * groups, and hands it packet-ins and read-back flows. NULL: none. */
	const struct sw_service *sw;
};

/* The services of a running agent: the static array, and each one's self. */
struct svc_set {
	const struct service *const *list; /* NULL-terminated */
	size_t n;
	void **self;         /* per service; NULL where it is off or not open yet */
	const char **off;    /* per service: why it is off, or NULL */
	struct svc_cmd_ref *index; /* every command, sorted by name */
	size_t n_index;
	size_t n_open;
	struct svc_env *env;
	void (*closed)(void *arg);
	void *closed_arg;
	size_t closing; /* services whose close has not completed */
};

/* Prepares @set for @list: indexes every command and registers every
 * table with the store. Fails with -EEXIST and *ret_error when two services
 * (or two entries) claim one command, or a table cannot be registered.
 * Opens nothing. */
int svc_set_init(struct svc_set *set, const struct service *const *list, char **ret_error);

/* Opens every service that is not off, in the array's order. Returns 0, or
 * the first failure with *ret_error ("nat: ..."); the services opened
 * before it stay open (close the set). */
int svc_set_open(struct svc_set *set, struct svc_env *env, char **ret_error);

/* Closes the open services in reverse order; @done(@arg) once all have
 * completed. */
void svc_set_close(struct svc_set *set, void (*done)(void *arg), void *arg);
void svc_set_free(struct svc_set *set);

/* Answers @req asked on a socket of @scope: the owner's handler, its "off"
 * reason (-EOPNOTSUPP) when the owner does not run on this host, or
 * "unknown command" (-EOPNOTSUPP) when no service owns the command for
 * that scope. Returns as svc_handler_fn. */
int svc_dispatch(struct svc_set *set, unsigned scope, struct ctl_client *client,
                 const struct ctl_request *req, json_t **ret_result, char **ret_error);

/* The self of the service named @name when it is open, else NULL. */
void *svc_self(const struct svc_set *set, const char *name);

/* [{name, state: "on"|"off", reason?, status?}, ...] in the array's order. */
json_t *svc_set_status(const struct svc_set *set);
