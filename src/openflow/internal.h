/* Helpers shared inside the codec (not part of its interface). */
#pragma once

#include "ofp.h"

#define OF13_MP_HEADER_LEN 8

/* Checks a message's header (of13_header_decode()) and that it is of
 * @type, and positions @ret after the header. */
enum of13_err of13_body(const void *data, size_t len, uint8_t type, struct cursor *ret);

/* Starts a multipart request or reply (@type) of @mp_type. */
void of13_mp_start(struct obuf *b, uint8_t type, uint32_t xid, uint16_t mp_type, uint16_t flags);

/* Positions @ret after the multipart header of a message of @type and
 * @mp_type. */
enum of13_err of13_mp_body(const void *data, size_t len, uint8_t type, uint16_t mp_type,
                           uint16_t *ret_flags, struct cursor *ret);

/* Writes a big-endian u16 at @at (a length known only afterwards). */
void of13_put_len(struct obuf *b, size_t at, size_t len);
