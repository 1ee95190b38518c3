/* Growable arrays: see array.h. */
#include "array.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int array_reserve(void **v, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return 0;
	size_t next = *cap ? *cap : 8;
	while (next < need) {
		if (next > SIZE_MAX / 2)
			return -EOVERFLOW;
		next *= 2;
	}
	if (size && next > SIZE_MAX / size)
		return -EOVERFLOW;
	void *p = realloc(*v, next * size);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = next;
	return 0;
}
