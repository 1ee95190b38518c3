/* Who may ask what on the peer API (peers.h). */
#include "peers.h"

#include <errno.h>
#include <string.h>

#include "api/server.h"
#include "lib/addr.h"
#include "lib/error.h"
#include "lib/log.h"
#include "services/service.h"
#include "store/tables.h"
#include "trust/tables.h"

/* The member whose peer API address is on @source, or NULL. */
static const struct store_member *member_at(const struct store_state *st, struct in_addr source)
{
	size_t n;
	const struct store_member *m = store_rows(st, STORE_MEMBERS, &n);
	for (size_t i = 0; i < n; i++) {
		struct sockaddr_in sa;
		if (ctl_parse_address(m[i].peer, &sa) == 0 &&
		    sa.sin_addr.s_addr == source.s_addr)
			return &m[i];
	}
	return NULL;
}

unsigned peer_scope(const struct store_state *st, struct in_addr source, bool by_key,
                    const char *tls_host, const char **ret_member)
{
	unsigned scope = SVC_JOIN;
	const struct store_member *m = NULL;
	if (st && by_key)
		m = tls_host ? store_member_find_name(st, tls_host) : NULL;
	else if (st)
		m = member_at(st, source);
	if (m) {
		scope |= SVC_PEER;
		if (trust_admission_find(st, m->name) || store_count(st, TRUST_ADMISSIONS) == 0)
			scope |= SVC_RELAY;
	}
	if (ret_member)
		*ret_member = m ? m->name : NULL;
	return scope;
}

void peer_guard_init(struct peer_guard *g)
{
	rate_limiter_init(&g->joins, PEER_JOIN_PER_S, PEER_JOIN_BURST);
	/* Only its log periods are used. */
	rate_limiter_init(&g->logs, 0, 1);
}

static const char *needs(unsigned wanted)
{
	if (wanted & SVC_JOIN)
		return "anyone";
	if (wanted & SVC_PEER)
		return "a member of the store";
	if (wanted & SVC_RELAY)
		return "an admitted member of the store, for its admin";
	return "the local control socket only";
}

int peer_guard_check(struct peer_guard *g, struct in_addr source, unsigned granted,
                     unsigned wanted, const char *cmd, uint64_t now_ms, char **ret_error)
{
	char addr[ADDR_STR_MAX];
	addr_format(source, addr);
	if (!(granted & SVC_PEER) && !rate_take(&g->joins, source.s_addr, now_ms)) {
		if (rate_log_due(&g->joins, source.s_addr, now_ms, PEER_LOG_PERIOD_MS))
			log_warn("peer API: %s is over its rate (%.0f requests a second); refusing "
			         "it (logged once a minute)",
			         addr, PEER_JOIN_PER_S);
		return error_set(ret_error, -EBUSY,
		                 "too many requests from %s, which is no member of the store; "
		                 "slow down",
		                 addr);
	}
	if (!wanted || (wanted & granted))
		return 0;
	const char *who = (granted & SVC_RELAY)  ? "an admitted member"
	                  : (granted & SVC_PEER) ? "a member that is not admitted"
	                                         : "no member of the store";
	if (rate_log_due(&g->logs, source.s_addr, now_ms, PEER_LOG_PERIOD_MS))
		log_warn("peer API: refused \"%s\" from %s (%s; it is for %s; logged once a "
		         "minute per source)",
		         cmd, addr, who, needs(wanted));
	return error_set(ret_error, -EPERM, "\"%s\" is not accepted from %s (%s): it is for %s",
	                 cmd, addr, who, needs(wanted));
}
