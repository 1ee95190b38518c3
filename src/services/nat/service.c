/* NAT as a service of the agent (services/service.h; docs/nat.md). */
#include <errno.h>
#include <string.h>

#include "datapath/fragment.h"
#include "lib/log.h"
#include "nat.h"
#include "services/service.h"
#include "tables.h"

static const char *off(const struct svc_env *env, const void *options)
{
	if (!nat_enabled(options))
		return "NAT is off on this host: its configuration has no nat.public-addresses";
	if (!env->switches)
		return "NAT needs switches: this host's configuration has no switch.switches";
	return NULL;
}

/* Until NAT is open (and for good when it cannot open), nothing leaves
 * untranslated, and a table from before a restart stays as it is until
 * NAT knows the blocks. */
static int boot(const struct svc_env *env, const void *options, const struct dp_config *cfg,
                struct dp_fragment *out)
{
	const struct nat_options *o = options;
	if (!nat_enabled(o))
		return 0;
	static const uint8_t none[6];
	struct nat_view view;
	int r = nat_datapath(NULL, o, env->host->id, none,
	                     nat_uplink_for(env->host->id, NULL, o->n_publics), &view);
	if (r == 0)
		r = nat_fragment_held(&view, cfg, out);
	nat_view_free(&view);
	return r;
}

static int open_nat(struct svc_env *env, const void *options, void **ret_self, char **ret_error)
{
	const struct nat_options *o = options;
	struct nat *n;
	int r = nat_open(env->loop, o, env->host->id, env->host->name, env->store, env->switches,
	                 env->dp, env->host->guest_netns, &n);
	if (r < 0)
		return r;
	log_info("nat: %u public address(es), blocks of %u ports", o->n_publics, o->block_size);
	*ret_self = n;
	return 0;
}

static void close_nat(void *self, void (*done)(void *arg), void *arg)
{
	nat_close(self, done, arg);
}

static int handle(void *self, struct ctl_client *client, const struct ctl_request *req,
                  json_t **ret_result, char **ret_error)
{
	return nat_handle_request(self, client, req, ret_result, ret_error);
}

static const struct svc_command commands[] = {
    {"nat", SVC_ADMIN, handle},
    {"nat.expose", SVC_ADMIN, handle},
    {"nat.unexpose", SVC_ADMIN, handle},
    {NULL},
};

const struct service nat_service = {
    .name = "nat",
    .off = off,
    .open = open_nat,
    .close = close_nat,
    .commands = commands,
    .tables = nat_tables,
    .sw = &nat_sw,
    .datapath_boot = boot,
};
