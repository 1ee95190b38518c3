/* The switch controller as a service of the agent (services/service.h):
 * it opens the controller when the configuration names switches, publishes
 * it for the services after it, adds its failure detector to `cluster`,
 * and answers the controller's commands. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "datapath/datapath.h"
#include "lib/log.h"
#include "services/service.h"
#include "store/store.h"
#include "switch.h"
#include "tables.h"

/* The controller, and the store it adds its failure detector to. */
struct switch_svc {
	struct swc *c;
	struct store *store;
};

static const char *off(const struct svc_env *env, const void *options)
{
	const struct sw_options *o = options;
	return o->n_switches ? NULL
	                     : "switch control is off on this host: its configuration has no "
	                       "switch.switches";
}

static json_t *failure_detector(void *userdata)
{
	return sw_failure_detector(userdata);
}

static int open_switches(struct svc_env *env, const void *options, void **ret_self,
                         char **ret_error)
{
	const struct sw_options *o = options;
	const struct dp_config *dp = env->host->datapath;
	struct sw_self self = {.control_addr = ntohl(dp->control_addr.s_addr),
	                       .guest_addr = ntohl(dp->guest_addr.s_addr)};
	snprintf(self.name, sizeof(self.name), "%s", env->host->name);
	snprintf(self.uplink_if, sizeof(self.uplink_if), "%s", dp->uplink_if);
	struct switch_svc *svc = calloc(1, sizeof(*svc));
	if (!svc)
		return -ENOMEM;
	int r = sw_open(env->loop, o, &self, env->store, &svc->c, ret_error);
	if (r < 0) {
		free(svc);
		return r;
	}
	log_info("switches: controlling %u switch(es)", o->n_switches);
	svc->store = env->store;
	store_set_cluster_extra(env->store, "failure_detector", failure_detector, svc->c);
	env->switches = svc->c;
	*ret_self = svc;
	return 0;
}

static void close_switches(void *self, void (*done)(void *arg), void *arg)
{
	struct switch_svc *svc = self;
	store_set_cluster_extra(svc->store, NULL, NULL, NULL);
	sw_close(svc->c, done, arg);
	free(svc);
}

static int handle(void *self, struct ctl_client *client, const struct ctl_request *req,
                  json_t **ret_result, char **ret_error)
{
	struct switch_svc *svc = self;
	return sw_handle_request(svc->c, client, req, ret_result, ret_error);
}

static const struct svc_command commands[] = {
    {"switches", SVC_ADMIN, handle},
    /* Each agent's own view, gathered by `switches` from the others. */
    {"switch.local", SVC_ADMIN | SVC_RELAY, handle},
    {"topology", SVC_ADMIN, handle},
    {"flows", SVC_ADMIN, handle},
#ifdef ETTM_BENCH_HOOKS
    {"switch.bench", SVC_ADMIN, handle},
#endif
    {NULL},
};

const struct service switch_service = {
    .name = "switch",
    .off = off,
    .open = open_switches,
    .close = close_switches,
    .commands = commands,
    .tables = switch_tables,
};
