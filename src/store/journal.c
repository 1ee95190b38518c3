#include "journal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"

#define ROTATE_BYTES (16u << 20)
#define RECORD_MAX   (1u << 20)

struct journal {
	char path[PATH_MAX], old_path[PATH_MAX];
	char orphans[PATH_MAX], orphans_old[PATH_MAX];
	FILE *f;
	long size;
};

static void paths(struct journal *j, const char *dir)
{
	snprintf(j->path, sizeof(j->path), "%s/journal", dir);
	snprintf(j->old_path, sizeof(j->old_path), "%s/journal.1", dir);
	snprintf(j->orphans, sizeof(j->orphans), "%s/orphans", dir);
	snprintf(j->orphans_old, sizeof(j->orphans_old), "%s/orphans.1", dir);
}

static int reopen(struct journal *j)
{
	if (j->f)
		fclose(j->f);
	j->f = fopen(j->path, "ae");
	if (!j->f)
		return -errno;
	fseek(j->f, 0, SEEK_END);
	j->size = ftell(j->f);
	return 0;
}

int journal_open(const char *dir, struct journal **ret_journal)
{
	struct journal *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	paths(j, dir);
	int r = reopen(j);
	if (r < 0) {
		free(j);
		return r;
	}
	*ret_journal = j;
	return 0;
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	if (j->f)
		fclose(j->f);
	free(j);
}

void journal_append(struct journal *j, uint64_t generation, uint64_t index, const void *data,
                    size_t len)
{
	if (!j || !j->f)
		return;
	if (j->size > (long)ROTATE_BYTES) {
		fclose(j->f);
		j->f = NULL;
		rename(j->path, j->old_path);
		if (reopen(j) < 0) {
			log_warn("store: journal %s: %s", j->path, strerror(errno));
			return;
		}
	}
	struct obuf b = {0};
	obuf_put_u64(&b, generation);
	obuf_put_u64(&b, index);
	obuf_put_u32(&b, (uint32_t)len);
	obuf_put_bytes(&b, data, len);
	if (!b.failed && fwrite(b.data, 1, b.len, j->f) == b.len && fflush(j->f) == 0)
		j->size += (long)b.len;
	else
		log_warn("store: cannot write the journal %s", j->path);
	obuf_free(&b);
}

int journal_take_orphans(struct journal *j)
{
	if (j->f)
		fclose(j->f);
	j->f = NULL;
	unlink(j->orphans_old);
	unlink(j->orphans);
	rename(j->old_path, j->orphans_old);
	rename(j->path, j->orphans);
	return reopen(j);
}

bool journal_has_orphans(struct journal *j)
{
	return access(j->orphans, F_OK) == 0 || access(j->orphans_old, F_OK) == 0;
}

static int each_in(const char *path, uint64_t generation, uint64_t from_index,
                   void (*fn)(void *userdata, const void *data, size_t len), void *userdata)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	uint8_t head[20];
	uint8_t *data = malloc(RECORD_MAX);
	int r = data ? 0 : -ENOMEM;
	while (r == 0 && fread(head, 1, sizeof(head), f) == sizeof(head)) {
		struct cursor c = cursor_init(head, sizeof(head));
		uint64_t gen = cursor_u64(&c), index = cursor_u64(&c);
		uint32_t len = cursor_u32(&c);
		if (len > RECORD_MAX || fread(data, 1, len, f) != len) {
			log_warn("store: %s ends in a partial record; ignoring it", path);
			break;
		}
		if (gen < generation && index > from_index)
			fn(userdata, data, len);
	}
	free(data);
	fclose(f);
	return r;
}

int journal_each_orphan(struct journal *j, uint64_t generation, uint64_t from_index,
                        void (*fn)(void *userdata, const void *data, size_t len), void *userdata)
{
	int r = each_in(j->orphans_old, generation, from_index, fn, userdata);
	return r < 0 ? r : each_in(j->orphans, generation, from_index, fn, userdata);
}

void journal_drop_orphans(struct journal *j)
{
	unlink(j->orphans_old);
	unlink(j->orphans);
}
