/* The line receive buffer: see linebuf.h. */
#include "linebuf.h"

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
