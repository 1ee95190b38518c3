/* The line receive buffer: see linebuf.h. */
#include "linebuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void linebuf_alloc(struct linebuf *lb, uv_buf_t *buf)
{
	if (lb->cap - lb->len < 4096) {
		size_t cap = lb->cap ? lb->cap * 2 : 8192;
		char *p = realloc(lb->data, cap);
		if (!p) {
			*buf = uv_buf_init(NULL, 0);
			return;
		}
		lb->data = p;
		lb->cap = cap;
	}
	*buf = uv_buf_init(lb->data + lb->len, (unsigned)(lb->cap - lb->len));
}

int linebuf_append(struct linebuf *lb, const char *data, size_t len)
{
	if (lb->cap - lb->len < len) {
		size_t cap = lb->cap ? lb->cap : 8192;
		while (cap - lb->len < len)
			cap *= 2;
		char *p = realloc(lb->data, cap);
		if (!p)
			return -ENOMEM;
		lb->data = p;
		lb->cap = cap;
	}
	memcpy(lb->data + lb->len, data, len);
	lb->len += len;
	return 0;
}

void linebuf_consume(struct linebuf *lb, size_t n)
{
	memmove(lb->data, lb->data + n, lb->len - n);
	lb->len -= n;
}

void linebuf_free(struct linebuf *lb)
{
	free(lb->data);
	*lb = (struct linebuf){0};
}
