/* Actions and instructions (spec 7.2.4, 7.2.5). */
#include <inttypes.h>
#include <string.h>

#include "internal.h"

static const uint8_t zeros[8];

static void put_pad(struct obuf *b, size_t len)
{
	obuf_put_bytes(b, zeros, ((len + 7) & ~(size_t)7) - len);
}

enum of13_err of13_action_decode(struct cursor *c, struct of13_action *ret)
{
	uint16_t type = cursor_u16(c), len = cursor_u16(c);
	if (!cursor_ok(c) || len < 8 || len % 8 || (size_t)len - 4 > c->left)
		return OF13_ERR_BAD_ACTION_LEN;
	struct cursor a = cursor_init(cursor_bytes(c, len - 4u), len - 4u);
	struct of13_action act = {.type = type};
	switch (type) {
	case OF13_ACTION_OUTPUT:
		if (len != 16)
			return OF13_ERR_BAD_ACTION_LEN;
		act.output.port = cursor_u32(&a);
		act.output.max_len = cursor_u16(&a);
		break;
	case OF13_ACTION_GROUP:
		if (len != 8)
			return OF13_ERR_BAD_ACTION_LEN;
		act.group_id = cursor_u32(&a);
		break;
	case OF13_ACTION_SET_FIELD: {
		enum of13_err e = of13_oxm_decode(&a, &act.set_field);
		if (e)
			return e;
		/* Spec 7.2.5: a set_field never carries a mask; the rest is
		 * zero padding. */
		if (act.set_field.has_mask)
			return OF13_ERR_BAD_FIELD;
		for (size_t i = 0; i < a.left; i++)
			if (a.p[i])
				return OF13_ERR_BAD_ACTION_LEN;
		break;
	}
	default:
		return OF13_ERR_BAD_ACTION_TYPE;
	}
	*ret = act;
	return OF13_OK;
}

void of13_action_encode(struct obuf *b, const struct of13_action *a)
{
	size_t start = b->len;
	obuf_put_u16(b, a->type);
	obuf_put_u16(b, 0);
	switch (a->type) {
	case OF13_ACTION_OUTPUT:
		obuf_put_u32(b, a->output.port);
		obuf_put_u16(b, a->output.max_len);
		obuf_put_bytes(b, zeros, 6);
		break;
	case OF13_ACTION_GROUP:
		obuf_put_u32(b, a->group_id);
		break;
	case OF13_ACTION_SET_FIELD:
		of13_oxm_encode(b, &a->set_field);
		put_pad(b, b->len - start);
		break;
	}
	size_t len = b->len - start;
	of13_put_len(b, start + 2, len);
}

static void format_port(FILE *out, uint32_t port)
{
	switch (port) {
	case OF13_PORT_IN_PORT:
		fputs("in_port", out);
		return;
	case OF13_PORT_NORMAL:
		fputs("normal", out);
		return;
	case OF13_PORT_FLOOD:
		fputs("flood", out);
		return;
	case OF13_PORT_ALL:
		fputs("all", out);
		return;
	case OF13_PORT_CONTROLLER:
		fputs("controller", out);
		return;
	case OF13_PORT_LOCAL:
		fputs("local", out);
		return;
	}
	fprintf(out, "%" PRIu32, port);
}

void of13_action_format(FILE *out, const struct of13_action *a)
{
	switch (a->type) {
	case OF13_ACTION_OUTPUT:
		fputs("output:", out);
		format_port(out, a->output.port);
		if (a->output.port == OF13_PORT_CONTROLLER)
			fprintf(out, "/%u", a->output.max_len);
		break;
	case OF13_ACTION_GROUP:
		fprintf(out, "group:%" PRIu32, a->group_id);
		break;
	case OF13_ACTION_SET_FIELD:
		fputs("set_field:", out);
		of13_oxm_format(out, &a->set_field);
		break;
	default:
		fprintf(out, "action%u", a->type);
	}
}

