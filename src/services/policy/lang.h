/* Between the policy language's files: the parser's state, the lexer
 * (lang-lex.c) and the time windows' statements (lang-time.c); lang.c has
 * the rest of the grammar. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

/* The longest word the lexer takes; longer is an error, not a cut. */
#define WORD_MAX POLICY_WORD_MAX

enum tok_kind { TOK_WORD, TOK_COMMA, TOK_EQUALS, TOK_END /* of the line */, TOK_BAD };

struct tok {
	enum tok_kind kind;
	struct policy_pos pos;
	char text[WORD_MAX];
};

struct parser {
	const char *file;
	const struct policy_net *net;
	struct policy *p;
	const char *line; /* the current line, and its end */
	const char *line_end;
	const char *at; /* the next character to read */
	unsigned lineno;
	struct tok tok; /* the current token */
	char *error;
	int status;
};

/* ---- the lexer and its errors (lang-lex.c) ---- */

bool lang_is_keyword(const char *w);
/* Reads the next token of the line into ps->tok. */
void lang_next(struct parser *ps);
bool lang_at_word(const struct parser *ps, const char *w);
/* The first error: "FILE:LINE:COL: what"; returns ps->status. */
int lang_fail(struct parser *ps, struct policy_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "expected WHAT, found ..." at the current token. */
int lang_expected(struct parser *ps, const char *what);
int lang_expect_word(struct parser *ps, const char *w);
int lang_expect_equals(struct parser *ps);
int lang_expect_end(struct parser *ps);
int lang_oom(struct parser *ps);

/* The names a file defined so far, or NULL. */
const struct policy_group *lang_find_group(const struct policy *p, const char *name);
const struct policy_service *lang_find_service(const struct policy *p, const char *name);
const struct policy_window *lang_find_window(const struct policy *p, const char *name);
/* A name a definition may take (no keyword, host, device, group, service
 * or window), into @out; the token after it is read. */
int lang_new_name(struct parser *ps, char out[STORE_NAME_MAX]);

/* ---- time windows (lang-time.c) ---- */

/* `during`'s list (@names: window names allowed) or a window's specs, into
 * a new set of minutes *@ret. */
int lang_window_list(struct parser *ps, bool names, uint8_t **ret);
int lang_stmt_window(struct parser *ps);
int lang_stmt_timezone(struct parser *ps);
/* at DAY HH:MM (the current token is `at`). */
int lang_expect_at(struct parser *ps, int *ret_minute);
