/* Private to src/ettmctl: what its files share. */
#pragma once

#include <stdbool.h>

#include <jansson.h>

struct options {
	const char *socket;
	bool json;
};

/* ---- output.c ---- */

/* "ettmctl: MESSAGE" on stderr; returns 1 (the exit status). */
int output_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A bad command line for @cmd; returns 2 (the exit status). */
int output_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* @v as indented JSON with sorted keys on stdout; 0, or 1 out of memory. */
int output_json(json_t *v);
/* @r as JSON with --json or without @human, else as @human prints it;
 * releases @r and returns 0. */
int output_result(const struct options *o, json_t *r, void (*human)(json_t *r));
/* String field @key of @o, or "-". */
const char *output_str(json_t *o, const char *key);
json_int_t output_num(json_t *o, const char *key);
double output_fnum(json_t *o, const char *key);
/* 1234567 -> "1.2 Mbit/s" into @buf; returns @buf. */
const char *output_rate(double bps, char buf[32]);
/* "12 s ago" for a time in ms since the epoch into @buf; returns @buf. */
const char *output_ago(json_int_t ms, char buf[32]);

/* ---- request.c ---- */

/* Sends one request and reads its reply line. Returns 0 with the result, or
 * 1 after printing why on stderr. */
int request_call(const struct options *o, const char *cmd, json_t *args, json_t **ret_result);

/* ---- the commands: cmd-cluster.c, cmd-network.c, cmd-services.c, cmd-policy.c, cmd-generic.c ---- */

int cmd_status(const struct options *o, int argc, char **argv);
int cmd_cluster(const struct options *o, int argc, char **argv);
int cmd_store(const struct options *o, int argc, char **argv);
int cmd_trust(const struct options *o, int argc, char **argv);
int cmd_switches(const struct options *o, int argc, char **argv);
int cmd_topology(const struct options *o, int argc, char **argv);
int cmd_flows(const struct options *o, int argc, char **argv);
int cmd_hosts(const struct options *o, int argc, char **argv);
int cmd_nat(const struct options *o, int argc, char **argv);
int cmd_devices(const struct options *o, int argc, char **argv);
int cmd_policy(const struct options *o, int argc, char **argv);
int cmd_services(const struct options *o, int argc, char **argv);
int cmd_call(const struct options *o, int argc, char **argv);
