/* The store as a service of the agent (services/service.h): it opens the
 * replicated store for this host, publishes it for the services after it,
 * and answers the store.* and cluster* commands. */
#include <arpa/inet.h>
#include <stdio.h>

#include "datapath/datapath.h"
#include "lib/log.h"
#include "services/service.h"
#include "store.h"

static int open_store(struct svc_env *env, const void *options, void **ret_self, char **ret_error)
{
	const struct svc_host *h = env->host;
	struct store_options o = *(const struct store_options *)options;
	char addr[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &h->datapath->control_addr, addr, sizeof(addr));
	o.id = h->id;
	snprintf(o.name, sizeof(o.name), "%s", h->name);
	snprintf(o.raft_address, sizeof(o.raft_address), "%s:%u", addr, h->raft_port);
	snprintf(o.peer_address, sizeof(o.peer_address), "%s:%u", addr, h->peer_port);
	snprintf(o.dir, sizeof(o.dir), "%.4000s/store", h->state_dir);
	/* No seeds to join through: this host is a cluster of its own. */
	if (o.n_seeds == 0)
		o.bootstrap = true;
	struct store *s;
	int r = store_open(env->loop, &o, &s, ret_error);
	if (r < 0)
		return r;
	log_info("store: raft on %s, peer API on %s, %s", o.raft_address, o.peer_address,
	         store_raft_version());
	env->store = s;
	*ret_self = s;
	return 0;
}

static void close_store(void *self, void (*done)(void *arg), void *arg)
{
	store_close(self, done, arg);
}

static json_t *status(void *self)
{
	return store_status(self);
}

static int handle(void *self, struct ctl_client *client, const struct ctl_request *req,
                  json_t **ret_result, char **ret_error)
{
	return store_handle_request(self, client, req, ret_result, ret_error);
}

/* Who may ask what on the peer API (services/service.h, enum svc_scope):
 * a host that is no member yet may say hello and join; members ask the
 * protocols' own commands; what an agent asks for its admin (a proposal
 * forwarded to the leader, a removal relayed to it, a delegated recovery
 * and the resets it sends, the leader's view for `cluster`) is a relay.
 * The reads and the other admin commands are the local socket's only. */
static const struct svc_command commands[] = {
    {"store.hello", SVC_ADMIN | SVC_JOIN, handle},
    {"store.join", SVC_ADMIN | SVC_JOIN, handle},
    {"store.leave", SVC_ADMIN | SVC_RELAY, handle},
    {"store.propose", SVC_ADMIN | SVC_RELAY, handle},
    {"store.barrier", SVC_ADMIN | SVC_PEER, handle},
    {"store.dump", SVC_ADMIN, handle},
    {"store.status", SVC_ADMIN | SVC_RELAY, handle},
    {"store.reset", SVC_ADMIN | SVC_RELAY, handle},
    {"cluster", SVC_ADMIN, handle},
    {"cluster.conflicts", SVC_ADMIN, handle},
    {"cluster.remove", SVC_ADMIN | SVC_RELAY, handle},
    {"cluster.recover", SVC_ADMIN | SVC_RELAY, handle},
#ifdef ETTM_BENCH_HOOKS
    {"store.bench", SVC_ADMIN, handle},
#endif
    {NULL},
};

const struct service store_service = {
    .name = "store",
    .open = open_store,
    .close = close_store,
    .status = status,
    .commands = commands,
    .tables = store_core_tables,
};
