/* The policy language's pure parts (services/policy/policy.h): the
 * parser (good files, and every error with its position), judging,
 * expectations, and the compiler (golden nftables for two hosts). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "datapath/fragment.h"
#include "datapath/ruleset.h"
#include "golden.h"
#include "services/policy/policy.h"

static struct policy_host hosts[4];

static struct policy_net lab_net(void)
{
	for (int i = 0; i < 4; i++) {
		snprintf(hosts[i].name, sizeof(hosts[i].name), "h%d", i + 1);
		hosts[i].guest_addr = htonl(0x0a4d0100u + (uint32_t)(i + 1)); /* 10.77.1.N */
	}
	hosts[3].guest_addr = 0; /* h4: not located yet */
	return (struct policy_net){.lan_addr = htonl(0x0a4d0000u),
	                           .lan_mask = htonl(0xffff0000u),
	                           .n_hosts = 4,
	                           .hosts = hosts};
}

static const char example[] = "# The office\n"
                              "default outbound allow\n"
                              "default inbound deny\n"
                              "\n"
                              "group staff = h1, h2\n"
                              "group servers = h3, 10.77.1.200\n"
                              "service web = tcp/80, tcp/443\n"
                              "service ssh = tcp/22\n"
                              "\n"
                              "deny from any except staff to servers ssh   # only staff log in\n"
                              "allow from staff to servers ssh, web\n"
                              "allow from lan to h1 tcp/8000-8080, udp/5353, icmp\n"
                              "deny from h2 to internet tcp/25\n"
                              "allow from internet to h3 web\n"
                              "\n"
                              "expect allow h1 h3 tcp/22\n"
                              "expect deny h4 h3 tcp/22\n"
                              "expect deny h3 h1 tcp/22\n"
                              "expect allow h3 h1 tcp/8080\n"
                              "expect deny h2 internet tcp/25\n"
                              "expect allow h1 internet tcp/25\n"
                              "expect allow internet h3 tcp/443\n"
                              "expect deny internet h1 tcp/443\n";

static void test_parse_example(void **state)
{
	(void)state;
	struct policy_net net = lab_net();
	struct policy p;
	char *error = NULL;
	assert_int_equal(policy_parse(example, "office.policy", &net, &p, &error), 0);
	assert_null(error);
	assert_true(p.outbound_allow);
	assert_false(p.inbound_allow);
	assert_int_equal(p.n_groups, 2);
	assert_int_equal(p.n_services, 2);
	assert_int_equal(p.n_rules, 5);
	assert_int_equal(p.n_expects, 8);
	/* A group and a service are expanded into the rule. */
	assert_int_equal(p.rules[1].from.n, 2);
	assert_int_equal(p.rules[1].to.n, 2);
	assert_int_equal(p.rules[1].n_ports, 3);
	assert_int_equal(p.rules[0].from.n_except, 2);
	assert_string_equal(p.rules[0].text, "deny from any except staff to servers ssh");
	assert_int_equal(p.rules[2].pos.line, 12);
	assert_int_equal(p.rules[2].ports[0].lo, 8000);
	assert_int_equal(p.rules[2].ports[0].hi, 8080);
	assert_int_equal(policy_run_expects(&p, &net, "office.policy", NULL), 0);
	policy_free(&p);
}

struct bad {
	const char *text;
	const char *error;
};

/* Each of @bad's @n lines, after @head (two lines), is refused with its
 * error, position and all. */
static void assert_rejected(const char *head, const struct bad *bad, size_t n)
{
	struct policy_net net = lab_net();
	for (size_t i = 0; i < n; i++) {
		char *text = NULL;
		assert_true(asprintf(&text, "%s%s\n", head, bad[i].text) > 0);
		struct policy p;
		char *error = NULL;
		assert_int_equal(policy_parse(text, "t", &net, &p, &error), -EINVAL);
		if (!error || strcmp(error, bad[i].error) != 0)
			fail_msg("case %zu \"%s\":\n  got      %s\n  expected %s", i, bad[i].text,
			         error, bad[i].error);
		free(error);
		free(text);
	}
}

#define ASSERT_REJECTED(head, bad) assert_rejected(head, bad, sizeof(bad) / sizeof(bad[0]))

static const char head[] = "default outbound allow\ndefault inbound deny\n";

