/* The control protocol's pure codec: request and reply lines parsed and
 * encoded. See proto.h. */
#include "proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ctl_request_parse(const char *line, size_t len, struct ctl_request *ret_req, char **ret_error)
{
	json_error_t jerr;
	*ret_req = (struct ctl_request){0};

	if (len > CTL_LINE_MAX)
		return error_set(ret_error, -EINVAL, "request longer than %d bytes", CTL_LINE_MAX);
	/* JSON_REJECT_DUPLICATES: an object with two "cmd" keys is ambiguous. */
	json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return error_set(ret_error, -EINVAL, "invalid JSON at byte %d: %s", jerr.position,
		                 jerr.text);
	int r = 0;
	if (!json_is_object(root)) {
		r = error_set(ret_error, -EINVAL, "request must be a JSON object");
		goto out;
	}

	json_t *id = json_object_get(root, "id");
	if (id && !json_is_integer(id)) {
		r = error_set(ret_error, -EINVAL, "field \"id\": expected an integer");
		goto out;
	}
	if (id) {
		ret_req->has_id = true;
		ret_req->id = json_integer_value(id);
	}

	json_t *cmd = json_object_get(root, "cmd");
	if (!cmd) {
		r = error_set(ret_error, -EINVAL, "field \"cmd\": missing");
		goto out;
	}
	const char *name = json_string_value(cmd);
	size_t name_len = json_string_length(cmd);
	if (!name || name_len == 0 || name_len >= CTL_CMD_MAX || strlen(name) != name_len) {
		r = error_set(ret_error, -EINVAL,
		              "field \"cmd\": expected a non-empty string of at most %d bytes",
		              CTL_CMD_MAX - 1);
		goto out;
	}

	json_t *args = json_object_get(root, "args");
	if (args && !json_is_object(args)) {
		r = error_set(ret_error, -EINVAL, "field \"args\": expected an object");
		goto out;
	}

	const char *key;
	json_t *value;
	json_object_foreach(root, key, value)
	{
		if (strcmp(key, "id") != 0 && strcmp(key, "cmd") != 0 && strcmp(key, "args") != 0) {
			r = error_set(ret_error, -EINVAL, "field \"%.40s\": unknown", key);
			goto out;
		}
	}

	memcpy(ret_req->cmd, name, name_len + 1);
	ret_req->args = args ? json_incref(args) : json_object();
	if (!ret_req->args)
		r = -ENOMEM;
out:
	json_decref(root);
	return r;
}

void ctl_request_done(struct ctl_request *req)
{
	if (!req)
		return;
	json_decref(req->args);
	req->args = NULL;
}

static char *encode_line(json_t *obj)
{
	if (!obj)
		return NULL;
	char *body = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (!body)
		return NULL;
	char *line = NULL;
	if (asprintf(&line, "%s\n", body) < 0)
		line = NULL;
	free(body);
	return line;
}

char *ctl_request_encode(json_int_t id, const char *cmd, json_t *args)
{
	return encode_line(json_pack("{s:I, s:s, s:o}", "id", id, "cmd", cmd, "args",
	                             args ? args : json_object()));
}

char *ctl_reply_encode(const struct ctl_request *req, json_t *result, const char *error)
{
	json_t *reply =
	    error ? json_pack("{s:b, s:s}", "ok", 0, "error", error)
	          : json_pack("{s:b, s:o}", "ok", 1, "result", result ? result : json_object());
	if (error)
		json_decref(result);
	if (reply && req && req->has_id)
		json_object_set_new(reply, "id", json_integer(req->id));
	return encode_line(reply);
}

int ctl_reply_parse(const char *line, size_t len, bool *ret_ok, json_t **ret_result,
                    char **ret_reason, char **ret_error)
{
	json_error_t jerr;
	json_t *root = json_loadb(line, len, 0, &jerr);
	if (!root)
		return error_set(ret_error, -EINVAL, "invalid JSON reply at byte %d: %s",
		                 jerr.position, jerr.text);
	int r = 0;
	json_t *ok = json_object_get(root, "ok");
	if (!json_is_boolean(ok)) {
		r = error_set(ret_error, -EINVAL, "reply field \"ok\": expected a boolean");
		goto out;
	}
	if (json_is_true(ok)) {
		json_t *result = json_object_get(root, "result");
		if (!result) {
			r = error_set(ret_error, -EINVAL, "reply field \"result\": missing");
			goto out;
		}
		*ret_result = json_incref(result);
	} else {
		const char *msg = json_string_value(json_object_get(root, "error"));
		if (!msg) {
			r = error_set(ret_error, -EINVAL,
			              "reply field \"error\": expected a string");
			goto out;
		}
		*ret_reason = strdup(msg);
	}
	*ret_ok = json_is_true(ok);
out:
	json_decref(root);
	return r;
}

const char *ctl_arg_str(const struct ctl_request *req, const char *name)
{
	return json_string_value(json_object_get(req->args, name));
}
