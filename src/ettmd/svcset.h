/* The running set of the agent's services (services/service.h): the
 * command index, the tables, the datapath's stand-ins, opening and closing
 * in order, and dispatch by lookup. Part of the agent's wiring: it meets
 * the store (tables), the datapath (stand-ins) and the switch controller
 * (switch parts), which the services' interface itself does not. */
#pragma once

#include "services/service.h"

/* The services of a running agent: the static array, and each one's self. */
struct svc_set {
	const struct svc_entry *list; /* ends with {NULL} */
	size_t n;
	struct svc_ctx *ctx;       /* per service: its options and the environment */
	void **self;               /* per service; NULL where it is off or not open yet */
	const char **off;          /* per service: why it is off, or NULL */
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
int svc_set_init(struct svc_set *set, const struct svc_entry *list, char **ret_error);

/* Binds @set to @env and to @config, the agent's configuration the
 * entries' offsets point into, and adds every service's datapath stand-in
 * to @env->dp (when not NULL) in the array's order. Call it once, before
 * svc_set_open(). Returns 0 or a negative errno with *ret_error. */
int svc_set_boot(struct svc_set *set, struct svc_env *env, const void *config, char **ret_error);

/* Opens every service that is not off (judged just before its turn, so
 * what the services before it published counts), in the array's order,
 * and hands the switch controller their switch parts. Returns 0, or the first failure
 * with *ret_error ("nat: ..."); the services opened before it stay open
 * (close the set). */
int svc_set_open(struct svc_set *set, char **ret_error);

/* Closes the open services in reverse order; @done(@arg) once all have
 * completed. */
void svc_set_close(struct svc_set *set, void (*done)(void *arg), void *arg);
void svc_set_free(struct svc_set *set);

/* Answers @req asked by a client with the scopes @scope (a bit set: a
 * command is answered when its scopes meet them): the owner's handler, its "off"
 * reason (-EOPNOTSUPP) when the owner does not run on this host, or
 * "unknown command" (-EOPNOTSUPP) when no service owns the command for
 * that scope. Returns as svc_handler_fn. */
int svc_dispatch(struct svc_set *set, unsigned scope, struct ctl_client *client,
                 const struct ctl_request *req, json_t **ret_result, char **ret_error);

/* The scopes (enum svc_scope bits) in which the command @name is
 * accepted; 0 when no service owns it. */
unsigned svc_command_scope(const struct svc_set *set, const char *name);

/* The self of the service named @name when it is open, else NULL. */
void *svc_self(const struct svc_set *set, const char *name);

/* [{name, state: "on"|"off", reason?, status?}, ...] in the array's order. */
json_t *svc_set_status(const struct svc_set *set);
