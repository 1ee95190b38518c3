/* Which TLS keys the agents hear, and about what (docs/trust.md, "Who may
 * speak"): the decision behind the peer API's gate (api/tls.h), a pure
 * function of a replica's state, so that it is tested without a network. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/tls.h"
#include "store/store.h"

/* Decides whether the key with fingerprint @fp may send (or be sent) @cmd.
 * A key is an admitted host's when an admission names it and the host's
 * last attestation, if there is one, did not end it (a revocation commits
 * the attestation before it deletes the admission): then @ret_host (of
 * @host_size bytes) is set to the host and every command passes, except
 * on a call to @dialled (a client's; NULL on a server) when that is the
 * peer address of a member that is another host: an admitted host that
 * answers in another's place is not spoken with. A call from a replica
 * that knows no member (a host joining) goes only to a peer whose
 * certificate the network's CA signed, where there is one: @ca is what it
 * said of this peer's (api/tls.h). Any other
 * key passes only for the join protocol (store.hello, store.join,
 * trust.challenge, trust.prove) when @attesting (this cluster admits by
 * attestation), and for everything when not (there is no evidence to judge
 * a key by; the channel is still encrypted), with @ret_host "". Returns 0,
 * or -EACCES with *ret_error saying why. */
int trust_key_check(const struct store_state *st, bool attesting, const char *fp,
                    enum ctl_tls_ca ca, const char *cmd, const char *dialled, char *ret_host,
                    size_t host_size, char **ret_error);

/* Decides whether the key @fp may speak Raft as server @raft_id. A key
 * that an admission proved (an admitted host's, as above, or one the
 * host's attestation row keeps while its measurement is not trusted)
 * speaks only as that host's server id, and not at all once the admin
 * revoked the host. A host whose measurement is no longer trusted keeps
 * replicating, so that removing a measurement by mistake leaves the
 * cluster its quorum (docs/trust.md); one whose own quote showed a new
 * untrusted measurement (TRUST_ATTEST_CHANGED) does not, unless most
 * voters are such hosts. Any other key is refused when
 * @attesting: a host replicates the store only once admitted, so a
 * stranger that joined as a spare member reads nothing. A replica that
 * knows no member yet, a host joining, hears only @joined_key, the key
 * the leader that accepted its join named (store_joined_key()), and any
 * key while it knows none (NULL or ""). When not
 * attesting, a key passes unless the id it claims is that of a host
 * admitted with another key. Returns 0, or -EACCES with *ret_error. */
int trust_raft_key_check(const struct store_state *st, bool attesting, const char *joined_key,
                         const char *fp, uint64_t raft_id, char **ret_error);
