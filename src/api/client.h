/* An asynchronous client of the JSON-line protocol over TCP, on a libuv
 * loop: how agents call each other's peer API (forwarded proposals, joins,
 * generation checks). One connection per call; each call has a deadline. */
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
