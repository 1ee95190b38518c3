/* flow_mod (spec 7.3.4.1). */
#include <inttypes.h>
#include <string.h>

#include "internal.h"

void of13_flow_mod_init(struct of13_flow_mod *fm, uint8_t command)
{
	*fm = (struct of13_flow_mod){
	    .command = command,
	    .buffer_id = OF13_NO_BUFFER,
	    .out_port = OF13_PORT_ANY,
	    .out_group = OF13_GROUP_ANY,
	};
}

enum of13_err of13_flow_mod_decode(const void *data, size_t len, struct of13_flow_mod *ret)
{
	struct cursor c;
	enum of13_err e = of13_body(data, len, OF13_FLOW_MOD, &c);
	if (e)
		return e;
	struct of13_flow_mod fm = {
	    .cookie = cursor_u64(&c),
	    .cookie_mask = cursor_u64(&c),
	    .table_id = cursor_u8(&c),
	    .command = cursor_u8(&c),
	    .idle_timeout = cursor_u16(&c),
	    .hard_timeout = cursor_u16(&c),
	    .priority = cursor_u16(&c),
	    .buffer_id = cursor_u32(&c),
	    .out_port = cursor_u32(&c),
	    .out_group = cursor_u32(&c),
	    .flags = cursor_u16(&c),
	};
	cursor_u16(&c); /* pad */
	if (!cursor_ok(&c))
		return OF13_ERR_BAD_LEN;
	if ((e = of13_match_decode(&c, &fm.match)) ||
	    (e = of13_instructions_decode(&c, fm.instructions, &fm.n_instructions)))
		return e;
	*ret = fm;
	return OF13_OK;
}

void of13_flow_mod_encode(struct obuf *b, uint32_t xid, const struct of13_flow_mod *fm)
{
	of13_start(b, OF13_FLOW_MOD, xid);
	obuf_put_u64(b, fm->cookie);
	obuf_put_u64(b, fm->cookie_mask);
	obuf_put_u8(b, fm->table_id);
	obuf_put_u8(b, fm->command);
	obuf_put_u16(b, fm->idle_timeout);
	obuf_put_u16(b, fm->hard_timeout);
	obuf_put_u16(b, fm->priority);
	obuf_put_u32(b, fm->buffer_id);
	obuf_put_u32(b, fm->out_port);
	obuf_put_u32(b, fm->out_group);
	obuf_put_u16(b, fm->flags);
	obuf_put_u16(b, 0);
	of13_match_encode(b, &fm->match);
	of13_instructions_encode(b, fm->instructions, fm->n_instructions);
}

void of13_flow_mod_format(FILE *out, const struct of13_flow_mod *fm)
{
	static const char *const commands[] = {"add", "modify", "modify_strict", "delete",
	                                       "delete_strict"};
	fprintf(out, "%s table=%u priority=%u cookie=0x%" PRIx64,
	        fm->command < 5 ? commands[fm->command] : "command?", fm->table_id, fm->priority,
	        fm->cookie);
	if (fm->cookie_mask)
		fprintf(out, "/0x%" PRIx64, fm->cookie_mask);
	if (fm->idle_timeout)
		fprintf(out, " idle_timeout=%u", fm->idle_timeout);
	if (fm->hard_timeout)
		fprintf(out, " hard_timeout=%u", fm->hard_timeout);
	fputs(" match=", out);
	of13_match_format(out, &fm->match);
	fputs(" actions=", out);
	of13_instructions_format(out, fm->instructions, fm->n_instructions);
}
