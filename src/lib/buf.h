/* Binary encoding helpers: a growable output buffer and a bounds-checked
 * input cursor that can only pull what is there (network and disk input is
 * never trusted; a length field is checked before it is used). Integers are
 * big-endian. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct obuf {
	uint8_t *data;
	size_t len, cap;
	bool failed; /* an allocation failed; every later put is a no-op */
};

void obuf_put_u8(struct obuf *b, uint8_t v);
void obuf_put_u16(struct obuf *b, uint16_t v);
void obuf_put_u32(struct obuf *b, uint32_t v);
void obuf_put_u64(struct obuf *b, uint64_t v);
void obuf_put_bytes(struct obuf *b, const void *p, size_t n);
/* A string as a u16 length and its bytes (no NUL). */
void obuf_put_str(struct obuf *b, const char *s);

/* Hands the bytes to the caller (free()); NULL and -ENOMEM when a put
 * failed. */
int obuf_finish(struct obuf *b, uint8_t **ret_data, size_t *ret_len);
void obuf_free(struct obuf *b);

struct cursor {
	const uint8_t *p;
	size_t left;
	bool failed; /* a pull wanted more than was there; sticky */
};

static inline struct cursor cursor_init(const void *p, size_t len)
{
	return (struct cursor){.p = p, .left = len};
}

/* Each pull returns 0 (and the value) on failure, and marks the cursor
 * failed; check cursor_ok() once at the end. */
uint8_t cursor_u8(struct cursor *c);
uint16_t cursor_u16(struct cursor *c);
uint32_t cursor_u32(struct cursor *c);
uint64_t cursor_u64(struct cursor *c);
const uint8_t *cursor_bytes(struct cursor *c, size_t n);
/* A u16-length string into @out (NUL-terminated); fails when it does not fit
 * in @size or contains a NUL byte. */
void cursor_str(struct cursor *c, char *out, size_t size);

static inline bool cursor_ok(const struct cursor *c)
{
	return !c->failed;
}
