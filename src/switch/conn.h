/* One OpenFlow 1.3 connection from this agent to a switch, on the agent's
 * libuv loop: connects (and reconnects every second while the switch is
 * away), negotiates the version, learns the datapath id, keeps the
 * connection alive with echoes, and matches replies to requests by xid
 * (multipart replies are delivered message by message). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "lib/buf.h"
#include "openflow/ofp.h"

struct of_conn;

struct of_conn_ops {
	/* The handshake finished: the switch speaks 1.3 and is @dpid. */
	void (*up)(void *userdata, struct of_conn *c, uint64_t dpid);
	/* The connection went away (@why); it will be tried again. */
	void (*down)(void *userdata, struct of_conn *c, const char *why);
	/* A message that answers no request: packet_in, port_status, and
	 * errors for messages sent without a callback. */
	void (*message)(void *userdata, struct of_conn *c, const struct of13_header *h,
	                const uint8_t *msg, size_t len);
};

/* A reply to a request: @status 0 with the reply message (one per part of a
 * multipart reply; @last on the final one), -EREMOTEIO with an OFPT_ERROR
 * message, or -ECONNRESET (msg NULL) when the connection went first. */
typedef void (*of_reply_cb)(void *userdata, struct of_conn *c, int status, const uint8_t *msg,
                            size_t len, bool last);

/* Starts connecting to @address ("A.B.C.D:PORT"), over TLS with @tls's
 * identity and the network's CA (ctl_tls_set_network_ca()), or plain TCP when @tls
 * is NULL. Returns 0, -EINVAL or -ENOMEM. */
struct ctl_tls;
int of_conn_open(uv_loop_t *loop, const char *address, struct ctl_tls *tls,
                 const struct of_conn_ops *ops, void *userdata, struct of_conn **ret);
/* Closes and frees @c (asynchronously); pending callbacks get -ECONNRESET. */
void of_conn_close(struct of_conn *c);

bool of_conn_is_up(const struct of_conn *c);
const char *of_conn_address(const struct of_conn *c);
/* Milliseconds since the switch last sent anything (echo replies come
 * every 2 s); UINT64_MAX while not connected. */
uint64_t of_conn_silent_ms(const struct of_conn *c);

/* A fresh transaction id. */
uint32_t of_conn_xid(struct of_conn *c);

/* Sends the finished message in @b (freed) and, with @cb, calls it with the
 * reply. Returns 0, -ENOTCONN or -ENOMEM. */
int of_conn_send(struct of_conn *c, struct obuf *b, of_reply_cb cb, void *userdata);
