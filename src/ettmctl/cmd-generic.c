/* The commands that serve every service alike: `services` (each service of
 * the agent, on or off and why, with its status) and `call` (any command
 * of any service, with its arguments as KEY=VALUE, for services without a
 * command of their own here). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ettmctl/ettmctl.h"

static void print_services(json_t *r)
{
	json_t *a = json_object_get(r, "services"), *s;
	size_t i;
	printf("%-10s %-5s %s\n", "SERVICE", "STATE", "DETAIL");
	json_array_foreach(a, i, s)
	{
		const char *state = output_str(s, "state");
		char *detail = NULL;
		if (strcmp(state, "off") == 0)
			detail = strdup(output_str(s, "reason"));
		else if (json_object_get(s, "status"))
			detail =
			    json_dumps(json_object_get(s, "status"), JSON_COMPACT | JSON_SORT_KEYS);
		printf("%-10s %-5s %s\n", output_str(s, "name"), state, detail ? detail : "");
		free(detail);
	}
}

int cmd_services(const struct options *o, int argc, char **argv)
{
	if (argc > 1)
		return output_usage_error("services", "services: unexpected argument \"%s\"",
		                          argv[1]);
	json_t *r;
	if (request_call(o, "services", NULL, &r) != 0)
		return 1;
	return output_result(o, r, print_services);
}

/* KEY=VALUE sets a string, KEY:=JSON any JSON value. */
static int put_arg(json_t *args, const char *arg)
{
	const char *eq = strchr(arg, '=');
	if (!eq || eq == arg || (eq == arg + 1 && arg[0] == ':'))
		return output_usage_error("call",
		                          "call: expected KEY=VALUE or KEY:=JSON, got \"%s\"", arg);
	bool raw = eq[-1] == ':';
	char key[128];
	int n = (int)(eq - arg) - raw;
	if (n >= (int)sizeof(key))
		return output_usage_error("call", "call: the key of \"%s\" is too long", arg);
	snprintf(key, sizeof(key), "%.*s", n, arg);
	json_t *v;
	if (raw) {
		json_error_t e;
		v = json_loads(eq + 1, JSON_DECODE_ANY, &e);
		if (!v)
			return output_usage_error("call", "call: %s: not JSON: %s", key, e.text);
	} else {
		v = json_string(eq + 1);
	}
	json_object_set_new(args, key, v);
	return 0;
}

int cmd_call(const struct options *o, int argc, char **argv)
{
	if (argc < 2)
		return output_usage_error("call", "call: expected a COMMAND");
	json_t *args = json_object(), *r;
	for (int i = 2; i < argc; i++) {
		int e = put_arg(args, argv[i]);
		if (e) {
			json_decref(args);
			return e;
		}
	}
	if (request_call(o, argv[1], args, &r) != 0)
		return 1;
	return output_result(o, r, NULL);
}