static void test_parse_errors(void **state)
{
	(void)state;
	static const struct bad bad[] = {
	    {"allow from h1 to h9", "t:3:18: unknown host or group \"h9\""},
	    {"allow from h1 h2 to h3", "t:3:15: expected \"to\", found \"h2\""},
	    {"allow form h1 to h3", "t:3:7: expected \"from\", found \"form\""},
	    {"permit from h1 to h3", "t:3:1: expected allow, deny, default, group, service, "
	                             "window, timezone, expect or mode, found \"permit\""},
	    {"allow from h1 to h3 tcp/0", "t:3:21: expected tcp/PORT or udp/PORT or a range LO-HI "
	                                  "of ports 1 to 65535, found \"tcp/0\""},
	    {"allow from h1 to h3 tcp/90-80", "t:3:21: expected tcp/PORT or udp/PORT or a range "
	                                      "LO-HI of ports 1 to 65535, found \"tcp/90-80\""},
	    {"allow from h1 to h3 tcp/70000", "t:3:21: expected tcp/PORT or udp/PORT or a range "
	                                      "LO-HI of ports 1 to 65535, found \"tcp/70000\""},
	    {"allow from h1 to h3 tcp/22 h2",
	     "t:3:28: expected a service (tcp/PORT, udp/PORT, icmp or a service's name), \",\", "
	     "except, during, log, or the end of the line, found \"h2\""},
	    {"allow from h1 to 10.77.1.0/33",
	     "t:3:18: a prefix length is 0 to 32, in \"10.77.1.0/33\""},
	    {"allow from h1 to h3 bogus",
	     "t:3:21: expected a service (tcp/PORT, udp/PORT, icmp or a "
	     "service's name), \",\", except, during, log, or the end of the line, "
	     "found \"bogus\""},
	    {"group h1 = h2", "t:3:7: \"h1\" is a host of the network"},
	    {"group any = h2", "t:3:7: \"any\" is a word of the language, not a name"},
	    {"group log = h2", "t:3:7: \"log\" is a word of the language, not a name"},
	    {"group g = h1\ngroup g = h2", "t:4:7: group \"g\" is defined already, at line 3"},
	    {"service s = tcp/1\ngroup s = h2",
	     "t:4:7: service \"s\" is defined already, at line 3"},
	    {"group g = lan", "t:3:11: expected a host, a group or an address, found \"lan\""},
	    {"group g h1", "t:3:9: expected \"=\", found \"h1\""},
	    {"service s = tcp/1\nallow from s to h1", "t:4:12: \"s\" is a service, where a host or "
	                                              "group was expected"},
	    {"default outbound deny", "t:3:1: the default outbound is stated twice"},
	    {"default sideways deny", "t:3:9: expected outbound or inbound, found \"sideways\""},
	    {"allow from h1 to h3 ; rm",
	     "t:3:21: expected a service (tcp/PORT, udp/PORT, icmp or a "
	     "service's name), \",\", except, during, log, or the end of the line, "
	     "found a character the language does not use"},
	    {"expect allow h1", "t:3:16: expected a host, an address or internet, found the end of "
	                        "the line"},
	    {"group g = h1\nexpect allow g h2 tcp/1",
	     "t:4:14: an expected flow names one host, not the group \"g\""},
	    {"expect allow h1 h2 tcp/1-5",
	     "t:3:20: an expected flow names one protocol and port, e.g. tcp/22"},
	    {"allow from h1 to h3 tcp/22,",
	     "t:3:28: expected a service (tcp/PORT, udp/PORT, icmp or "
	     "a service's name), found the end of the line"},
	};
	ASSERT_REJECTED(head, bad);
	struct policy_net net = lab_net();
	/* The defaults must be stated. */
	struct policy p;
	char *error = NULL;
	assert_int_equal(policy_parse("default inbound deny\n", "t", &net, &p, &error), -EINVAL);
	assert_string_equal(error, "t:1:1: the file states no \"default outbound allow\" or "
	                           "\"default outbound deny\"");
	free(error);
	/* A word too long is refused, not cut. */
	char longword[200];
	memset(longword, 'a', sizeof(longword) - 1);
	longword[sizeof(longword) - 1] = '\0';
	char text[512];
	snprintf(text, sizeof(text), "%sallow from %s to h1\n", head, longword);
	error = NULL;
	assert_int_equal(policy_parse(text, "t", &net, &p, &error), -EINVAL);
	assert_string_equal(error, "t:3:12: a word longer than 63 characters");
	free(error);
}

static void test_departed_hosts(void **state)
{
	(void)state;
	struct policy_net net = lab_net();
	const char *text = "default outbound allow\ndefault inbound deny\nallow from h9 to h1\n";
	struct policy p;
	char *error = NULL;
	assert_int_equal(policy_parse(text, "t", &net, &p, &error), -EINVAL);
	free(error);
	net.departed_hosts = true;
	assert_int_equal(policy_parse(text, "t", &net, &p, NULL), 0);
	policy_free(&p);
}

