/* ettmctl's commands about the agent and its cluster: status, cluster
 * (members, removal, recovery), store (dump) and trust (the trusted
 * measurements). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ettmctl/ettmctl.h"
#include "ettmd/config.h"
#include "store/tables.h"
#include "trust/trust.h"

static uint64_t counter_value(json_t *counters, const char *name, const char *field)
{
	return (uint64_t)json_integer_value(
	    json_object_get(json_object_get(counters, name), field));
}

int cmd_status(const struct options *o, int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		output_fail("status: unexpected argument \"%s\"\nTry 'ettmctl status --help'.",
		            argv[1]);
		return 2;
	}
	json_t *r = NULL;
	if (request_call(o, "status", NULL, &r) != 0)
		return 1;
	if (o->json) {
		output_json(r);
		json_decref(r);
		return 0;
	}

	json_t *dp = json_object_get(r, "datapath");
	json_t *cs = json_object_get(dp, "counters");
	const char *error = json_string_value(json_object_get(dp, "error"));
	printf("host       %s (id %" JSON_INTEGER_FORMAT ")\n",
	       json_string_value(json_object_get(r, "host")),
	       json_integer_value(json_object_get(r, "id")));
	printf("version    %s\n", json_string_value(json_object_get(r, "version")));
	printf("pid        %" JSON_INTEGER_FORMAT "\n",
	       json_integer_value(json_object_get(r, "pid")));
	printf("uptime     %.1f s\n", json_real_value(json_object_get(r, "uptime_s")));
	printf("datapath   %s%s%s\n", json_string_value(json_object_get(dp, "state")),
	       error ? ": " : "", error ? error : "");
	printf("table      %s, generation %" JSON_INTEGER_FORMAT "\n",
	       json_string_value(json_object_get(dp, "table")),
	       json_integer_value(json_object_get(dp, "generation")));
	json_t *t = json_object_get(r, "trust");
	if (t) {
		const char *last = json_string_value(json_object_get(t, "last_error"));
		printf("trust      %s, PCR %" JSON_INTEGER_FORMAT " = %s\n",
		       json_is_true(json_object_get(t, "admitted")) ? "admitted" : "not admitted",
		       json_integer_value(json_object_get(t, "pcr")),
		       json_string_value(json_object_get(t, "measurement")));
		if (last)
			printf("           last refusal: %s\n", last);
	}
	printf("\n%-10s %14s %16s\n", "counter", "packets", "bytes");
	const char *names[] = {"guest_tx", "guest_rx", "spoofed"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		printf("%-10s %14" PRIu64 " %16" PRIu64 "\n", names[i],
		       counter_value(cs, names[i], "packets"),
		       counter_value(cs, names[i], "bytes"));
	json_decref(r);
	return 0;
}

static void print_cluster(json_t *r)
{
	printf("this host  %s (id %" JSON_INTEGER_FORMAT "), %s\n", output_str(r, "name"),
	       output_num(r, "id"), output_str(r, "state"));
	printf("leader     %s\n", output_str(r, "leader"));
	printf("term       %" JSON_INTEGER_FORMAT "\n", output_num(r, "term"));
	printf("commit     %" JSON_INTEGER_FORMAT "  applied %" JSON_INTEGER_FORMAT "\n",
	       output_num(r, "commit_index"), output_num(r, "applied_index"));
	printf("generation %" JSON_INTEGER_FORMAT "\n", output_num(r, "generation"));
	printf("library    %s\n", output_str(r, "raft_version"));
	if (json_string_value(json_object_get(r, "error")))
		printf("error      %s\n", output_str(r, "error"));
	json_t *fd = json_object_get(r, "failure_detector");
	if (fd)
		printf("failure    %s: %s\n", output_str(fd, "state"), output_str(fd, "reason"));
	printf("\n%-6s %-16s %-22s %-8s %s\n", "ID", "NAME", "ADDRESS", "ROLE", "REACHABLE");
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(r, "members"), i, m)
	{
		json_t *reach = json_object_get(m, "reachable");
		printf("%-6" JSON_INTEGER_FORMAT " %-16s %-22s %-8s %s\n", output_num(m, "id"),
		       output_str(m, "name"), output_str(m, "address"), output_str(m, "role"),
		       json_is_null(reach) || !reach ? "unknown"
		       : json_is_true(reach)         ? "yes"
		                                     : "no");
	}
}

static void print_conflicts(json_t *r)
{
	json_t *list = json_object_get(r, "conflicts");
	if (json_array_size(list) == 0) {
		printf("no conflicts\n");
		return;
	}
	size_t i;
	json_t *c;
	printf("%-5s %-12s %-10s %s\n", "ID", "TABLE", "FROM GEN", "REASON");
	json_array_foreach(list, i, c)
	    printf("%-5" JSON_INTEGER_FORMAT " %-12s %-10" JSON_INTEGER_FORMAT " %s\n",
	           output_num(c, "id"), output_str(c, "table"), output_num(c, "generation"),
	           output_str(c, "reason"));
}

int cmd_cluster(const struct options *o, int argc, char **argv)
{
	json_t *r = NULL;
	const char *sub = argc > 1 ? argv[1] : NULL;
	if (!sub) {
		if (request_call(o, "cluster", NULL, &r) != 0)
			return 1;
		return output_result(o, r, print_cluster);
	}
	if (strcmp(sub, "remove") == 0) {
		if (argc != 3)
			return output_usage_error("cluster", "cluster remove: expected one HOST");
		if (request_call(o, "cluster.remove", json_pack("{s:s}", "host", argv[2]), &r) != 0)
			return 1;
		if (!o->json)
			printf("%s removed from the cluster\n", argv[2]);
		return o->json ? output_result(o, r, NULL) : (json_decref(r), 0);
	}
	if (strcmp(sub, "recover") == 0 || strcmp(sub, "conflicts") == 0) {
		if (argc != 2)
			return output_usage_error(
			    "cluster", "cluster %s: unexpected argument \"%s\"", sub, argv[2]);
		bool recover = sub[1] == 'e';
		if (request_call(o, recover ? "cluster.recover" : "cluster.conflicts", NULL, &r) !=
		    0)
			return 1;
		if (recover && !o->json) {
			printf("recovered: generation %" JSON_INTEGER_FORMAT " with",
			       output_num(r, "generation"));
			size_t i;
			json_t *n;
			json_array_foreach(json_object_get(r, "members"), i, n)
			    printf(" %s", json_string_value(n));
			printf("\n");
			json_decref(r);
			return 0;
		}
		return output_result(o, r, recover ? NULL : print_conflicts);
	}
	return output_usage_error("cluster", "cluster: unknown subcommand \"%s\"", sub);
}

static void print_dump(json_t *r)
{
	/* Tables are JSON by nature; the human form is indented JSON. */
	output_json(r);
}

