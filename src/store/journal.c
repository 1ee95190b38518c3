/* The journal of applied commands and the orphans file it becomes: records
 * of (generation, index, term, command), rotated at 16 MiB, and which of
 * them a new generation's history lacks. */
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
/* A record's length with this bit set is followed by the entry's term; the
 * records of earlier journals have no term (see journal_in_history). */
#define RECORD_TERM 0x80000000u

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

void journal_append(struct journal *j, const struct journal_pos *pos, const void *data, size_t len)
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
	obuf_put_u64(&b, pos->generation);
	obuf_put_u64(&b, pos->index);
	obuf_put_u32(&b, (uint32_t)len | RECORD_TERM);
	obuf_put_u64(&b, pos->term);
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

bool journal_in_history(const struct journal_pos *pos, const struct journal_origin *o)
{
	/* A record without a term (term 0) is never placed: it goes to the
	 * merge rules, which find it present when it is. */
	return pos->generation + 1 == o->generation && pos->term != 0 &&
	       pos->term <= o->from_term && pos->index <= o->from_index;
}

typedef void (*orphan_fn)(void *userdata, const struct journal_pos *pos, const void *data,
                          size_t len);

/* Reads the next record into @data; 1 when there is one, 0 at the end. */
static int read_record(FILE *f, const char *path, uint8_t *data, struct journal_pos *pos,
                       uint32_t *ret_len)
{
	uint8_t head[20], term[8];
	if (fread(head, 1, sizeof(head), f) != sizeof(head))
		return 0;
	struct cursor c = cursor_init(head, sizeof(head));
	pos->generation = cursor_u64(&c);
	pos->index = cursor_u64(&c);
	uint32_t len = cursor_u32(&c);
	pos->term = 0;
	if (len & RECORD_TERM) {
		len &= ~RECORD_TERM;
		if (fread(term, 1, sizeof(term), f) != sizeof(term))
			len = RECORD_MAX + 1;
		struct cursor t = cursor_init(term, sizeof(term));
		pos->term = cursor_u64(&t);
	}
	if (len > RECORD_MAX || fread(data, 1, len, f) != len) {
		log_warn("store: %s ends in a partial record; ignoring it", path);
		return 0;
	}
	*ret_len = len;
	return 1;
}

static int each_in(const char *path, const struct journal_origin *o, orphan_fn fn, void *userdata)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	uint8_t *data = malloc(RECORD_MAX);
	struct journal_pos pos;
	uint32_t len;
	while (data && read_record(f, path, data, &pos, &len) == 1)
		if (pos.generation < o->generation && !journal_in_history(&pos, o))
			fn(userdata, &pos, data, len);
	fclose(f);
	if (!data)
		return -ENOMEM;
	free(data);
	return 0;
}

int journal_each_orphan(struct journal *j, const struct journal_origin *o, orphan_fn fn,
                        void *userdata)
{
	int r = each_in(j->orphans_old, o, fn, userdata);
	return r < 0 ? r : each_in(j->orphans, o, fn, userdata);
}

void journal_drop_orphans(struct journal *j)
{
	unlink(j->orphans_old);
	unlink(j->orphans);
}