static void test_judge_and_expects(void **state)
{
	(void)state;
	struct policy_net net = lab_net();
	struct policy p;
	const char *text = "default outbound allow\n"
	                   "default inbound deny\n"
	                   "allow from h2 to h1 tcp/22\n"
	                   "expect allow h2 h1 tcp/22\n"
	                   "expect allow h3 h1 tcp/22\n"
	                   "expect deny h2 h1 tcp/23\n";
	assert_int_equal(policy_parse(text, "f", &net, &p, NULL), 0);
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	assert_int_equal(policy_run_expects(&p, &net, "f", f), 1);
	fclose(f);
	/* Between two managed hosts, both ends apply both defaults. */
	const char *both = "denied by the defaults: no rule matches a flow between two managed "
	                   "hosts, which must pass both: default outbound allow, default inbound "
	                   "deny\n";
	char *want = NULL;
	assert_true(asprintf(&want,
	                     "f:5:1: expect allow h3 h1 tcp/22: the flow is denied\n"
	                     "  the sender's AEE (outbound): %s"
	                     "  the receiver's AEE (inbound): %s",
	                     both, both) > 0);
	assert_string_equal(out, want);
	free(want);
	free(out);

	/* An address that is a host's guest is that host; internet is judged
	 * at the one managed end. */
	struct policy_flow flow;
	assert_int_equal(
	    policy_flow_parse("10.77.1.2", "h1", "tcp/22", NULL, NULL, &net, &flow, NULL), 0);
	struct policy_judgement j;
	policy_judge(&p, &net, &flow, &j);
	assert_true(j.allow);
	assert_int_equal(j.out.rule, 0);
	assert_int_equal(
	    policy_flow_parse("internet", "h1", "tcp/22", NULL, NULL, &net, &flow, NULL), 0);
	policy_judge(&p, &net, &flow, &j);
	assert_false(j.judged_out);
	assert_true(j.judged_in);
	assert_false(j.allow);
	char *error = NULL;
	assert_int_equal(
	    policy_flow_parse("h1", "h2 h3", "tcp/22", NULL, NULL, &net, &flow, &error), -EINVAL);
	free(error);
	policy_free(&p);
}

/* @frag in the table of h1's AEE, as nft reads it; frees @frag. */
static char *render(struct dp_fragment *frag)
{
	struct dp_config cfg = {.guest_if = "g0", .uplink_if = "u0", .control_plen = 16};
	inet_pton(AF_INET, "10.77.1.1", &cfg.guest_addr);
	inet_pton(AF_INET, "10.77.0.1", &cfg.control_addr);
	struct dp_ruleset rs;
	const struct dp_fragment *frags[] = {frag};
	assert_int_equal(dp_ruleset_compose(&cfg, frags, 1, &rs), 0);
	char *out;
	assert_int_equal(dp_ruleset_render_string(&rs, &out), 0);
	dp_ruleset_free(&rs);
	dp_fragment_free(frag);
	return out;
}

static char *compile(const char *text, int host)
{
	struct policy_net net = lab_net();
	struct policy p;
	char *error = NULL;
	if (policy_parse(text, "t", &net, &p, &error) < 0)
		fail_msg("%s", error);
	struct dp_fragment frag = {0};
	assert_int_equal(policy_ruleset_build(&p, 7, 0, &net, &hosts[host], &frag), 0);
	policy_free(&p);
	return render(&frag);
}

static void test_compile_golden(void **state)
{
	(void)state;
	char *h1 = compile(example, 0);
	assert_golden("policy-h1.nft", h1);
	free(h1);
	char *h3 = compile(example, 2);
	assert_golden("policy-h3.nft", h3);
	free(h3);
}

/* Two epochs installed at once: each packet from the LAN is judged under
 * the epoch it is stamped with, the others under the active one; what
 * leaves for the LAN is stamped with the active one. One epoch alone
 * renders as policy_ruleset_build() does, with the stamps. */
static void test_compile_two_epochs(void **state)
{
	(void)state;
	struct policy_net net = lab_net();
	struct policy p;
	char *error = NULL;
	if (policy_parse(example, "t", &net, &p, &error) < 0)
		fail_msg("%s", error);
	struct policy_installed in[] = {{.p = &p, .epoch = 5}, {.p = NULL, .epoch = 4}};
	struct dp_fragment frag = {0};
	assert_int_equal(policy_ruleset_build_installed(in, 2, &net, &hosts[0], false, "u0", &frag),
	                 0);
	char *out = render(&frag);
	assert_golden("policy-epochs.nft", out);
	assert_non_null(strstr(out, "iifname \"u0\" ip saddr 10.77.0.0/16 ip dscp & 0x03 == 0 accept"));
	assert_non_null(strstr(out, "goto firewall_e5"));
	assert_non_null(strstr(out, "ip dscp & 0x3c == 0x2c ip dscp set 0x2d accept"));
	free(out);
	struct dp_fragment one = {0};
	assert_int_equal(policy_ruleset_build_installed(in, 1, &net, &hosts[0], false, "u0", &one),
	                 0);
	out = render(&one);
	assert_null(strstr(out, "firewall_e5"));
	assert_non_null(strstr(out, "chain firewall_out"));
	free(out);
	policy_free(&p);
}

/* Programs named at the sender in one allow and at the receiver in
 * another, for the same flows: a warning at the first, naming the second
 * and the hosts; none when their services or hosts do not meet, or when
 * one rule names both ends. */
