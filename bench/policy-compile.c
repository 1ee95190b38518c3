/* Parses and compiles a generated policy of N rules for one host of an
 * 8-host network, and writes the host's whole nftables table to a file, for
 * bench/policy to load with `nft -f`. Prints {"rules", "parse_us",
 * "compile_us", "nft_rules"} as one JSON line.
 *
 * Usage: policy-compile RULES OUT.nft */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datapath/fragment.h"
#include "datapath/ruleset.h"
#include "services/policy/policy.h"

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* Rules of the kinds a site writes: host to host by service, host to an
 * internet prefix, groups, exclusions, programs. */
static char *generate(unsigned n)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	fputs("default outbound allow\ndefault inbound deny\n"
	      "group staff = h1, h2, h3\ngroup servers = h4, h5\nservice web = tcp/80, tcp/443\n",
	      f);
	for (unsigned i = 0; i < n; i++) {
		unsigned a = i % 8 + 1, b = (i + 3) % 8 + 1, port = 1000 + i % 60000;
		switch (i % 5) {
		case 0:
			fprintf(f, "allow from h%u to h%u tcp/%u\n", a, b, port);
			break;
		case 1:
			fprintf(f, "deny from h%u to 198.%u.%u.0/24 tcp/%u-%u\n", a,
			        18 + i / 65536 % 2, i / 256 % 256, port, port + 10);
			break;
		case 2:
			fprintf(f, "allow from staff to servers web, udp/%u\n", port);
			break;
		case 3:
			fprintf(f, "deny from any except staff to h%u tcp/%u\n", b, port);
			break;
		default:
			fprintf(f, "allow from app prog%u on h%u to internet tcp/%u\n", i, a, port);
			break;
		}
	}
	fclose(f);
	return text;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s RULES OUT.nft\n", argv[0]);
		return 2;
	}
	unsigned n = (unsigned)strtoul(argv[1], NULL, 10);
	struct policy_host hosts[8] = {0}; /* not devices */
	for (int i = 0; i < 8; i++) {
		snprintf(hosts[i].name, sizeof(hosts[i].name), "h%d", i + 1);
		hosts[i].guest_addr = htonl(0x0a4d0100u + (uint32_t)(i + 1));
	}
	struct policy_net net = {.lan_addr = htonl(0x0a4d0000u),
	                         .lan_mask = htonl(0xffff0000u),
	                         .n_hosts = 8,
	                         .hosts = hosts};
	char *text = generate(n);
	struct policy p;
	char *error = NULL;
	double t0 = now_us();
	if (policy_parse(text, "generated", &net, &p, &error) < 0) {
		fprintf(stderr, "%s\n", error);
		return 1;
	}
	double t1 = now_us();
	struct dp_fragment frag = {0};
	if (policy_ruleset_build(&p, 1, 0, &net, &hosts[0], &frag) < 0) {
		fprintf(stderr, "compile: %s\n", frag.error ? frag.error : "failed");
		return 1;
	}
	struct dp_config cfg = {.guest_if = "g0", .uplink_if = "u0", .control_plen = 16};
	cfg.guest_addr.s_addr = hosts[0].guest_addr;
	inet_pton(AF_INET, "10.77.0.1", &cfg.control_addr);
	struct dp_ruleset rs;
	const struct dp_fragment *frags[] = {&frag};
	char *out;
	if (dp_ruleset_compose(&cfg, frags, 1, &rs) < 0 ||
	    dp_ruleset_render_string(&rs, &out) < 0) {
		fprintf(stderr, "compose failed\n");
		return 1;
	}
	double t2 = now_us();
	size_t rules = 0;
	for (size_t c = 0; c < frag.n_chains; c++)
		rules += frag.chains[c]->rules.n;
	FILE *f = fopen(argv[2], "w");
	if (!f || fputs(out, f) < 0 || fclose(f) != 0) {
		perror(argv[2]);
		return 1;
	}
	printf("{\"rules\": %u, \"bytes\": %zu, \"parse_us\": %.0f, \"compile_us\": %.0f, "
	       "\"nft_rules\": %zu}\n",
	       n, strlen(text), t1 - t0, t2 - t1, rules);
	free(out);
	dp_ruleset_free(&rs);
	dp_fragment_free(&frag);
	policy_free(&p);
	free(text);
	return 0;
}
