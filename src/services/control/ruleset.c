/* The control service's fragment (control.h): pure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "api/server.h"
#include "control.h"
#include "datapath/fragment.h"
#include "lib/addr.h"
#include "store/tables.h"

bool control_view_add(struct control_view *v, uint32_t addr)
{
	if (!addr)
		return true;
	for (size_t i = 0; i < v->n_addrs; i++)
		if (v->addrs[i] == addr)
			return true;
	if (v->n_addrs == CONTROL_ADDRS_MAX)
		return false;
	v->addrs[v->n_addrs++] = addr;
	return true;
}

static void add_address(struct control_view *v, const char *address)
{
	struct sockaddr_in sa;
	if (address[0] && ctl_parse_address(address, &sa) == 0)
		control_view_add(v, sa.sin_addr.s_addr);
}

void control_view_members(struct control_view *v, const struct store_state *st)
{
	size_t n;
	const struct store_member *m = store_rows(st, STORE_MEMBERS, &n);
	for (size_t i = 0; i < n; i++) {
		add_address(v, m[i].address);
		add_address(v, m[i].peer);
	}
}

static int addr_cmp(const void *a, const void *b)
{
	uint32_t x = ntohl(*(const uint32_t *)a), y = ntohl(*(const uint32_t *)b);
	return x < y ? -1 : x > y;
}

/* "{ 10.77.0.1, 10.77.0.2 }", sorted so that the same view renders the
 * same rule (the datapath reconciles only on a difference). */
static char *address_set(const struct control_view *v)
{
	uint32_t sorted[CONTROL_ADDRS_MAX];
	memcpy(sorted, v->addrs, v->n_addrs * sizeof(sorted[0]));
	qsort(sorted, v->n_addrs, sizeof(sorted[0]), addr_cmp);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return NULL;
	fputs("{ ", f);
	for (size_t i = 0; i < v->n_addrs; i++) {
		char a[ADDR_STR_MAX];
		fprintf(f, "%s%s", i ? ", " : "", addr_format((struct in_addr){sorted[i]}, a));
	}
	fputs(" }", f);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

int control_ruleset_build(const struct dp_config *cfg, const struct control_view *v,
                          struct dp_fragment *out)
{
	dp_fragment_counter(out, "control_refused");
	if (v->n_addrs) {
		char *set = address_set(v);
		if (!set)
			return -ENOMEM;
		dp_fragment_guard(out, "ip daddr %s", set);
		free(set);
	}
	char ports[32];
	if (v->ports[0] && v->ports[1] && v->ports[0] != v->ports[1])
		snprintf(ports, sizeof(ports), "{ %u, %u }", v->ports[0], v->ports[1]);
	else if (v->ports[0] || v->ports[1])
		snprintf(ports, sizeof(ports), "%u", v->ports[0] ? v->ports[0] : v->ports[1]);
	else
		return out->status;
	dp_fragment_rule(out, DP_INPUT,
	                 "iifname != { \"%s\", \"lo\" } tcp dport %s counter name "
	                 "\"control_refused\" drop",
	                 cfg->uplink_if, ports);
	return out->status;
}