static void test_warn_programs_at_both_ends(void **state)
{
	(void)state;
	static const struct {
		const char *rules;
		size_t warnings;
		const char *first;
	} cases[] = {
	    {"allow from app curl on h1 to h2 tcp/80\n"
	     "allow from h1 to app nginx on h2 tcp/80-90\n",
	     1,
	     "t:3:1: warning: with line 4, programs or users are named at both ends of flows "
	     "from h1 to h2: each end knows only its own, so a flow that full knowledge would "
	     "deny may pass (name them at one end)\n"},
	    {"allow from app curl on h1 to h2 tcp/80\nallow from h1 to app nginx on h2 tcp/81\n",
	     0, NULL},
	    {"allow from app curl on h1 to h2 tcp/80\nallow from h3 to user www on h2 tcp/80\n", 0,
	     NULL},
	    {"allow from app curl on h1 to app nginx on h2 tcp/80\n", 0, NULL},
	    {"allow from user alice on lan to h3\nallow from h1 to app sshd on h3 tcp/22\n", 1,
	     NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy_net net = lab_net();
		struct policy p;
		char *text = NULL, *error = NULL, *out = NULL;
		size_t len = 0;
		assert_true(asprintf(&text, "%s%s", head, cases[i].rules) > 0);
		if (policy_parse(text, "t", &net, &p, &error) < 0)
			fail_msg("case %zu: %s", i, error);
		FILE *f = open_memstream(&out, &len);
		size_t n = policy_warn_both_ends(&p, &net, "t", f);
		fclose(f);
		if (n != cases[i].warnings)
			fail_msg("case %zu: %zu warnings:\n%s", i, n, out);
		if (cases[i].first)
			assert_string_equal(out, cases[i].first);
		free(out);
		free(text);
		policy_free(&p);
	}
}

static void test_compile_sets_do_not_overlap(void **state)
{
	(void)state;
	/* nftables refuses overlapping intervals in one set. */
	char *out = compile("default outbound deny\ndefault inbound deny\n"
	                    "allow from h1 to 10.77.1.0/24, h2, lan, 10.77.1.3 tcp/22, tcp/20-30, "
	                    "tcp/31, tcp/100\n"
	                    "deny from h1 to any except 198.51.100.0/24, 198.51.100.10\n",
	                    0);
	assert_non_null(strstr(out, "ct original ip daddr { 10.77.0.0/16 } meta l4proto tcp "
	                            "ct original proto-dst 20-31 ct mark set 0x80000007 accept\n"
	                            "\t\tct original ip daddr { 10.77.0.0/16 } meta l4proto tcp "
	                            "ct original proto-dst 100 ct mark set 0x80000007 accept\n"));
	assert_non_null(strstr(out, "ct original ip daddr != { 198.51.100.0/24 } drop"));
	free(out);
}

/* Rules by program and user, and how each end judges what it cannot
 * know (policy.h). */
static const char apps[] = "default outbound allow\n"
                           "default inbound deny\n"
                           "deny from app wget to internet tcp/80\n"
                           "allow from app curl on h1 to internet tcp/80\n"
                           "deny from h1 to internet tcp/80\n"
                           "allow from h2 to app sshd on h1 tcp/22\n"
                           "allow from app ssh on h3 to h1 tcp/2222\n"
                           "deny from user nobody to any\n"
                           "deny from app unknown on h3 to internet\n"
                           "expect allow app curl on h1 to internet tcp/80\n"
                           "expect deny app /usr/bin/wget on h1 to internet tcp/80\n"
                           "expect deny h1 internet tcp/80\n"
                           "expect allow h2 to app /usr/sbin/sshd on h1 tcp/22\n"
                           "expect deny h2 to app python3 on h1 tcp/22\n"
                           "expect allow app /usr/bin/ssh on h3 to h1 tcp/2222\n"
                           "expect deny app nc on h3 to h1 tcp/2222\n"
                           "expect deny app curl user nobody on h2 to internet tcp/443\n"
                           "expect allow app curl user root on h2 to internet tcp/443\n";

static void test_parse_and_judge_programs_and_users(void **state)
{
	(void)state;
	struct policy_net net = lab_net();
	struct policy p;
	char *error = NULL;
	assert_int_equal(policy_parse(apps, "apps", &net, &p, &error), 0);
	assert_null(error);
	assert_string_equal(p.rules[0].from.who.app, "wget");
	assert_int_equal(p.rules[0].from.n, 1);
	assert_int_equal(p.rules[0].from.v[0].kind, POLICY_END_ANY);
	assert_string_equal(p.rules[3].to.who.app, "sshd");
	assert_string_equal(p.rules[5].from.who.user, "nobody");
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	assert_int_equal(policy_run_expects(&p, &net, "apps", f), 0);
	fclose(f);
	assert_string_equal(out, "");
	free(out);

	/* The sender's AEE knows the sender's program; the receiver's takes
	 * the sender's allow as met, and passes over its deny. */
	struct policy_flow flow;
	assert_int_equal(policy_flow_parse("h3", "h1", "tcp/2222", "nc", NULL, &net, &flow, NULL),
	                 0);
	struct policy_verdict out_v = policy_judge_end(&p, &net, &flow, true);
	struct policy_verdict in_v = policy_judge_end(&p, &net, &flow, false);
	assert_false(out_v.allow);
	assert_int_equal(out_v.rule, -1);
	assert_true(out_v.both_defaults);
	assert_true(in_v.allow);
	assert_int_equal(in_v.rule, 4);
	/* A program that could not be known matches `unknown` only. */
	flow = (struct policy_flow){
	    .from = {.kind = POLICY_END_HOST, .host = "h3"},
	    .to = {.kind = POLICY_END_PREFIX, .addr = htonl(0xc6336402u), .mask = 0xffffffffu},
	    .port = {POLICY_PROTO_TCP, 443, 443},
	};
	out_v = policy_judge_end(&p, &net, &flow, true);
	assert_false(out_v.allow);
	assert_int_equal(out_v.rule, 6);
	snprintf(flow.from_who.app, sizeof(flow.from_who.app), "/usr/bin/curl");
	assert_true(policy_judge_end(&p, &net, &flow, true).allow);
	policy_free(&p);

	static const struct {
		struct policy_who want, have;
		bool match;
	} who[] = {
	    {{"curl", ""}, {"/usr/bin/curl", "root"}, true},
	    {{"/usr/bin/*", ""}, {"/usr/bin/curl", ""}, true},
	    {{"/usr/bin/*", ""}, {"/opt/curl", ""}, false},
	    {{"python3*", ""}, {"/usr/bin/python3.11", ""}, true},
	    {{"*", ""}, {"", ""}, false},
	    {{"unknown", ""}, {"", ""}, true},
	    {{"unknown", ""}, {"/usr/bin/curl", ""}, false},
	    {{"curl", ""}, {POLICY_WHO_UNNAMED, ""}, false},
	    {{"", "0"}, {"", "root"}, true},
	    {{"", "root"}, {"", "0"}, true},
	    {{"", "nobody"}, {"", "root"}, false},
	    {{"", "unknown"}, {"", ""}, true},
	    {{"curl", "root"}, {"/usr/bin/curl", "nobody"}, false},
	};
	for (size_t i = 0; i < sizeof(who) / sizeof(who[0]); i++)
		if (policy_who_matches(&who[i].want, &who[i].have) != who[i].match)
			fail_msg("case %zu: app %s user %s against %s %s", i, who[i].want.app,
			         who[i].want.user, who[i].have.app, who[i].have.user);

	static const struct bad bad[] = {
	    {"allow from app to internet",
	     "t:3:16: expected a program's path or name (* and ? match any), found \"to\""},
	    {"allow from app a app b to any", "t:3:18: a side names one app"},
	    {"allow from user -x to any", "t:3:17: \"-x\" is no user's name or number"},
	    {"allow from user any to any",
	     "t:3:17: expected a user's name or number, found \"any\""},
	    {"allow from app curl on to any",
	     "t:3:24: expected any, lan, internet, a host, a group or an address, found \"to\""},
	    {"expect allow app curl internet tcp/80",
	     "t:3:23: expected \"on\", found \"internet\""},
	    {"expect allow app curl on internet h1 tcp/80",
	     "t:3:26: a program runs on a host: expected one, found \"internet\""},
	    {"deny from app curl on h1 to user alice on h2 tcp/22",
	     "t:3:1: a deny that names a program or user at both ends denies nothing: each AEE "
	     "knows its own end only; name them at one end"},
	};
	ASSERT_REJECTED(head, bad);

	/* Enforcing a stored policy that has such a deny: it matches nothing. */
	net.departed_hosts = true;
	assert_int_equal(policy_parse("default outbound allow\ndefault inbound allow\n"
	                              "deny from app curl on h1 to app sshd on h2 tcp/22\n",
	                              "t", &net, &p, NULL),
	                 0);
	flow = (struct policy_flow){.from = {.kind = POLICY_END_HOST, .host = "h1"},
	                            .to = {.kind = POLICY_END_HOST, .host = "h2"},
	                            .from_who = {.app = "/usr/bin/curl"},
	                            .to_who = {.app = "/usr/sbin/sshd"},
	                            .port = {POLICY_PROTO_TCP, 22, 22}};
	struct policy_judgement j;
	policy_judge(&p, &net, &flow, &j);
	assert_true(j.allow);
	policy_free(&p);
}

/* What a host's agent judges, and what nftables judges without it. */
static void test_compile_programs(void **state)
{
	(void)state;
	struct policy_net net = lab_net();
	struct policy p;
	assert_int_equal(policy_parse(apps, "apps", &net, &p, NULL), 0);
	assert_true(policy_needs_agent(&p, &net, &hosts[0], true));  /* curl, wget, nobody */
	assert_true(policy_needs_agent(&p, &net, &hosts[0], false)); /* sshd */
	assert_true(policy_needs_agent(&p, &net, &hosts[2], true));
	assert_false(policy_needs_agent(&p, &net, &hosts[2], false));
	policy_free(&p);
	char *h1 = compile(apps, 0);
	assert_golden("policy-apps-h1.nft", h1);
	free(h1);
	char *h2 = compile(apps, 1);
	assert_golden("policy-apps-h2.nft", h2);
	free(h2);
}

/* `log`, `mode audit`, and what they compile to. */
static void test_log_and_audit(void **state)
{
	(void)state;
	struct policy_net net = lab_net();
	struct policy p;
	const char *text = "default outbound allow log\n"
	                   "default inbound deny\n"
	                   "allow from h2 to h1 tcp/22 log\n"
	                   "deny from h1 to internet tcp/25\n";
	assert_int_equal(policy_parse(text, "t", &net, &p, NULL), 0);
	assert_true(p.outbound_log);
	assert_false(p.inbound_log);
	assert_true(p.rules[0].log);
	assert_false(p.rules[1].log);
	assert_false(p.audit);
	policy_free(&p);
	char *out = compile(text, 0);
	/* An allow that logs, logs the flow's first packet of the epoch. */
	assert_non_null(strstr(out, "ct reply proto-src 22 log group 7 prefix \"ettm: 7 3 a i\" "
	                            "ct mark set 0x80000007 accept"));
	/* A deny logs at a bounded rate, then drops. */
	assert_non_null(strstr(out,
	                       "proto-dst 25 limit rate 20/second burst 20 packets log group 7 "
	                       "prefix \"ettm: 7 4 d o\"\n"));
	assert_non_null(strstr(out, "ct original proto-dst 25 drop\n"));
	assert_non_null(strstr(out, "log group 7 prefix \"ettm: 7 0 a o\" ct mark set 0x80000007 "
	                            "accept"));
	free(out);
	char *audit = NULL;
	assert_true(asprintf(&audit, "%smode audit\n", text) > 0);
	out = compile(audit, 0);
	const char *chains = strstr(out, "chain firewall {");
	assert_non_null(chains);
	assert_null(strstr(chains, " drop\n")); /* nothing is denied */
	assert_null(strstr(chains, "limit rate"));
	assert_non_null(strstr(out, "proto-dst 25 log group 7 prefix \"ettm: 7 4 w o\" ct mark set "
	                            "0x80000007 accept"));
	free(out);
	free(audit);

	/* The default's statement on line 3, as the others. */
	static const struct bad bad_default[] = {
	    {"default inbound deny loud", "t:3:22: expected log or the end of the line, found "
	                                  "\"loud\""},
	};
	ASSERT_REJECTED("default outbound allow\n\n", bad_default);
	static const struct bad bad[] = {
	    {"mode loud", "t:3:6: expected audit or enforce, found \"loud\""},
	    {"mode audit\nmode enforce", "t:4:1: the mode is stated twice"},
	    {"allow from h1 to h3 log tcp/22", "t:3:25: expected the end of the line, found "
	                                       "\"tcp/22\""},
	};
	ASSERT_REJECTED(head, bad);
}

/* A minute of the week from "mon 09:30". */
static int at(const char *when)
{
	int m = -1;
	assert_true(policy_time_parse(when, &m));
	return m;
}

static const char windows_policy[] =
    "default outbound allow\n"
    "default inbound deny\n"
    "timezone Europe/Paris\n"
    "window work = mon-fri 08:00-17:30, sat 10:00-12:00\n"
    "window night = fri 22:00-02:00, sun 23:00-01:00\n"
    "deny from h2 to internet tcp/443 during night\n"
    "allow from h1 to h3 tcp/22 during work\n"
    "allow from h1 to h3 tcp/80 during weekends, mon 07:00-08:00 log\n"
    "expect allow h1 h3 tcp/22 at tue 09:00\n"
    "expect deny h1 h3 tcp/22 at tue 18:00\n"
    "expect deny h2 internet tcp/443 at sat 01:59\n"
    "expect allow h2 internet tcp/443 at sat 02:00\n"
    "expect allow h2 internet tcp/443 at wed 23:00\n"
    "expect deny h1 h3 tcp/80 at tue 07:30\n"
    "expect allow h1 h3 tcp/80 at mon 07:30\n";

static void test_windows(void **state)
{
	(void)state;
	struct policy_net net = lab_net();
	struct policy p;
	char *error = NULL;
	assert_int_equal(policy_parse(windows_policy, "t", &net, &p, &error), 0);
	assert_int_equal(p.n_windows, 2);
	assert_true(p.time.timed);
	assert_string_equal(p.time.zone.name, "Europe/Paris");
	/* Spans: the end is not in the window; past midnight goes on into
	 * the next day, Sunday's into Monday's. */
	const uint8_t *work = p.windows[0].minutes, *night = p.windows[1].minutes;
	assert_true(policy_minute_in(work, at("mon 08:00")));
	assert_false(policy_minute_in(work, at("mon 07:59")));
	assert_true(policy_minute_in(work, at("fri 17:29")));
	assert_false(policy_minute_in(work, at("fri 17:30")));
	assert_true(policy_minute_in(work, at("sat 11:00")));
	assert_false(policy_minute_in(work, at("sun 11:00")));
	assert_true(policy_minute_in(night, at("fri 23:00")));
	assert_true(policy_minute_in(night, at("sat 01:59")));
	assert_false(policy_minute_in(night, at("sat 02:00")));
	assert_true(policy_minute_in(night, at("mon 00:30")));
	assert_false(policy_minute_in(night, at("mon 01:00")));
	/* Every expectation holds at its time. */
	assert_int_equal(policy_run_expects(&p, &net, "t", NULL), 0);
	/* Slots: the same between two edges, new at each. */
	assert_int_equal(policy_time_slot(&p.time, at("tue 09:00")), 1 + at("tue 08:00"));
	assert_int_equal(policy_time_slot(&p.time, at("tue 17:29")), 1 + at("tue 08:00"));
	assert_int_equal(policy_time_slot(&p.time, at("tue 17:30")), 1 + at("tue 17:30"));
	assert_int_equal(policy_time_slot(&p.time, at("mon 00:10")), 1 + at("mon 00:00"));
	/* Compiled at two times: the closed rule is not there, and the ct
	 * mark differs, so established flows are judged again. */
	struct dp_fragment in = {0}, out = {0};
	assert_int_equal(policy_ruleset_build(&p, 7, at("tue 09:00"), &net, &hosts[0], &in), 0);
	assert_int_equal(policy_ruleset_build(&p, 7, at("tue 18:00"), &net, &hosts[0], &out), 0);
	size_t rules_in = 0, rules_out = 0;
	for (size_t c = 0; c < in.n_chains; c++)
		rules_in += in.chains[c]->rules.n;
	for (size_t c = 0; c < out.n_chains; c++)
		rules_out += out.chains[c]->rules.n;
	assert_int_equal(rules_in, rules_out + 1);
	assert_int_not_equal(policy_epoch_mark(7, policy_time_slot(&p.time, at("tue 09:00"))),
	                     policy_epoch_mark(7, policy_time_slot(&p.time, at("tue 18:00"))));
	dp_fragment_free(&in);
	dp_fragment_free(&out);
	/* An untimed policy keeps the marks it had. */
	struct policy plain;
	assert_int_equal(policy_parse(example, "t", &net, &plain, NULL), 0);
	assert_false(plain.time.timed);
	assert_int_equal(policy_time_slot(&plain.time, at("tue 09:00")), 0);
	assert_int_equal(policy_epoch_mark(7, 0), 0x80000007u);
	policy_free(&plain);
	/* The zone: Paris is UTC+1 in winter and UTC+2 in summer. */
	assert_int_equal(policy_time_minute(&p.time, 0), at("thu 01:00")); /* 1970-01-01 */
	assert_int_equal(policy_time_minute(&p.time, 1782907200),
	                 at("wed 14:00")); /* 2026-07-01 12:00Z */
	struct policy_time fixed = {.zone = {.name = "UTC-05:30", .fixed = true, .offset = -19800}};
	assert_int_equal(policy_time_minute(&fixed, 0), at("wed 18:30"));
	/* An expectation without `at` must hold at every time: it fails at
	 * the first edge where it does not. */
	char *text = NULL;
	assert_true(asprintf(&text, "%sexpect allow h1 h3 tcp/22\n", windows_policy) > 0);
	policy_free(&p);
	assert_int_equal(policy_parse(text, "t", &net, &p, NULL), 0);
	char *report = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&report, &len);
	assert_int_equal(policy_run_expects(&p, &net, "t", f), 1);
	fclose(f);
	assert_non_null(strstr(report,
	                       "t:16:1: expect allow h1 h3 tcp/22: the flow is denied at "
	                       "mon 00:00\n  judged at mon 00:00, time zone Europe/Paris\n"));
	free(report);
	free(text);
	policy_free(&p);
	static const struct bad bad[] = {
	    {"window w = mon-fri 25:00-26:00",
	     "t:3:20: expected hours HH:MM-HH:MM from 00:00 to 24:00, not empty, found "
	     "\"25:00-26:00\""},
	    {"window w = mon 09:00-09:00",
	     "t:3:16: expected hours HH:MM-HH:MM from 00:00 to 24:00, not empty, found "
	     "\"09:00-09:00\""},
	    {"window w = funday", "t:3:12: expected days (mon, mon-fri, daily, weekdays or "
	                          "weekends) or hours HH:MM-HH:MM, found \"funday\""},
	    {"window w = mon\nwindow w = tue", "t:4:8: window \"w\" is defined already, at line 3"},
	    {"window h1 = mon", "t:3:8: \"h1\" is a host of the network"},
	    {"window w = mon\nallow from w to h1",
	     "t:4:12: \"w\" is a window, where a host or group was expected (a rule's windows "
	     "follow \"during\")"},
	    {"allow from h1 to h3 during lunch",
	     "t:3:28: unknown window \"lunch\": expected a window, days (mon, mon-fri, daily, "
	     "weekdays or weekends) or hours HH:MM-HH:MM"},
	    {"allow from h1 to h3 during", "t:3:27: expected days (mon, mon-fri, daily, weekdays "
	                                   "or weekends) or hours HH:MM-HH:MM, found the end of "
	                                   "the line"},
	    {"allow from h1 to h3 during mon tcp/22",
	     "t:3:32: expected \",\", log, or the end of the line, found \"tcp/22\""},
	    {"timezone Mars/Olympus", "t:3:10: unknown time zone \"Mars/Olympus\": expected UTC, "
	                              "UTC+HH:MM or a zone of /usr/share/zoneinfo/ such as "
	                              "Europe/Paris"},
	    {"timezone ../../etc/passwd",
	     "t:3:10: unknown time zone \"../../etc/passwd\": expected UTC, UTC+HH:MM or a zone "
	     "of /usr/share/zoneinfo/ such as Europe/Paris"},
	    {"timezone UTC+25:00", "t:3:10: expected UTC, UTC+HH:MM or UTC-HH:MM (up to 23:59, "
	                           "seconds as :SS), found \"UTC+25:00\""},
	    {"timezone UTC\ntimezone UTC", "t:4:1: the time zone is stated twice"},
	    {"expect allow h1 h3 tcp/22 at mon 9:00",
	     "t:3:30: expected a time DAY HH:MM, e.g. mon 09:30, found \"mon 9:00\""},
	    {"expect allow h1 h3 tcp/22 at mon 09:00 sharp",
	     "t:3:40: expected at or the end of the line, found \"sharp\""},
	};
	ASSERT_REJECTED(head, bad);
}

