/* Conntrack accounting for NAT (nat-internal.h): how many translated flows
 * use this host's public ports, which decides when it claims another
 * block. */
#include "datapath/conntrack.h"
#include "services/nat/nat-internal.h"

static bool own_port(struct nat *n, unsigned port)
{
	return port < 65536 && nat_port_owner(nat_state(n), (uint16_t)port) == n->self;
}

static bool is_public(struct nat *n, struct in_addr a)
{
	for (unsigned i = 0; i < n->o.n_publics; i++)
		if (n->o.publics[i].s_addr == a.s_addr)
			return true;
	return false;
}

/* A translated flow using this host's public ports: the reply direction
 * of a conntrack entry is addressed to a public address and one of our
 * ports (ICMP: echo id). */
static bool in_use(void *userdata, const struct dp_ct_entry *e)
{
	struct nat *n = userdata;
	const struct dp_ct_tuple *r = &e->reply;
	if (!r->has_port && !r->has_id)
		return false;
	return is_public(n, r->dst) && own_port(n, r->has_port ? r->dport : r->id);
}

long nat_usage_count(struct nat *n)
{
	unsigned long k;
	return dp_conntrack_count(in_use, n, &k) == 0 ? (long)k : -1;
}