int cmd_store(const struct options *o, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "dump") != 0)
		return output_usage_error("store", "store: expected \"dump\"");
	if (argc > 3)
		return output_usage_error("store", "store dump: at most one TABLE");
	json_t *r = NULL;
	if (request_call(o, "store.dump", argc == 3 ? json_pack("{s:s}", "table", argv[2]) : NULL,
	                 &r) != 0)
		return 1;
	return output_result(o, r, print_dump);
}

static void print_trusted(json_t *r)
{
	size_t i;
	json_t *t;
	json_t *list = json_object_get(r, "trusted");
	if (json_array_size(list) == 0)
		printf("no trusted measurements\n");
	json_array_foreach(list, i, t)
	    printf("%s  %s\n", output_str(t, "digest"), output_str(t, "note"));
}

int cmd_trust(const struct options *o, int argc, char **argv)
{
	json_t *r = NULL;
	const char *sub = argc > 1 ? argv[1] : "list";
	if (strcmp(sub, "list") == 0) {
		if (argc > 2)
			return output_usage_error("trust", "trust list: unexpected argument \"%s\"",
			                          argv[2]);
		if (request_call(o, "trust.list", NULL, &r) != 0)
			return 1;
		return output_result(o, r, print_trusted);
	}
	if (strcmp(sub, "add") != 0 && strcmp(sub, "remove") != 0)
		return output_usage_error("trust", "trust: unknown subcommand \"%s\"", sub);
	bool add = sub[0] == 'a';
	const char *digest = NULL, *note = NULL, *binary = NULL, *config = NULL;
	for (int i = 2; i < argc; i++) {
		const char **opt = strcmp(argv[i], "--note") == 0          ? &note
		                   : strcmp(argv[i], "--from-binary") == 0 ? &binary
		                   : strcmp(argv[i], "--config") == 0      ? &config
		                                                           : NULL;
		if (opt && add && i + 1 < argc)
			*opt = argv[++i];
		else if (argv[i][0] != '-' && !digest)
			digest = argv[i];
		else
			return output_usage_error("trust", "trust %s: unexpected argument \"%s\"",
			                          sub, argv[i]);
	}
	char computed[65], auto_note[STORE_NOTE_MAX];
	if (binary || config) {
		if (!binary || !config || digest)
			return output_usage_error("trust",
			                          "trust add: --from-binary PATH and --config PATH "
			                          "go together, instead of a DIGEST");
		/* The agent's own computation (src/trust/measure.c), so the
		 * digest is the one the agent will present. */
		char *measured = NULL, *error = NULL;
		int status = config_load_measured(config, &measured, &error);
		if (status == 0)
			status = trust_measurement(binary, measured, computed, &error);
		free(measured);
		if (status < 0) {
			fprintf(stderr, "ettmctl: trust add: %s\n",
			        error ? error : strerror(-status));
			free(error);
			return 1;
		}
		digest = computed;
		if (!note) {
			snprintf(auto_note, sizeof(auto_note), "%.60s with %.60s", binary, config);
			note = auto_note;
		}
	}
	if (!digest)
		return output_usage_error("trust", "trust %s: expected a DIGEST", sub);
	if (request_call(o, add ? "trust.add" : "trust.remove",
	                 json_pack("{s:s, s:s}", "digest", digest, "note", note ? note : ""),
	                 &r) != 0)
		return 1;
	if (o->json)
		return output_result(o, r, NULL);
	printf("%s %s\n", digest, add ? "trusted" : "no longer trusted");
	json_decref(r);
	return 0;
}
