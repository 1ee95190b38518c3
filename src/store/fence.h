/* The generation fence: libraft's TCP transport behind an exchange of
 * cluster generations on each new connection (see fence.c). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

struct ctl_tls;
struct fence_shake;
struct tls_proxy;

struct fence {
	struct raft_uv_transport t;   /* what Raft's uv I/O is given */
	struct raft_uv_transport tcp; /* libraft's TCP transport */
	uv_loop_t *loop;
	/* The generation this host belongs to (0: none yet). */
	uint64_t (*generation)(void *userdata);
	/* A peer is at @generation, newer than this host's. Called from the
	 * transport: the host acts on it later, not inside the call. */
	void (*newer)(void *userdata, uint64_t generation);
	void *userdata;
	raft_uv_accept_cb accept_cb;
	raft_uv_transport_close_cb close_cb;
	struct fence_shake *shakes; /* exchanges under way */
	/* Mutual TLS after the exchange (tlsproxy.h) when @tls is set (the
	 * agent's identity, api/tls.h), with @check judging each peer's key
	 * against the server id (NULL: every key). */
	struct ctl_tls *tls;
	int (*check)(void *userdata, const char *fp, uint64_t raft_id, char **ret_error);
	struct tls_proxy *proxies; /* TLS connections, in their handshake or running */
	uint64_t pumped_ns;        /* uv_hrtime() of the last fence_pump() */
	/* The voters' ids, at most @max (store_voters()): the connections
	 * fence_pump() drains, since a commit waits only for them. */
	size_t (*voters)(void *userdata, uint64_t *ids, size_t max);
	uv_check_t *pump_check; /* fence_pump() after each poll of the loop */
};

/* Whether two hosts at generations @mine and @theirs may talk Raft: when
 * either has none yet, or both have the same. */
bool fence_admits(uint64_t mine, uint64_t theirs);

/* Sets up @f (its generation and newer callbacks, userdata set by the
 * caller before Raft starts); returns 0 or a libraft error code. */
int fence_init_transport(struct fence *f, uv_loop_t *loop);
/* Judges every running TLS connection's key again and closes those that
 * @check now refuses (a host revoked or removed). Returns how many. */
int fence_recheck(struct fence *f);

/* Forwards what libraft wrote to the voters' TLS connections and the loop
 * has not read yet (tls_proxy_pump()), at most every 100 µs. The fence
 * does it itself at the end of each loop iteration. */
void fence_pump(struct fence *f);

/* Releases the TCP transport once libraft closed @f->t. */
void fence_close_transport(struct fence *f);
