/* The one way an error message travels in ETTM: a function that can fail
 * with something to say takes `char **ret_error` and, on failure, sets it to
 * a newly allocated message (free() it; NULL when even that allocation
 * failed) and returns a negative errno. On success *ret_error is untouched.
 * Errnos are returned as they are, never OR-ed together. */
#pragma once

#include <stdarg.h>

/* Sets *@ret_error to the formatted message and returns @r, so a failure
 * reads `return error_set(ret_error, -EINVAL, "field \"x\": ...")`. */
int error_set(char **ret_error, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int error_setv(char **ret_error, int r, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
