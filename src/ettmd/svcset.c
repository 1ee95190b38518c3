/* The running set of the agent's services (svcset.h). */
#include "svcset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/proto.h"
#include "datapath/datapath.h"
#include "lib/error.h"
#include "store/tables.h"
#include "switch/switch.h"

struct svc_cmd_ref {
	const char *name;
	size_t service; /* index in the list */
	const struct svc_command *cmd;
};

/* What a service's callbacks are called with, besides its self. */
struct svc_ctx {
	const struct service *svc;
	const void *options; /* NULL: none */
	struct svc_env *env;
	bool sw_registered;
};

static int ref_cmp(const void *a, const void *b)
{
	return strcmp(((const struct svc_cmd_ref *)a)->name, ((const struct svc_cmd_ref *)b)->name);
}

static int index_commands(struct svc_set *set, char **ret_error)
{
	size_t n = 0;
	for (size_t i = 0; i < set->n; i++)
		for (const struct svc_command *c = set->list[i].service->commands; c && c->name;
		     c++)
			n++;
	set->index = calloc(n ? n : 1, sizeof(*set->index));
	if (!set->index)
		return -ENOMEM;
	for (size_t i = 0; i < set->n; i++)
		for (const struct svc_command *c = set->list[i].service->commands; c && c->name;
		     c++)
			set->index[set->n_index++] = (struct svc_cmd_ref){c->name, i, c};
	qsort(set->index, set->n_index, sizeof(*set->index), ref_cmp);
	for (size_t k = 1; k < set->n_index; k++)
		if (strcmp(set->index[k - 1].name, set->index[k].name) == 0)
			return error_set(
			    ret_error, -EEXIST, "command \"%s\" is claimed by %s and %s",
			    set->index[k].name, set->list[set->index[k - 1].service].service->name,
			    set->list[set->index[k].service].service->name);
	return 0;
}

static int register_tables(struct svc_set *set, char **ret_error)
{
	for (size_t i = 0; i < set->n; i++) {
		const struct service *svc = set->list[i].service;
		if (!svc->tables)
			continue;
		char *why = NULL;
		int r = store_tables_register(svc->tables, &why);
		if (r < 0) {
			error_set(ret_error, r, "%s: %s", svc->name, why ? why : strerror(-r));
			free(why);
			return r;
		}
	}
	return 0;
}

int svc_set_init(struct svc_set *set, const struct svc_entry *list, char **ret_error)
{
	*set = (struct svc_set){.list = list};
	while (list[set->n].service)
		set->n++;
	size_t n = set->n ? set->n : 1;
	set->self = calloc(n, sizeof(*set->self));
	set->off = calloc(n, sizeof(*set->off));
	set->ctx = calloc(n, sizeof(*set->ctx));
	if (!set->self || !set->off || !set->ctx) {
		svc_set_free(set);
		return -ENOMEM;
	}
	for (size_t i = 0; i < set->n; i++)
		set->ctx[i].svc = list[i].service;
	int r = index_commands(set, ret_error);
	if (r == 0)
		r = register_tables(set, ret_error);
	if (r < 0) {
		svc_set_free(set);
		return r;
	}
	return 0;
}

static int boot_build(void *userdata, const struct dp_config *cfg, struct dp_fragment *out)
{
	const struct svc_ctx *ctx = userdata;
	return ctx->svc->datapath_boot(ctx->env, ctx->options, cfg, out);
}

int svc_set_boot(struct svc_set *set, struct svc_env *env, const void *config, char **ret_error)
{
	set->env = env;
	for (size_t i = 0; i < set->n; i++) {
		struct svc_ctx *ctx = &set->ctx[i];
		ctx->env = env;
		ptrdiff_t at = set->list[i].options;
		ctx->options = at == SVC_NO_OPTIONS ? NULL : (const char *)config + at;
		if (!ctx->svc->datapath_boot || !env->dp)
			continue;
		int r = dp_set_source(env->dp, ctx->svc->name, boot_build, ctx);
		if (r < 0)
			return error_set(ret_error, r, "%s: datapath: %s", ctx->svc->name,
			                 strerror(-r));
	}
	return 0;
}

