/* Small files in a state directory, written atomically. */
#pragma once

/* Creates @path and its parents (mode 0700) if missing. Returns 0 or a
 * negative errno. */
int file_mkdir_p(const char *path);

/* Reads DIR/NAME into a newly allocated NUL-terminated *ret_text. Returns 0,
 * -ENOENT, or another negative errno. Files over 1 MiB are refused (-EFBIG). */
int file_read_state(const char *dir, const char *name, char **ret_text);

/* Writes @text to DIR/NAME through a temporary file and rename(), so a crash
 * leaves the old or the new content, never a mix. Returns 0 or -errno. */
int file_write_state(const char *dir, const char *name, const char *text);

/* Writes @value to the existing file @path through one open file, in one
 * write() when the file takes it all, as a sysctl under /proc/sys wants
 * it; a short write goes on where it stopped (a large bitmap such as
 * net.ipv4.ip_local_reserved_ports takes a page at a time, and adds each
 * later piece to the first). Returns 0, -EIO when a write takes nothing,
 * or -errno. */
int file_write_value(const char *path, const char *value);
