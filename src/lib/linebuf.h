/* A growing receive buffer for line protocols on libuv streams: the
 * alloc_cb of uv_read_start() hands out its free tail. */
#pragma once

#include <stddef.h>

#include <uv.h>

struct linebuf {
	char *data;
	size_t len, cap;
};

/* Makes room for at least 4 KiB more and points @buf at the free tail (an
 * empty buffer when out of memory, which libuv reports as UV_ENOBUFS). */
void linebuf_alloc(struct linebuf *lb, uv_buf_t *buf);

/* Appends @len bytes of @data (what a TLS session decrypted). Returns 0 or
 * -ENOMEM. */
int linebuf_append(struct linebuf *lb, const char *data, size_t len);

/* Drops the first @n bytes (the lines already handled). */
void linebuf_consume(struct linebuf *lb, size_t n);

void linebuf_free(struct linebuf *lb);
