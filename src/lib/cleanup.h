/* Scope-bound cleanup in the manner of systemd's _cleanup_: a variable
 * declared with one of these is released when it goes out of scope, so an
 * error path is a plain return. Each destructor accepts the empty value
 * (NULL, -1). TAKE_PTR()/TAKE_FD() hand the value on and leave the empty
 * one behind, for the success path that keeps it. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void cleanup_freep(void *p)
{
	free(*(void **)p);
}

static inline void cleanup_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

static inline void cleanup_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

static inline void cleanup_json_decrefp(json_t **j)
{
	json_decref(*j);
}

#define _cleanup_free_   _cleanup_(cleanup_freep)
#define _cleanup_fclose_ _cleanup_(cleanup_fclosep)
#define _cleanup_close_  _cleanup_(cleanup_closep)
#define _cleanup_json_   _cleanup_(cleanup_json_decrefp)

#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) take_ptr_ = (p);                                                     \
		(p) = NULL;                                                                        \
		take_ptr_;                                                                         \
	})

#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int take_fd_ = (fd);                                                               \
		(fd) = -1;                                                                         \
		take_fd_;                                                                          \
	})
