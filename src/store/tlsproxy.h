/* Mutual TLS 1.3 under Raft: a connection of libraft's TCP transport, once
 * the generation fence let it through, runs a TLS handshake with the
 * agent's identity (api/tls.h); the peer's key is judged against the Raft
 * id the connection is for, and libraft is handed the plaintext end of a
 * socketpair that the proxy joins to the TLS session (as go-dqlite's proxy
 * joins a unix socket to a TLS connection). Private to src/store. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

struct ctl_tls;
struct tls_proxy;

/* Whether the key with fingerprint @fp may speak Raft as server @raft_id:
 * 0, or a negative errno with *ret_error. */
typedef int (*tls_proxy_check_fn)(void *userdata, const char *fp, uint64_t raft_id,
                                  char **ret_error);

/* The handshake is over: @stream (a uv_pipe_t allocated with raft_malloc(),
 * for libraft, which frees it) carries the session's plaintext; or @stream
 * is NULL and @status a libraft error code (RAFT_NOCONNECTION,
 * RAFT_CANCELED). */
typedef void (*tls_proxy_ready_fn)(void *userdata, uv_stream_t *stream, int status);

/* Takes over @tcp (allocated with raft_malloc(), connected, nothing of TLS
 * read yet) as the TLS @server or client, for server @raft_id: the proxy
 * is put on the list @head, asks @check about the peer once the handshake
 * is done (within a second), then calls @ready exactly once (never from
 * inside this call). Returns 0, or -ENOMEM (then @tcp is closed and @ready
 * never runs). */
int tls_proxy_start(uv_loop_t *loop, struct ctl_tls *tls, uv_stream_t *tcp, bool server,
                    uint64_t raft_id, tls_proxy_check_fn check, void *check_userdata,
                    tls_proxy_ready_fn ready, void *ready_userdata, struct tls_proxy **head);

/* Asks @check again about every proxy on @head whose handshake is done and
 * closes those it now refuses (a revoked host's connections). Returns how
 * many it closed. */
int tls_proxy_recheck(struct tls_proxy **head);

/* Forwards at once what libraft has written to the socketpairs of the
 * proxies on @head that dialled (libraft writes on no other) one of the
 * @n_ids servers @ids, and the loop has not read yet. The proxy otherwise
 * reads them at the loop's next poll, after whatever work the current
 * callbacks do; the fence calls this for the voters at the end of each
 * loop iteration and around applying an entry (docs/store.md). */
void tls_proxy_pump(struct tls_proxy **head, const uint64_t *ids, size_t n_ids);

/* Closes every proxy on @head: one still in its handshake calls its @ready
 * with RAFT_CANCELED. */
void tls_proxy_close_all(struct tls_proxy **head);
