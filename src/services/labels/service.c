/* Labels as a service of the agent (services/service.h): the commands
 * labels, labels.set and labels.remove, for the admin, and a status. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api/server.h"
#include "labels.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "services/service.h"
#include "store/store.h"

static int open_labels(struct svc_env *env, const void *options, void **ret_self, char **ret_error)
{
	*ret_self = env->store;
	return 0;
}

static json_t *status(void *self)
{
	return json_pack("{s:I}", "labels",
	                 (json_int_t)store_count(store_state(self), LABELS_TABLE));
}

static int handle_list(void *self, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	*ret_result =
	    json_pack("{s:o}", "labels", store_table_dump(store_state(self), LABELS_TABLE));
	return *ret_result ? 0 : -ENOMEM;
}

/* labels.set {name, text} and labels.remove {name}: answered once the
 * store has applied them, with the reason when it refused. */
static int handle_edit(void *self, struct ctl_client *client, const struct ctl_request *req,
                       json_t **ret_result, char **ret_error)
{
	bool set = strcmp(req->cmd, "labels.set") == 0;
	const char *name = ctl_arg_str(req, "name");
	const char *text = ctl_arg_str(req, "text");
	if (!name)
		return error_set(ret_error, -EINVAL,
		                 "field \"name\": expected a host or device name");
	if (set && !text)
		return error_set(ret_error, -EINVAL, "field \"text\": expected a string");
	if (!labels_name_valid(name))
		return error_set(ret_error, -EINVAL,
		                 "field \"name\": 1 to %d letters, digits, '.', '_' or '-'",
		                 STORE_NAME_MAX - 1);
	if (set && !labels_text_valid(text))
		return error_set(ret_error, -EINVAL, "field \"text\": 1 to %d printable characters",
		                 LABELS_TEXT_MAX - 1);
	struct store_cmd cmd = {
	    .table = LABELS_TABLE, .op = set ? STORE_PUT : STORE_DELETE, .time_ms = wall_ms()};
	struct labels_label *l = STORE_CMD_ROW(&cmd, struct labels_label);
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->text, sizeof(l->text), "%s", set ? text : "");
	l->set_ms = cmd.time_ms;
	return store_propose_reply(self, client, req, &cmd, true, ret_error);
}

static const struct svc_command commands[] = {
    {"labels", SVC_ADMIN, handle_list},
    {"labels.set", SVC_ADMIN, handle_edit},
    {"labels.remove", SVC_ADMIN, handle_edit},
    {NULL},
};

const struct service labels_service = {
    .name = "labels",
    .open = open_labels,
    .status = status,
    .commands = commands,
    .tables = labels_tables,
};
