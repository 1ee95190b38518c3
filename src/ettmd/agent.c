/* The agent's own commands: `status` (this host, its datapath, its store,
 * its attestation) and `services` (every service, on or off, and why). */
#include "agent.h"

#include <errno.h>
#include <stddef.h>
#include <unistd.h>

#include "api/tls.h"
#include "lib/error.h"
#include "store/store.h"
#include "trust/attest.h"

static double uptime_seconds(const struct agent *a)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - a->started.tv_sec) +
	       (double)(now.tv_nsec - a->started.tv_nsec) / 1e9;
}

static json_t *datapath_status(struct agent *a)
{
	struct dp_counter counters[DP_COUNTER_MAX];
	json_t *cs = json_object();
	int r = dp_read_counters(&a->dp, counters);
	for (int i = 0; r == 0 && i < DP_COUNTER_MAX; i++)
		json_object_set_new(cs, dp_counter_name(i),
		                    json_pack("{s:I, s:I}", "packets",
		                              (json_int_t)counters[i].packets, "bytes",
		                              (json_int_t)counters[i].bytes));
	const char *state = a->dp.ok ? "ok" : "error";
	const char *error = a->dp.error;
	if (a->dp.ok && r < 0) {
		state = "error";
		error = r == -ENOENT ? "the table inet ettm is missing" : "cannot read counters";
	}
	return json_pack("{s:s, s:s?, s:s, s:I, s:o}", "state", state, "error", error, "table",
	                 DP_TABLE_FAMILY " " DP_TABLE_NAME, "generation",
	                 (json_int_t)a->dp.generation, "counters", cs);
}

static json_t *store_brief(struct agent *a)
{
	json_t *full = store_status(a->env.store);
	json_t *brief = json_pack("{s:O, s:O, s:O, s:O}", "state", json_object_get(full, "state"),
	                          "leader", json_object_get(full, "leader"), "generation",
	                          json_object_get(full, "generation"), "applied_index",
	                          json_object_get(full, "applied_index"));
	json_decref(full);
	return brief;
}

static int handle_status(void *self, struct ctl_client *client, const struct ctl_request *req,
                         json_t **ret_result, char **ret_error)
{
	struct agent *a = self;
	json_t *o =
	    json_pack("{s:s, s:i, s:s, s:i, s:f, s:o, s:o, s:s?}", "host", a->cfg.name, "id",
	              a->cfg.id, "version", ETTM_VERSION, "pid", (int)getpid(), "uptime_s",
	              uptime_seconds(a), "datapath", datapath_status(a), "store", store_brief(a),
	              "tls_fp", a->tls ? ctl_tls_fingerprint(a->tls) : NULL);
	if (!o)
		return -ENOMEM;
	/* The trust service reports a status only when this host attests. */
	const struct service *trust = &trust_service;
	void *t = svc_self(&a->services, trust->name);
	json_t *ts = t && trust->status ? trust->status(t) : NULL;
	if (ts)
		json_object_set_new(o, "trust", ts);
	*ret_result = o;
	return 0;
}

static int handle_services(void *self, struct ctl_client *client, const struct ctl_request *req,
                           json_t **ret_result, char **ret_error)
{
	struct agent *a = self;
	*ret_result = json_pack("{s:o}", "services", svc_set_status(&a->services));
	return *ret_result ? 0 : -ENOMEM;
}

static int open_agent(struct svc_env *env, const void *options, void **ret_self, char **ret_error)
{
	*ret_self = (char *)env - offsetof(struct agent, env);
	return 0;
}

static const struct svc_command commands[] = {
    {"status", SVC_ADMIN, handle_status},
    {"services", SVC_ADMIN, handle_services},
    {NULL},
};

const struct service agent_service = {
    .name = "agent",
    .open = open_agent,
    .commands = commands,
};
