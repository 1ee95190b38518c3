/* The service set: one owner per command, scopes, services that are off,
 * and opening and closing in order. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/proto.h"
#include "ettmd/svcset.h"

static char order[64]; /* what opened and closed, in order: "o:a o:b c:b c:a" */

static void note(const char *what, const char *name)
{
	size_t n = strlen(order);
	snprintf(order + n, sizeof(order) - n, "%s%s:%s", n ? " " : "", what, name);
}

/* An agent's configuration, as the entries' offsets see it. */
struct fake_config {
	int a;
	int b;
};

static const struct fake_config config = {.a = 1, .b = 42};

struct fake {
	const char *name;
	int hits;
};

static struct fake fake_a = {.name = "a"}, fake_b = {.name = "b"};

static int open_a(struct svc_env *env, const void *options, void **ret_self, char **ret_error)
{
	note("o", "a");
	*ret_self = &fake_a;
	return 0;
}

static int open_b(struct svc_env *env, const void *options, void **ret_self, char **ret_error)
{
	note("o", "b");
	/* Its options: where its entry said they are in the configuration. */
	assert_int_equal(*(const int *)options, 42);
	*ret_self = &fake_b;
	return 0;
}

static int open_fails(struct svc_env *env, const void *options, void **ret_self, char **ret_error)
{
	return error_set(ret_error, -EIO, "no such device");
}

static void close_now(void *self, void (*done)(void *arg), void *arg)
{
	note("c", ((struct fake *)self)->name);
	done(arg);
}

static const char *always_off(const struct svc_env *env, const void *options)
{
	return "C is off on this host: its configuration has no c.thing";
}

static int hit(void *self, struct ctl_client *client, const struct ctl_request *req,
               json_t **ret_result, char **ret_error)
{
	struct fake *f = self;
	f->hits++;
	*ret_result = json_pack("{s:s}", "by", f->name);
	return 0;
}

static const struct svc_command a_cmds[] = {
    {"a", SVC_ADMIN, hit},
    {"a.peer", SVC_PEER, hit},
    {"shared", SVC_BOTH, hit},
    {NULL},
};
static const struct svc_command b_cmds[] = {{"b", SVC_ADMIN, hit}, {NULL}};
static const struct svc_command c_cmds[] = {{"c.do", SVC_ADMIN, hit}, {NULL}};
static const struct svc_command dup_cmds[] = {{"shared", SVC_ADMIN, hit}, {NULL}};

static const struct service svc_a = {
    .name = "a", .open = open_a, .close = close_now, .commands = a_cmds};
static const struct service svc_b = {
    .name = "b", .open = open_b, .close = close_now, .commands = b_cmds};
static const struct service svc_c = {
    .name = "c", .off = always_off, .open = open_fails, .commands = c_cmds};
static const struct service svc_dup = {.name = "dup", .commands = dup_cmds};
static const struct service svc_fails = {.name = "fails", .open = open_fails};

static int ask(struct svc_set *set, unsigned scope, const char *cmd, json_t **ret_result,
               char **ret_error)
{
	struct ctl_request req = {0};
	snprintf(req.cmd, sizeof(req.cmd), "%s", cmd);
	*ret_result = NULL;
	*ret_error = NULL;
	return svc_dispatch(set, scope, NULL, &req, ret_result, ret_error);
}

static void closed(void *arg)
{
	(*(int *)arg)++;
}

static void test_dispatch_by_owner_and_scope(void **state)
{
	static const struct svc_entry list[] = {
	    {&svc_a, SVC_NO_OPTIONS},
	    {&svc_b, offsetof(struct fake_config, b)},
	    {&svc_c, SVC_NO_OPTIONS},
	    {NULL},
	};
	struct svc_set set;
	struct svc_env env = {0};
	char *error = NULL;
	json_t *result;
	order[0] = '\0';
	assert_int_equal(svc_set_init(&set, list, &error), 0);
	assert_int_equal(svc_set_boot(&set, &env, &config, &error), 0);
	assert_int_equal(svc_set_open(&set, &error), 0);
	assert_string_equal(order, "o:a o:b");

	assert_int_equal(ask(&set, SVC_ADMIN, "b", &result, &error), 0);
	assert_string_equal(json_string_value(json_object_get(result, "by")), "b");
	json_decref(result);
	assert_int_equal(ask(&set, SVC_PEER, "shared", &result, &error), 0);
	json_decref(result);
	assert_int_equal(fake_a.hits, 1);

	/* A peer-only command is unknown on the admin socket, and the other
	 * way round: the same answer as a command nobody owns. */
	assert_int_equal(ask(&set, SVC_ADMIN, "a.peer", &result, &error), -EOPNOTSUPP);
	assert_string_equal(error, "unknown command \"a.peer\"");
	free(error);
	assert_int_equal(ask(&set, SVC_PEER, "b", &result, &error), -EOPNOTSUPP);
	assert_string_equal(error, "unknown command \"b\"");
	free(error);
	assert_int_equal(ask(&set, SVC_ADMIN, "nosuch", &result, &error), -EOPNOTSUPP);
	assert_string_equal(error, "unknown command \"nosuch\"");
	free(error);

	/* A service that is off answers its own commands with its reason. */
	assert_int_equal(ask(&set, SVC_ADMIN, "c.do", &result, &error), -EOPNOTSUPP);
	assert_string_equal(error, "C is off on this host: its configuration has no c.thing");
	free(error);

	json_t *st = svc_set_status(&set);
	assert_int_equal(json_array_size(st), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(st, 2), "state")),
	                    "off");
	json_decref(st);

	int done = 0;
	svc_set_close(&set, closed, &done);
	assert_int_equal(done, 1);
	assert_string_equal(order, "o:a o:b c:b c:a");
	assert_null(svc_self(&set, "a"));
	svc_set_free(&set);
}

static void test_one_owner_per_command(void **state)
{
	static const struct svc_entry list[] = {
	    {&svc_a, SVC_NO_OPTIONS}, {&svc_dup, SVC_NO_OPTIONS}, {NULL}};
	struct svc_set set;
	char *error = NULL;
	assert_int_equal(svc_set_init(&set, list, &error), -EEXIST);
	assert_string_equal(error, "command \"shared\" is claimed by a and dup");
	free(error);
}

static void test_open_failure_names_the_service(void **state)
{
	static const struct svc_entry list[] = {
	    {&svc_a, SVC_NO_OPTIONS},
	    {&svc_fails, SVC_NO_OPTIONS},
	    {&svc_b, offsetof(struct fake_config, b)},
	    {NULL},
	};
	struct svc_set set;
	struct svc_env env = {0};
	char *error = NULL;
	order[0] = '\0';
	assert_int_equal(svc_set_init(&set, list, &error), 0);
	assert_int_equal(svc_set_boot(&set, &env, &config, &error), 0);
	assert_int_equal(svc_set_open(&set, &error), -EIO);
	assert_string_equal(error, "fails: no such device");
	free(error);
	int done = 0;
	svc_set_close(&set, closed, &done);
	assert_int_equal(done, 1);
	assert_string_equal(order, "o:a c:a"); /* b never opened */
	svc_set_free(&set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dispatch_by_owner_and_scope),
	    cmocka_unit_test(test_one_owner_per_command),
	    cmocka_unit_test(test_open_failure_names_the_service),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
