/* Who may ask what on the peer API (docs/control-protocol.md, "Who may
 * ask what"): the scopes (services/service.h, enum svc_scope) a connection
 * earns from who it is, and the guard that refuses, rate-limits and logs
 * before a request reaches its service.
 *
 * Who a client is comes from its TLS key when the cluster binds keys to
 * hosts, that is over TLS (store.tls, the default) in a cluster that admits
 * by attestation: then it is the host the key was admitted as
 * (ctl_client_peer_host()) and nothing else; a key no admitted host holds
 * is a stranger, whatever its address. Otherwise (store.tls = false, a
 * benchmark's plaintext baseline; or admission by the admin, whose
 * admissions name no key) it comes from the source address, a weak proof:
 * it holds because the AEEs drop what guests and devices send to the
 * control range, and the switches let a control address in only from the
 * port its agent sits on (docs/switch.md); a machine on an agent's own
 * wire could still speak in its name. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <netinet/in.h>

#include "lib/ratelimit.h"

struct store_state;

/* Requests per second, and the burst, that one source which is no member
 * may send: enough for a host that joins (a join every second, a challenge
 * and an answer every 2 s), not for a flood. */
#define PEER_JOIN_PER_S 5.0
#define PEER_JOIN_BURST 20.0
/* A refused source is logged at most once per this period. */
#define PEER_LOG_PERIOD_MS 60000

/* The scopes of a client of the peer API, with @st the committed store
 * (NULL: not open yet), @source its address, @by_key whether its key
 * says who it is (above), @tls_host the admitted host its key was admitted
 * as (NULL: none):
 *   SVC_JOIN always;
 *   SVC_PEER when it is a member of the store (@by_key: @tls_host names
 *     one; else @source is the host part of a member's peer address);
 *   SVC_RELAY when that member is admitted, or when no host of the cluster
 *     is (a network whose switches admit no one, or none yet).
 * *ret_member (may be NULL) is set to the member's name, or NULL. */
unsigned peer_scope(const struct store_state *st, struct in_addr source, bool by_key,
                    const char *tls_host, const char **ret_member);

struct peer_guard {
	/* The requests of sources that are no member, and when each was last
	 * logged as over its rate. */
	struct rate_limiter joins;
	struct rate_limiter logs; /* when each source was last logged for a refused command */
};

void peer_guard_init(struct peer_guard *g);

/* Whether a request for @cmd, which its owner accepts in @wanted scopes
 * (0: no service owns it), may go on from a client with the scopes
 * @granted at @source, at @now_ms: 0 when it may (an unknown command
 * too: dispatch answers it), -EPERM with *ret_error when the command is
 * not for this client, -EBUSY with *ret_error when the source is no
 * member and over its rate. Each kind of refusal is logged at most once per
 * source per PEER_LOG_PERIOD_MS. */
int peer_guard_check(struct peer_guard *g, struct in_addr source, unsigned granted,
                     unsigned wanted, const char *cmd, uint64_t now_ms, char **ret_error);
