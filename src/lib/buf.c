/* The output buffer and the input cursor: see buf.h. */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *reserve(struct obuf *b, size_t n)
{
	if (b->failed)
		return NULL;
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap - b->len < n)
			cap *= 2;
		uint8_t *p = realloc(b->data, cap);
		if (!p) {
			b->failed = true;
			return NULL;
		}
		b->data = p;
		b->cap = cap;
	}
	uint8_t *p = b->data + b->len;
	b->len += n;
	return p;
}

void obuf_put_bytes(struct obuf *b, const void *src, size_t n)
{
	uint8_t *p = reserve(b, n);
	if (p && n)
		memcpy(p, src, n);
}

void obuf_put_u8(struct obuf *b, uint8_t v)
{
	obuf_put_bytes(b, &v, 1);
}

void obuf_put_u16(struct obuf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	obuf_put_bytes(b, x, sizeof(x));
}

void obuf_put_u32(struct obuf *b, uint32_t v)
{
	obuf_put_u16(b, (uint16_t)(v >> 16));
	obuf_put_u16(b, (uint16_t)v);
}

void obuf_put_u64(struct obuf *b, uint64_t v)
{
	obuf_put_u32(b, (uint32_t)(v >> 32));
	obuf_put_u32(b, (uint32_t)v);
}

void obuf_put_str(struct obuf *b, const char *s)
{
	size_t n = strlen(s);
	if (n > UINT16_MAX) {
		b->failed = true;
		return;
	}
	obuf_put_u16(b, (uint16_t)n);
	obuf_put_bytes(b, s, n);
}

int obuf_finish(struct obuf *b, uint8_t **ret_data, size_t *ret_len)
{
	if (b->failed) {
		obuf_free(b);
		return -ENOMEM;
	}
	*ret_data = b->data;
	*ret_len = b->len;
	*b = (struct obuf){0};
	return 0;
}

void obuf_free(struct obuf *b)
{
	free(b->data);
	*b = (struct obuf){0};
}

const uint8_t *cursor_bytes(struct cursor *c, size_t n)
{
	if (c->failed || c->left < n) {
		c->failed = true;
		return NULL;
	}
	const uint8_t *p = c->p;
	c->p += n;
	c->left -= n;
	return p;
}

uint8_t cursor_u8(struct cursor *c)
{
	const uint8_t *p = cursor_bytes(c, 1);
	return p ? p[0] : 0;
}

uint16_t cursor_u16(struct cursor *c)
{
	const uint8_t *p = cursor_bytes(c, 2);
	return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

uint32_t cursor_u32(struct cursor *c)
{
	uint32_t hi = cursor_u16(c);
	return hi << 16 | cursor_u16(c);
}

uint64_t cursor_u64(struct cursor *c)
{
	uint64_t hi = cursor_u32(c);
	return hi << 32 | cursor_u32(c);
}

void cursor_str(struct cursor *c, char *out, size_t size)
{
	uint16_t n = cursor_u16(c);
	const uint8_t *p = cursor_bytes(c, n);
	if (!p || n >= size || memchr(p, '\0', n)) {
		c->failed = true;
		if (size)
			out[0] = '\0';
		return;
	}
	memcpy(out, p, n);
	out[n] = '\0';
}