int svc_set_open(struct svc_set *set, char **ret_error)
{
	for (size_t i = 0; i < set->n; i++) {
		struct svc_ctx *ctx = &set->ctx[i];
		const struct service *svc = ctx->svc;
		/* Judged now, so that what the services before it published
		 * (the store, the switches) counts. */
		set->off[i] = svc->off ? svc->off(set->env, ctx->options) : NULL;
		if (set->off[i])
			continue;
		void *self = NULL;
		char *why = NULL;
		int r = svc->open ? svc->open(set->env, ctx->options, &self, &why) : 0;
		if (r < 0) {
			error_set(ret_error, r, "%s: %s", svc->name, why ? why : strerror(-r));
			free(why);
			return r;
		}
		set->self[i] = self;
		set->n_open = i + 1;
		if (svc->sw && set->env->switches) {
			r = sw_set_service(set->env->switches, svc->sw, self);
			if (r < 0)
				return error_set(ret_error, r, "%s: cannot register its flows: %s",
				                 svc->name, strerror(-r));
			ctx->sw_registered = true;
		}
	}
	return 0;
}

static void one_closed(void *arg)
{
	struct svc_set *set = arg;
	if (--set->closing == 0 && set->closed)
		set->closed(set->closed_arg);
}

void svc_set_close(struct svc_set *set, void (*done)(void *arg), void *arg)
{
	set->closed = done;
	set->closed_arg = arg;
	/* One extra count, dropped below, so that services completing inside
	 * their close() cannot finish the set before the loop is over. */
	set->closing = 1;
	for (size_t i = set->n_open; i-- > 0;) {
		const struct service *svc = set->list[i].service;
		void *self = set->self[i];
		if (set->off[i])
			continue;
		if (set->ctx[i].sw_registered)
			sw_set_service(set->env->switches, NULL, self);
		set->ctx[i].sw_registered = false;
		set->self[i] = NULL;
		if (!svc->close)
			continue;
		set->closing++;
		svc->close(self, one_closed, set);
	}
	set->n_open = 0;
	one_closed(set);
}

void svc_set_free(struct svc_set *set)
{
	free(set->index);
	free(set->self);
	free(set->off);
	free(set->ctx);
	set->index = NULL;
	set->self = NULL;
	set->off = NULL;
	set->ctx = NULL;
}

static const struct svc_cmd_ref *lookup(const struct svc_set *set, const char *name)
{
	struct svc_cmd_ref key = {.name = name};
	return bsearch(&key, set->index, set->n_index, sizeof(*set->index), ref_cmp);
}

unsigned svc_command_scope(const struct svc_set *set, const char *name)
{
	const struct svc_cmd_ref *ref = lookup(set, name);
	return ref ? ref->cmd->scope : 0;
}

int svc_dispatch(struct svc_set *set, unsigned scope, struct ctl_client *client,
                 const struct ctl_request *req, json_t **ret_result, char **ret_error)
{
	const struct svc_cmd_ref *ref = lookup(set, req->cmd);
	if (!ref || !(ref->cmd->scope & scope))
		return error_set(ret_error, -EOPNOTSUPP, "unknown command \"%s\"", req->cmd);
	const struct service *svc = set->list[ref->service].service;
	if (set->off[ref->service])
		return error_set(ret_error, -EOPNOTSUPP, "%s", set->off[ref->service]);
	void *self = set->self[ref->service];
	if (!self && svc->open)
		return error_set(ret_error, -EAGAIN, "%s is not running yet", svc->name);
	return ref->cmd->handle(self, client, req, ret_result, ret_error);
}

void *svc_self(const struct svc_set *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->list[i].service->name, name) == 0)
			return set->self[i];
	return NULL;
}

json_t *svc_set_status(const struct svc_set *set)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < set->n; i++) {
		const struct service *svc = set->list[i].service;
		json_t *o =
		    json_pack("{s:s, s:s}", "name", svc->name, "state", set->off[i] ? "off" : "on");
		if (set->off[i])
			json_object_set_new(o, "reason", json_string(set->off[i]));
		else if (svc->status && set->self[i])
			json_object_set_new(o, "status", svc->status(set->self[i]));
		json_array_append_new(a, o);
	}
	return a;
}