static enum of13_err actions_decode(struct cursor *c, struct of13_instruction *in)
{
	while (c->left) {
		if (in->n_actions == OF13_ACTIONS_MAX)
			return OF13_ERR_TOO_MANY;
		enum of13_err e = of13_action_decode(c, &in->actions[in->n_actions]);
		if (e)
			return e;
		in->n_actions++;
	}
	return OF13_OK;
}

enum of13_err of13_instructions_decode(struct cursor *c, struct of13_instruction *ret,
                                       unsigned *ret_n)
{
	unsigned n = 0;
	while (c->left) {
		uint16_t type = cursor_u16(c), len = cursor_u16(c);
		if (!cursor_ok(c) || len < 8 || len % 8 || (size_t)len - 4 > c->left)
			return OF13_ERR_BAD_INSTRUCTION_LEN;
		if (n == OF13_INSTRUCTIONS_MAX)
			return OF13_ERR_TOO_MANY;
		struct cursor body = cursor_init(cursor_bytes(c, len - 4u), len - 4u);
		struct of13_instruction in = {.type = type};
		enum of13_err e = OF13_OK;
		switch (type) {
		case OF13_INSTRUCTION_GOTO_TABLE:
			if (len != 8)
				return OF13_ERR_BAD_INSTRUCTION_LEN;
			in.table_id = cursor_u8(&body);
			break;
		case OF13_INSTRUCTION_WRITE_ACTIONS:
		case OF13_INSTRUCTION_APPLY_ACTIONS:
			cursor_u32(&body); /* pad */
			e = actions_decode(&body, &in);
			break;
		case OF13_INSTRUCTION_CLEAR_ACTIONS:
			if (len != 8)
				return OF13_ERR_BAD_INSTRUCTION_LEN;
			break;
		default:
			return OF13_ERR_BAD_INSTRUCTION;
		}
		if (e)
			return e;
		ret[n++] = in;
	}
	*ret_n = n;
	return OF13_OK;
}

void of13_instructions_encode(struct obuf *b, const struct of13_instruction *in, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		size_t start = b->len;
		obuf_put_u16(b, in[i].type);
		obuf_put_u16(b, 0);
		switch (in[i].type) {
		case OF13_INSTRUCTION_GOTO_TABLE:
			obuf_put_u8(b, in[i].table_id);
			obuf_put_bytes(b, zeros, 3);
			break;
		case OF13_INSTRUCTION_WRITE_ACTIONS:
		case OF13_INSTRUCTION_APPLY_ACTIONS:
			obuf_put_u32(b, 0);
			for (unsigned k = 0; k < in[i].n_actions; k++)
				of13_action_encode(b, &in[i].actions[k]);
			break;
		case OF13_INSTRUCTION_CLEAR_ACTIONS:
			obuf_put_u32(b, 0);
			break;
		}
		size_t len = b->len - start;
		of13_put_len(b, start + 2, len);
	}
}

void of13_instructions_format(FILE *out, const struct of13_instruction *in, unsigned n)
{
	bool any = false;
	for (unsigned i = 0; i < n; i++) {
		if (any)
			fputc(',', out);
		any = true;
		switch (in[i].type) {
		case OF13_INSTRUCTION_GOTO_TABLE:
			fprintf(out, "goto_table:%u", in[i].table_id);
			continue;
		case OF13_INSTRUCTION_CLEAR_ACTIONS:
			fputs("clear_actions", out);
			continue;
		case OF13_INSTRUCTION_WRITE_ACTIONS:
			fputs("write_actions(", out);
			break;
		}
		for (unsigned k = 0; k < in[i].n_actions; k++) {
			if (k)
				fputc(',', out);
			of13_action_format(out, &in[i].actions[k]);
		}
		if (in[i].type == OF13_INSTRUCTION_WRITE_ACTIONS)
			fputc(')', out);
	}
	if (!any)
		fputs("drop", out);
}
