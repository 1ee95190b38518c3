/* ettmctl: the ETTM admin CLI. Talks to an agent over its control socket. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/proto.h"

#define DEFAULT_SOCKET "/run/ettm/ettmd.sock"

struct options {
	const char *socket;
	bool json;
};

struct command {
	const char *name;
	const char *summary;
	const char *help;
	int (*run)(const struct options *o, int argc, char **argv);
};

static void usage(FILE *out);

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
	va_list ap;
	fputs("ettmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* Sends one request and reads its reply line. Returns 0 with the result, or
 * 1 after printing why on stderr. */
static int call(const struct options *o, const char *cmd, json_t *args, json_t **ret_result)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(o->socket) >= sizeof(sa.sun_path)) {
		json_decref(args);
		return fail("%s: socket path too long", o->socket);
	}
	strcpy(sa.sun_path, o->socket);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		json_decref(args);
		return fail("cannot reach the agent at %s: %s%s", o->socket, strerror(e),
		            e == ENOENT || e == ECONNREFUSED ? " (is ettmd running?)" : "");
	}

	char *line = ctl_request_encode(1, cmd, args);
	size_t len = line ? strlen(line) : 0, off = 0;
	while (line && off < len) {
		ssize_t n = write(fd, line + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(line);
	if (off != len || len == 0) {
		close(fd);
		return fail("cannot send the request to %s", o->socket);
	}

	static char buf[CTL_LINE_MAX * 16];
	size_t got = 0;
	char *nl = NULL;
	while (!nl && got < sizeof(buf)) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		nl = memchr(buf + got, '\n', (size_t)n);
		got += (size_t)n;
	}
	close(fd);
	if (!nl)
		return fail("the agent at %s closed the connection without a reply", o->socket);

	bool ok;
	char *reason = NULL, error[256];
	json_t *result = NULL;
	if (ctl_reply_parse(buf, (size_t)(nl - buf), &ok, &result, &reason, error, sizeof(error)) <
	    0)
		return fail("%s", error);
	if (!ok) {
		fail("%s", reason);
		free(reason);
		return 1;
	}
	*ret_result = result;
	return 0;
}

static int print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!s)
		return fail("out of memory");
	puts(s);
	free(s);
	return 0;
}

static uint64_t counter_value(json_t *counters, const char *name, const char *field)
{
	return (uint64_t)json_integer_value(
	    json_object_get(json_object_get(counters, name), field));
}

static int cmd_status(const struct options *o, int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		fail("status: unexpected argument \"%s\"\nTry 'ettmctl status --help'.", argv[1]);
		return 2;
	}
	json_t *r = NULL;
	if (call(o, "status", NULL, &r) != 0)
		return 1;
	if (o->json) {
		print_json(r);
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
	printf("\n%-10s %14s %16s\n", "counter", "packets", "bytes");
	const char *names[] = {"guest_tx", "guest_rx", "spoofed"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		printf("%-10s %14" PRIu64 " %16" PRIu64 "\n", names[i],
		       counter_value(cs, names[i], "packets"),
		       counter_value(cs, names[i], "bytes"));
	json_decref(r);
	return 0;
}

static const struct command commands[] = {
    {"status", "show the agent's host, version, uptime and datapath",
     "Usage: ettmctl [--socket PATH] [--json] status\n"
     "\n"
     "Shows the agent's host name and id, version, pid, uptime, and its\n"
     "datapath: state (ok or error, with the reason), the nftables table it\n"
     "owns, the ruleset generation, and the packet and byte counters of\n"
     "guest traffic (guest_tx: guest to network, guest_rx: network to guest,\n"
     "spoofed: dropped because the source was not the guest's address).\n",
     cmd_status},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: ettmctl [--socket PATH] [--json] COMMAND [ARGS...]\n"
	        "       ettmctl COMMAND --help\n"
	        "\n"
	        "The ETTM admin CLI: talks to an ettmd agent over its control socket.\n"
	        "\n"
	        "Options:\n"
	        "  -s, --socket PATH  the agent's control socket (default " DEFAULT_SOCKET ",\n"
	        "                     or $ETTM_SOCKET when set)\n"
	        "  -j, --json         print machine-readable JSON\n"
	        "  -h, --help         show this help\n"
	        "  -V, --version      show the version\n"
	        "\n"
	        "Commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nExit status: 0 on success, 1 when the agent cannot be reached or\n"
	             "refuses the request, 2 for bad arguments.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0},
	};
	struct options o = {.socket = getenv("ETTM_SOCKET")};
	if (!o.socket || !*o.socket)
		o.socket = DEFAULT_SOCKET;

	int c;
	/* '+': stop at the command, so its own options are its own. */
	while ((c = getopt_long(argc, argv, "+s:jhV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			o.socket = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("ettmctl %s\n", ETTM_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try 'ettmctl --help'.\n");
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}

	const char *name = argv[optind];
	for (size_t i = 0; i < N_COMMANDS; i++) {
		if (strcmp(commands[i].name, name) != 0)
			continue;
		int sub_argc = argc - optind;
		char **sub_argv = argv + optind;
		for (int k = 1; k < sub_argc; k++) {
			if (strcmp(sub_argv[k], "--help") == 0 || strcmp(sub_argv[k], "-h") == 0) {
				fputs(commands[i].help, stdout);
				return 0;
			}
			if (strcmp(sub_argv[k], "--json") == 0 || strcmp(sub_argv[k], "-j") == 0) {
				o.json = true;
				memmove(&sub_argv[k], &sub_argv[k + 1],
				        (size_t)(sub_argc - k - 1) * sizeof(char *));
				sub_argc--;
				k--;
			}
		}
		return commands[i].run(&o, sub_argc, sub_argv);
	}
	fprintf(stderr, "ettmctl: unknown command \"%s\"\nTry 'ettmctl --help'.\n", name);
	return 2;
}
