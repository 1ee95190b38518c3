/* ettmctl policy: check, apply, show and explain the network's policy
 * (docs/policy.md). The file is read here and sent whole; the agent
 * parses, tests and compiles it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ettmctl/ettmctl.h"

/* The whole of @path ("-": standard input), NUL-terminated, or NULL after
 * saying why on stderr. */
static char *read_file(const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (!f) {
		output_fail("%s: %s", path, strerror(errno));
		return NULL;
	}
	char *text = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			char *t = realloc(text, cap = cap ? cap * 2 : 8192);
			if (!t) {
				free(text);
				text = NULL;
				output_fail("%s: out of memory", path);
				break;
			}
			text = t;
		}
		size_t n = fread(text + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	if (text && ferror(f)) {
		output_fail("%s: %s", path, strerror(errno));
		free(text);
		text = NULL;
	}
	if (text && memchr(text, '\0', len)) {
		output_fail("%s: a policy file is text, this one has a NUL byte", path);
		free(text);
		text = NULL;
	}
	if (text)
		text[len] = '\0';
	if (f != stdin)
		fclose(f);
	return text;
}

/* Each host named in @hosts (a JSON array of names), after a space. */
static void print_hosts(json_t *hosts)
{
	size_t i;
	json_t *h;
	json_array_foreach(hosts, i, h) printf(" %s", json_string_value(h));
}

static void print_check(json_t *r)
{
	bool audit = strcmp(output_str(r, "mode"), "audit") == 0;
	printf("%s: %lld rules, %lld groups, %lld services; default outbound %s, inbound %s%s\n",
	       output_str(r, "file"), (long long)output_num(r, "rules"),
	       (long long)output_num(r, "groups"), (long long)output_num(r, "services"),
	       output_str(r, "default_outbound"), output_str(r, "default_inbound"),
	       audit ? "; mode audit (nothing is denied)" : "");
	json_int_t n = output_num(r, "expects"), failed = output_num(r, "expects_failed");
	printf("expectations: %lld passed, %lld failed\n", (long long)(n - failed),
	       (long long)failed);
	fputs(output_str(r, "failures"), stdout);
	if (output_num(r, "n_warnings"))
		fputs(output_str(r, "warnings"), stderr);
	json_t *hosts = json_object_get(r, "hosts");
	size_t i;
	json_t *h;
	json_array_foreach(hosts, i, h)
	{
		printf("  %-12s %lld nftables rules\n", output_str(h, "host"),
		       (long long)output_num(h, "nft_rules"));
	}
	if (json_is_true(json_object_get(r, "changed")))
		printf("differs from the active policy (epoch %lld)\n",
		       (long long)output_num(r, "epoch"));
	else
		printf("the same as the active policy (epoch %lld)\n",
		       (long long)output_num(r, "epoch"));
}

static void print_show(json_t *r)
{
	const char *error = output_str(r, "error");
	printf("# epoch %lld, active %lld, enforced on this host: epoch %lld%s%s\n",
	       (long long)output_num(r, "epoch"), (long long)output_num(r, "active_epoch"),
	       (long long)output_num(r, "enforced_epoch"),
	       strcmp(error, "-") ? "; cannot compile: " : "", strcmp(error, "-") ? error : "");
	if (output_num(r, "pending_epoch"))
		printf("# epoch %lld is pending: installed beside epoch %lld, waiting for its "
		       "acknowledgements\n",
		       (long long)output_num(r, "pending_epoch"),
		       (long long)output_num(r, "active_epoch"));
	json_t *behind = json_object_get(r, "not_acknowledged");
	if (json_array_size(behind)) {
		printf("# not acknowledged epoch %lld:", (long long)output_num(r, "epoch"));
		print_hosts(behind);
		putchar('\n');
	}
	const char *text = output_str(r, "text");
	if (output_num(r, "epoch") == 0)
		puts("# no policy is applied: every flow passes");
	else
		fputs(text, stdout);
}

static void print_explain(json_t *r)
{
	printf("%s (epoch %lld)\n",
	       json_is_true(json_object_get(r, "allow")) ? "allowed" : "denied",
	       (long long)output_num(r, "epoch"));
	fputs(output_str(r, "why"), stdout);
}

/* check and apply: FILE, and for apply --audit. */
static int send_file(const struct options *o, const char *sub, const char *path, bool audit)
{
	char *text = read_file(path);
	if (!text)
		return 1;
	json_t *args = json_pack("{s:s, s:s, s:b}", "text", text, "file", path, "audit", audit);
	free(text);
	if (!args)
		return output_fail("out of memory (or the file is not UTF-8)");
	json_t *r;
	bool check = strcmp(sub, "check") == 0;
	if (request_call(o, check ? "policy.check" : "policy.apply", args, &r) != 0)
		return 1;
	bool failed = output_num(r, "expects_failed") > 0;
	if (o->json || check) {
		output_result(o, r, print_check);
		return failed ? 1 : 0;
	}
	if (output_num(r, "n_warnings"))
		fputs(output_str(r, "warnings"), stderr);
	printf("%s: applied as epoch %lld%s\n", path, (long long)output_num(r, "epoch"),
	       audit ? ", in audit mode: nothing is denied, what would be is logged" : "");
	json_t *behind = json_object_get(r, "not_acknowledged");
	if (json_is_true(json_object_get(r, "activated"))) {
		printf("activated %lld ms after it was sent",
		       (long long)output_num(r, "activated_after_ms"));
		if (json_array_size(behind)) {
			fputs(", without", stdout);
			print_hosts(behind);
			fputs(" (no acknowledgement: see ettmctl policy)", stdout);
		} else {
			printf(": every member (%zu) enforces it",
			       json_array_size(json_object_get(r, "acknowledged")));
		}
		putchar('\n');
	} else if (output_num(r, "superseded_by")) {
		printf("replaced by epoch %lld before it was activated\n",
		       (long long)output_num(r, "superseded_by"));
	} else {
		puts("not activated yet: see ettmctl policy");
	}
	json_decref(r);
	return 0;
}