static const char devices_policy[] = "default outbound allow\n"
                                     "default inbound deny\n"
                                     "group office = h1, printer\n"
                                     "allow from printer to h2 tcp/5201\n"
                                     "deny from printer to any\n"
                                     "allow from h2 to printer tcp/9100 log\n"
                                     "allow from app cups* on h1 to printer tcp/631\n"
                                     "expect allow printer h2 tcp/5201\n"
                                     "expect deny printer h2 tcp/5202\n"
                                     "expect deny printer internet tcp/80\n"
                                     "expect allow h2 printer tcp/9100\n"
                                     "expect deny h2 printer tcp/9101\n"
                                     "expect deny h1 printer tcp/9100\n"
                                     "expect allow app cupsd on h1 to printer tcp/631\n";

static void test_devices_as_ends(void **state)
{
	(void)state;
	struct policy_net net = lab_net();
	struct policy_host with_device[5];
	memcpy(with_device, hosts, sizeof(hosts));
	with_device[4] = (struct policy_host){.name = "printer", .device = true};
	inet_pton(AF_INET, "10.77.2.1", &with_device[4].guest_addr);
	net.hosts = with_device;
	net.n_hosts = 5;
	struct policy p;
	char *error = NULL;
	if (policy_parse(devices_policy, "t", &net, &p, &error) < 0)
		fail_msg("%s", error);
	assert_int_equal(p.groups[0].side.n, 2);
	assert_int_equal(policy_run_expects(&p, &net, "t", stderr), 0);
	/* An address that is the device's is the device. */
	struct policy_flow flow;
	struct policy_judgement j;
	assert_int_equal(
	    policy_flow_parse("10.77.2.1", "h2", "tcp/5202", NULL, NULL, &net, &flow, NULL), 0);
	policy_judge(&p, &net, &flow, &j);
	assert_true(j.judged_out && j.judged_in && !j.allow && j.out.rule == 1);
	/* No AEE asks the device's programs: it needs no agent. */
	assert_false(policy_needs_agent(&p, &net, &with_device[4], true));
	/* The manager's chain: each device's packets judged at its end. */
	struct dp_fragment frag = {0};
	assert_int_equal(policy_ruleset_build_devices(&p, 7, 0, &net, &frag), 0);
	char *out = render(&frag);
	assert_golden("policy-devices.nft", out);
	free(out);
	/* Without an address, a device has no chain. */
	with_device[4].guest_addr = 0;
	assert_int_equal(policy_ruleset_build_devices(&p, 7, 0, &net, &frag), 0);
	assert_int_equal(frag.n_chains, 0);
	dp_fragment_free(&frag);
	policy_free(&p);

	static const struct bad bad[] = {
	    {"allow from app curl on printer to h1",
	     "t:3:24: \"printer\" is a device: it runs no agent, so no AEE knows its programs or "
	     "users"},
	    {"expect allow user root on printer h1 tcp/1",
	     "t:3:27: \"printer\" is a device: it runs no agent, so no AEE knows its programs or "
	     "users"},
	    {"group printer = h1", "t:3:7: \"printer\" is a device of the network"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *text = NULL;
		assert_true(asprintf(&text, "%s%s\n", head, bad[i].text) > 0);
		error = NULL;
		assert_int_equal(policy_parse(text, "t", &net, &p, &error), -EINVAL);
		if (!error || strcmp(error, bad[i].error) != 0)
			fail_msg("case %zu:\n  got      %s\n  expected %s", i, error, bad[i].error);
		free(error);
		free(text);
	}
	/* A device allowed after the policy, named as one of its groups: the
	 * stored policy is still enforced, its group meaning what it did. */
	net.departed_hosts = true;
	static const char stored[] = "default outbound allow\ndefault inbound deny\n"
	                             "group printer = h1\nallow from printer to h2\n";
	assert_int_equal(policy_parse(stored, "t", &net, &p, NULL), 0);
	assert_int_equal(p.rules[0].from.n, 1);
	assert_string_equal(p.rules[0].from.v[0].host, "h1");
	policy_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_example),
	    cmocka_unit_test(test_parse_errors),
	    cmocka_unit_test(test_departed_hosts),
	    cmocka_unit_test(test_judge_and_expects),
	    cmocka_unit_test(test_compile_golden),
	    cmocka_unit_test(test_compile_two_epochs),
	    cmocka_unit_test(test_warn_programs_at_both_ends),
	    cmocka_unit_test(test_compile_sets_do_not_overlap),
	    cmocka_unit_test(test_parse_and_judge_programs_and_users),
	    cmocka_unit_test(test_compile_programs),
	    cmocka_unit_test(test_log_and_audit),
	    cmocka_unit_test(test_windows),
	    cmocka_unit_test(test_devices_as_ends),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
