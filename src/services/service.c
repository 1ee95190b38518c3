/* The running set of services: the command index, opening and closing in
 * order, and dispatch by lookup (service.h). */
#include "service.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/proto.h"
#include "lib/error.h"

struct svc_cmd_ref {
	const char *name;
	size_t service; /* index in the list */
	const struct svc_command *cmd;
};

static int ref_cmp(const void *a, const void *b)
{
	return strcmp(((const struct svc_cmd_ref *)a)->name, ((const struct svc_cmd_ref *)b)->name);
}

static int index_commands(struct svc_set *set, char **ret_error)
{
	size_t n = 0;
	for (size_t i = 0; i < set->n; i++)
		for (const struct svc_command *c = set->list[i]->commands; c && c->name; c++)
			n++;
	set->index = calloc(n ? n : 1, sizeof(*set->index));
	if (!set->index)
		return -ENOMEM;
	for (size_t i = 0; i < set->n; i++)
		for (const struct svc_command *c = set->list[i]->commands; c && c->name; c++)
			set->index[set->n_index++] = (struct svc_cmd_ref){c->name, i, c};
	qsort(set->index, set->n_index, sizeof(*set->index), ref_cmp);
	for (size_t k = 1; k < set->n_index; k++)
		if (strcmp(set->index[k - 1].name, set->index[k].name) == 0)
			return error_set(ret_error, -EEXIST, "command \"%s\" is claimed by %s and %s",
			                 set->index[k].name,
			                 set->list[set->index[k - 1].service]->name,
			                 set->list[set->index[k].service]->name);
	return 0;
}

int svc_set_init(struct svc_set *set, const struct service *const *list, char **ret_error)
{
	*set = (struct svc_set){.list = list};
	while (list[set->n])
		set->n++;
	set->self = calloc(set->n ? set->n : 1, sizeof(*set->self));
	set->off = calloc(set->n ? set->n : 1, sizeof(*set->off));
	if (!set->self || !set->off) {
		svc_set_free(set);
		return -ENOMEM;
	}
	int r = index_commands(set, ret_error);
	if (r < 0) {
		svc_set_free(set);
		return r;
	}
	return 0;
}

int svc_set_open(struct svc_set *set, struct svc_env *env, char **ret_error)
{
	set->env = env;
	for (size_t i = 0; i < set->n; i++) {
		const struct service *svc = set->list[i];
		set->off[i] = svc->off ? svc->off(env) : NULL;
		if (set->off[i])
			continue;
		void *self = NULL;
		char *why = NULL;
		int r = svc->open ? svc->open(env, &self, &why) : 0;
		if (r < 0) {
			error_set(ret_error, r, "%s: %s", svc->name, why ? why : strerror(-r));
			free(why);
			return r;
		}
		set->self[i] = self;
		set->n_open = i + 1;
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
		const struct service *svc = set->list[i];
		void *self = set->self[i];
		if (set->off[i])
			continue;
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
	set->index = NULL;
	set->self = NULL;
	set->off = NULL;
}

static const struct svc_cmd_ref *lookup(const struct svc_set *set, const char *name)
{
	struct svc_cmd_ref key = {.name = name};
	return bsearch(&key, set->index, set->n_index, sizeof(*set->index), ref_cmp);
}

int svc_dispatch(struct svc_set *set, unsigned scope, struct ctl_client *client,
                 const struct ctl_request *req, json_t **ret_result, char **ret_error)
{
	const struct svc_cmd_ref *ref = lookup(set, req->cmd);
	if (!ref || !(ref->cmd->scope & scope))
		return error_set(ret_error, -EOPNOTSUPP, "unknown command \"%s\"", req->cmd);
	if (set->off[ref->service])
		return error_set(ret_error, -EOPNOTSUPP, "%s", set->off[ref->service]);
	void *self = set->self[ref->service];
	if (!self && set->list[ref->service]->open)
		return error_set(ret_error, -EAGAIN, "%s is not running yet",
		                 set->list[ref->service]->name);
	return ref->cmd->handle(self, client, req, ret_result, ret_error);
}

void *svc_self(const struct svc_set *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->list[i]->name, name) == 0)
			return set->self[i];
	return NULL;
}

json_t *svc_set_status(const struct svc_set *set)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < set->n; i++) {
		const struct service *svc = set->list[i];
		json_t *o = json_pack("{s:s, s:s}", "name", svc->name, "state",
		                      set->off[i] ? "off" : "on");
		if (set->off[i])
			json_object_set_new(o, "reason", json_string(set->off[i]));
		else if (svc->status && set->self[i])
			json_object_set_new(o, "status", svc->status(set->self[i]));
		json_array_append_new(a, o);
	}
	return a;
}
