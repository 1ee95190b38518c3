/* The generation fence: libraft's TCP transport behind an exchange of
 * cluster generations on each new connection (see fence.c). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

struct fence_shake;

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
};

/* Whether two hosts at generations @mine and @theirs may talk Raft: when
 * either has none yet, or both have the same. */
bool fence_admits(uint64_t mine, uint64_t theirs);

/* Sets up @f (its generation and newer callbacks, userdata set by the
 * caller before Raft starts); returns 0 or a libraft error code. */
int fence_init_transport(struct fence *f, uv_loop_t *loop);
/* Releases the TCP transport once libraft closed @f->t. */
void fence_close_transport(struct fence *f);
