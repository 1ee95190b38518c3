/* Unmanaged devices as a service of the agent (services/service.h;
 * docs/devices.md). Its options are the store's: a silent manager is
 * replaced after the store's promote-after-ms, as a silent voter is. */
#include "datapath/fragment.h"
#include "devices.h"
#include "lib/log.h"
#include "services/service.h"
#include "store/store.h"
#include "tables.h"

static const char *off(const struct svc_env *env, const void *options)
{
	return env->switches ? NULL
	                     : "unmanaged devices need switches: this host's configuration has "
	                       "no switch.switches";
}

/* No devices' link until this host is their manager. */
static int boot(const struct svc_env *env, const void *options, const struct dp_config *cfg,
                struct dp_fragment *out)
{
	return devices_fragment_idle(NULL, cfg, out);
}

static int open_devices(struct svc_env *env, const void *options, void **ret_self, char **ret_error)
{
	const struct store_options *o = options;
	struct devices *d;
	int r = devices_open(env->loop, env->host->name, o->promote_after_ms, env->store,
	                     env->switches, env->dp, &d);
	if (r < 0)
		return r;
	*ret_self = d;
	return 0;
}

static void close_devices(void *self, void (*done)(void *arg), void *arg)
{
	devices_close(self, done, arg);
}

static int handle(void *self, struct ctl_client *client, const struct ctl_request *req,
                  json_t **ret_result, char **ret_error)
{
	return devices_handle_request(self, client, req, ret_result, ret_error);
}

static const struct svc_command commands[] = {
    {"devices", SVC_ADMIN, handle},
    {"devices.allow", SVC_ADMIN, handle},
    {"devices.remove", SVC_ADMIN, handle},
    {NULL},
};

const struct service devices_service = {
    .name = "devices",
    .off = off,
    .open = open_devices,
    .close = close_devices,
    .commands = commands,
    .tables = devices_tables,
    .sw = &devices_sw,
    .datapath_boot = boot,
};