static void print_entry(json_t *e)
{
	time_t t = (time_t)(output_num(e, "time_ms") / 1000);
	struct tm tm;
	char when[32];
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", gmtime_r(&t, &tm));
	printf("%s %s epoch %lld %s %s %s %s -> %s app %s user %s: line %lld: %s\n", when,
	       output_str(e, "host"), (long long)output_num(e, "epoch"), output_str(e, "action"),
	       output_str(e, "direction"), output_str(e, "proto"), output_str(e, "from"),
	       output_str(e, "to"), output_str(e, "app"), output_str(e, "user"),
	       (long long)output_num(e, "line"), output_str(e, "rule"));
}

/* log [--all] [--follow] [--limit N]: this host's recent denied and
 * logged flows, or every member's merged by time; with --follow, new ones
 * as they come, until interrupted. */
static int policy_log(const struct options *o, int argc, char **argv)
{
	bool follow = false, all = false;
	long long limit = 0;
	for (int i = 1; i < argc; i++) {
		char *end;
		if (strcmp(argv[i], "--follow") == 0)
			follow = true;
		else if (strcmp(argv[i], "--all") == 0)
			all = true;
		else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc &&
		         (limit = strtoll(argv[i + 1], &end, 10)) > 0 && !*end)
			i++;
		else
			return output_usage_error(
			    "policy",
			    "policy log: expected [--all] [--follow] [--limit N], "
			    "found \"%s\"",
			    argv[i]);
	}
	long long since = 0;
	json_t *after = json_object(); /* with --all: each host's last seq */
	bool first = true;
	for (;;) {
		json_t *r;
		json_t *args = all ? json_pack("{s:b, s:O, s:I}", "all", 1, "after", after, "limit",
		                               (json_int_t)(first ? limit : 0))
		                   : json_pack("{s:I, s:I}", "since", (json_int_t)since, "limit",
		                               (json_int_t)(first ? limit : 0));
		first = false;
		if (request_call(o, "policy.log", args, &r) != 0) {
			json_decref(after);
			return 1;
		}
		json_t *entries = json_object_get(r, "entries");
		size_t i;
		json_t *e;
		if (o->json && !follow) {
			json_decref(after);
			output_result(o, r, NULL);
			return 0;
		}
		json_array_foreach(json_object_get(r, "unreachable"), i, e) fprintf(
		    stderr, "ettmctl: policy log: %s did not answer; its entries are missing\n",
		    json_string_value(e));
		json_array_foreach(entries, i, e)
		{
			if (o->json) {
				char *line = json_dumps(e, JSON_COMPACT);
				if (line)
					puts(line);
				free(line);
			} else {
				print_entry(e);
			}
			since = output_num(e, "seq");
			const char *host = json_string_value(json_object_get(e, "host"));
			if (host)
				json_object_set_new(after, host, json_integer(since));
		}
		if (!follow && !o->json && json_array_size(entries) == 0)
			puts(all ? "# no denied or logged flows on any host"
			         : "# no denied or logged flows on this host");
		fflush(stdout);
		json_decref(r);
		if (!follow) {
			json_decref(after);
			return 0;
		}
		usleep(500 * 1000);
	}
}

int cmd_policy(const struct options *o, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "show";
	json_t *r;
	if (strcmp(sub, "check") == 0 || strcmp(sub, "apply") == 0) {
		bool audit =
		    argc == 4 && strcmp(sub, "apply") == 0 && strcmp(argv[2], "--audit") == 0;
		if (argc != 3 + audit)
			return output_usage_error("policy", "policy %s: expected %sFILE", sub,
			                          strcmp(sub, "apply") == 0 ? "[--audit] " : "");
		return send_file(o, sub, argv[2 + audit], audit);
	}
	if (strcmp(sub, "log") == 0)
		return policy_log(o, argc - 1, argv + 1);
	if (strcmp(sub, "show") == 0) {
		if (argc > 2)
			return output_usage_error(
			    "policy", "policy show: unexpected argument \"%s\"", argv[2]);
		if (request_call(o, "policy", NULL, &r) != 0)
			return 1;
		return output_result(o, r, print_show);
	}
	if (strcmp(sub, "explain") == 0) {
		const char *app = NULL, *user = NULL, *at = NULL;
		int n = 0;
		char *pos[3];
		for (int i = 2; i < argc; i++) {
			const char **opt = strcmp(argv[i], "--app") == 0    ? &app
			                   : strcmp(argv[i], "--user") == 0 ? &user
			                   : strcmp(argv[i], "--at") == 0   ? &at
			                                                    : NULL;
			if (opt && i + 1 < argc)
				*opt = argv[++i];
			else if (opt || n == 3)
				return output_usage_error(
				    "policy",
				    "policy explain: expected FROM TO SERVICE [--app "
				    "PATH] [--user USER] [--at \"DAY HH:MM\"], e.g. h2 h1 "
				    "tcp/22");
			else
				pos[n++] = argv[i];
		}
		if (n != 3)
			return output_usage_error(
			    "policy", "policy explain: expected FROM TO SERVICE, e.g. h2 h1 "
			              "tcp/22");
		json_t *args =
		    json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s?}", "from", pos[0], "to", pos[1],
		              "service", pos[2], "app", app, "user", user, "at", at);
		if (request_call(o, "policy.explain", args, &r) != 0)
			return 1;
		return output_result(o, r, print_explain);
	}
	return output_usage_error("policy", "policy: unknown subcommand \"%s\"", sub);
}
