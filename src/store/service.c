/* The store as a service of the agent (services/service.h): it opens the
 * replicated store for this host, publishes it for the services after it,
 * and answers the store.* and cluster* commands. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datapath/datapath.h"
#include "datapath/fragment.h"
#include "lib/error.h"
#include "lib/log.h"
#include "services/service.h"
#include "store.h"

/* The service's self: the store, and the datapath it holds. */
struct store_svc {
	struct store *store;
	struct datapath *dp;
};

/* The store's part in the datapath: a fragment of nothing but a hold,
 * while this replica rejoins as a fresh one and its state is partial (a
 * newer generation: the survivors of a fiat, the voters that return after
 * it). Built from that state, the services' rules would drop what this
 * host's AEE must pass on meanwhile (another host's NAT replies). */
static int hold_build(void *userdata, const struct dp_config *cfg, struct dp_fragment *out)
{
	(void)cfg;
	out->hold = store_catching_up(userdata);
	return 0;
}

static void caught_up(void *userdata)
{
	struct datapath *dp = userdata;
	if (dp_changed(dp) < 0)
		log_error("store: datapath: %s", dp->error ? dp->error : "failed");
}

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
	struct store_svc *w = malloc(sizeof(*w));
	if (!w || (r = dp_set_source(env->dp, "store", hold_build, s)) < 0) {
		free(w);
		store_close(s, NULL, NULL);
		return error_set(ret_error, w ? r : -ENOMEM, "the store's datapath source: %s",
		                 strerror(w ? -r : ENOMEM));
	}
	*w = (struct store_svc){s, env->dp};
	store_set_caught_up_cb(s, caught_up, env->dp);
	env->store = s;
	*ret_self = w;
	return 0;
}

static void close_store(void *self, void (*done)(void *arg), void *arg)
{
	struct store_svc *w = self;
	store_set_caught_up_cb(w->store, NULL, NULL);
	dp_remove_source(w->dp, "store");
	store_close(w->store, done, arg);
	free(w);
}

static json_t *status(void *self)
{
	return store_status(((struct store_svc *)self)->store);
}

static int handle(void *self, struct ctl_client *client, const struct ctl_request *req,
                  json_t **ret_result, char **ret_error)
{
	return store_handle_request(((struct store_svc *)self)->store, client, req, ret_result,
	                            ret_error);
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
