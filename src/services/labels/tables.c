/* The labels table (labels.h): its encoding, checks, merge rule and JSON. */
#include <ctype.h>
#include <string.h>

#include "labels.h"
#include "lib/buf.h"

bool labels_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n >= STORE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i]))
			return false;
	return true;
}

bool labels_text_valid(const char *text)
{
	size_t n = strlen(text);
	if (n == 0 || n >= LABELS_TEXT_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
			return false;
	return true;
}

static void label_encode(struct obuf *b, const void *row)
{
	const struct labels_label *l = row;
	obuf_put_str(b, l->name);
	obuf_put_str(b, l->text);
	obuf_put_u64(b, l->set_ms);
}

static void label_decode(struct cursor *c, void *row)
{
	struct labels_label *l = row;
	cursor_str(c, l->name, sizeof(l->name));
	cursor_str(c, l->text, sizeof(l->text));
	l->set_ms = cursor_u64(c);
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct labels_label *)a)->name,
	              ((const struct labels_label *)b)->name);
}

static json_t *label_json(const void *row)
{
	const struct labels_label *l = row;
	return json_pack("{s:s, s:s, s:I}", "name", l->name, "text", l->text, "set_ms",
	                 (json_int_t)l->set_ms);
}

static int label_apply(struct store_state *s, const struct store_cmd *cmd, struct store_result *res)
{
	const struct labels_label *l = STORE_CMD_ROW(cmd, const struct labels_label);
	if (!labels_name_valid(l->name)) {
		store_reject(res, "a label's name is 1 to %d letters, digits, '.', '_' or '-'",
		             STORE_NAME_MAX - 1);
		return 0;
	}
	if (cmd->op == STORE_PUT && !labels_text_valid(l->text)) {
		store_reject(res, "a label is 1 to %d printable characters", LABELS_TEXT_MAX - 1);
		return 0;
	}
	return store_apply_simple(s, cmd, res, "label");
}

/* The admin's later word wins: an orphaned label (or its removal) is
 * re-applied unless the new cluster set that name's label later. */
static enum store_merge label_merge(const struct store_state *s, struct store_cmd *cmd,
                                    char **ret_reason)
{
	(void)ret_reason;
	const struct labels_label *l = STORE_CMD_ROW(cmd, const struct labels_label);
	const struct labels_label *row = store_table_get(s, LABELS_TABLE, l);
	return store_merge_later(cmd, row != NULL, row ? row->set_ms : 0, l->set_ms);
}

static const struct store_table labels_table = {
    .id = LABELS_TABLE,
    .name = "labels",
    .version = 4,
    .row_size = sizeof(struct labels_label),
    .cmp = label_cmp,
    .encode = label_encode,
    .decode = label_decode,
    .apply = label_apply,
    .merge = label_merge,
    .to_json = label_json,
};

const struct store_table *const labels_tables[] = {&labels_table, NULL};
