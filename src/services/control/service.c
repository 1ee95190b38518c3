/* The control service (control.h): its fragment follows the store's
 * members; before the store opens, it closes the switches' addresses and
 * this agent's own ports. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "api/server.h"
#include "control.h"
#include "datapath/datapath.h"
#include "datapath/fragment.h"
#include "lib/log.h"
#include "store/store.h"
#include "store/tables.h"
#include "switch/switch.h"

struct control {
	struct svc_env *env;
	const struct sw_options *sw; /* the switches' addresses */
	struct store_subscription *sub;
	size_t last_n; /* addresses in the last fragment, to log a change once */
};

/* The view every fragment starts from: the switches and this agent's
 * own ports. */
static void base_view(const struct svc_env *env, const struct sw_options *sw,
                      struct control_view *v)
{
	memset(v, 0, sizeof(*v));
	for (unsigned i = 0; sw && i < sw->n_switches; i++) {
		struct sockaddr_in sa;
		if (ctl_parse_address(sw->switches[i], &sa) == 0)
			control_view_add(v, sa.sin_addr.s_addr);
	}
	v->ports[0] = env->host->raft_port;
	v->ports[1] = env->host->peer_port;
}

static int boot(const struct svc_env *env, const void *options, const struct dp_config *cfg,
                struct dp_fragment *out)
{
	struct control_view *v = malloc(sizeof(*v));
	if (!v)
		return -ENOMEM;
	base_view(env, options, v);
	int r = control_ruleset_build(cfg, v, out);
	free(v);
	return r;
}

static int build(void *userdata, const struct dp_config *cfg, struct dp_fragment *out)
{
	struct control *c = userdata;
	struct control_view *v = malloc(sizeof(*v));
	if (!v)
		return -ENOMEM;
	base_view(c->env, c->sw, v);
	control_view_members(v, store_state(c->env->store));
	if (v->n_addrs != c->last_n)
		log_debug("control: %zu control addresses closed to the guest", v->n_addrs);
	c->last_n = v->n_addrs;
	int r = control_ruleset_build(cfg, v, out);
	free(v);
	return r;
}

static void members_changed(void *userdata, const struct store_cmd *cmd,
                            const struct store_result *res)
{
	struct control *c = userdata;
	(void)cmd;
	(void)res;
	if (dp_changed(c->env->dp) < 0)
		log_error("control: datapath: %s", c->env->dp->error ? c->env->dp->error : "failed");
}

static const char *off(const struct svc_env *env, const void *options)
{
	(void)options;
	return env->dp && env->store ? NULL : "the control plane needs the datapath and the store";
}

static int open_control(struct svc_env *env, const void *options, void **ret_self,
                        char **ret_error)
{
	(void)ret_error;
	struct control *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->env = env;
	c->sw = options;
	int r = store_subscribe(env->store, STORE_MEMBERS, members_changed, c, &c->sub);
	if (r == 0)
		r = dp_set_source(env->dp, control_service.name, build, c);
	if (r < 0) {
		if (c->sub)
			store_unsubscribe(env->store, c->sub);
		free(c);
		return r;
	}
	*ret_self = c;
	if (dp_changed(env->dp) < 0)
		log_error("control: datapath: %s", env->dp->error ? env->dp->error : "failed");
	return 0;
}

static void close_control(void *self, void (*done)(void *arg), void *arg)
{
	struct control *c = self;
	store_unsubscribe(c->env->store, c->sub);
	/* The kernel's table keeps the last rules: the agent stops without
	 * reconciling again (ettmd's fail-static). */
	dp_remove_source(c->env->dp, control_service.name);
	free(c);
	done(arg);
}

static json_t *status(void *self)
{
	struct control *c = self;
	return json_pack("{s:I}", "closed_addresses", (json_int_t)c->last_n);
}

const struct service control_service = {
    .name = "control",
    .off = off,
    .open = open_control,
    .close = close_control,
    .status = status,
    .datapath_boot = boot,
};
