/* An asynchronous client of the JSON-line protocol over TCP, on a libuv
 * loop: how agents call each other's peer API (forwarded proposals, joins,
 * generation checks). ctl_call() makes one connection per call; a
 * ctl_conn carries calls one after the other, for a protocol whose steps
 * the server binds to the connection (the join of docs/trust.md). Each
 * call has a deadline. */
#pragma once

#include <uv.h>

#include "proto.h"

/* @status is 0 with @result (borrowed, valid during the callback) when the
 * peer answered ok; a negative errno when the call failed (connect, timeout:
 * -ETIMEDOUT, malformed reply: -EBADMSG), with @error describing it; or
 * -EREMOTEIO when the peer refused, with its reason in @error. Over TLS
 * (ctl_tls_default() set), also -EPROTO when the handshake failed and
 * -EACCES when the gate refused to send @cmd to the peer's key. */
typedef void (*ctl_call_cb)(void *userdata, int status, json_t *result, const char *error);

/* Calls @cmd with @args (stolen) at @address ("A.B.C.D:PORT"), over mutual
 * TLS 1.3 with ctl_tls_default()'s identity when there is one. @cb runs
 * exactly once, never from inside this function. Returns 0, or a negative
 * errno (then @cb never runs). */
int ctl_call(uv_loop_t *loop, const char *address, const char *cmd, json_t *args,
             unsigned timeout_ms, ctl_call_cb cb, void *userdata);

struct ctl_conn;

/* Connects to @address ("A.B.C.D:PORT") for calls in turn; calls may be
 * made at once, they wait for the connection. Returns 0 with *ret_conn, or
 * a negative errno. */
int ctl_conn_open(uv_loop_t *loop, const char *address, struct ctl_conn **ret_conn);

/* Calls @cmd with @args (stolen) on @conn, as ctl_call() does. One call at
 * a time: -EBUSY while one is in progress; -ENOTCONN once a call failed
 * other than by the peer's refusal (the connection is then of no more
 * use) or @conn is closing; -EACCES when, over TLS, the handshake is done
 * and the gate does not let @cmd go to the peer's key (the connection
 * stays of use; before the handshake, that refusal comes to @cb). @cb
 * runs exactly once when 0 is returned, never from inside this function;
 * it may make the next call. */
int ctl_conn_call(struct ctl_conn *conn, const char *cmd, json_t *args, unsigned timeout_ms,
                  ctl_call_cb cb, void *userdata);

/* Closes @conn (NULL: nothing); a call in progress gets -ECANCELED, from
 * inside this function. */
void ctl_conn_close(struct ctl_conn *conn);
