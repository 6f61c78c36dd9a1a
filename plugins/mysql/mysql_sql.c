/*
 * SQL statement summaries (see mysql_sql.h).
 *
 * A lexer turns the text into words, quoted identifiers, literals and
 * punctuation, skipping whitespace and comments (`/ * * /`, `-- `, `#`); the
 * body of an executable comment (`/ *! ... * /`, `/ *M! ... * /`) is code, as
 * the server reads it. The summary is then read from the token stream: the
 * first word (after leading parentheses and a WITH clause) is the operation,
 * and the operation decides where its table is named.
 *
 * For SELECT the first table is the first one in text order that a FROM of a
 * SELECT at the same parenthesis depth names: FROM inside EXTRACT(... FROM ...)
 * or TRIM(... FROM ...) belongs to no SELECT and is not a table; a FROM
 * followed by a subquery leads to the subquery's own FROM. Names of the
 * statement's common table expressions are not tables.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "mysql_sql.h"

#define DEPTH_MAX 63 /* parenthesis depth tracked for FROM; deeper nests count as this */
#define CTE_MAX	  8  /* CTE names remembered to tell them from tables */

enum tok_kind {
	T_END,	   /* end of text (or of a string or comment cut short) */
	T_WORD,	   /* keyword or unquoted identifier */
	T_QIDENT,  /* `quoted identifier` */
	T_LITERAL, /* string or number: never copied anywhere */
	T_PUNCT,
	T_BAD, /* bytes that are not SQL text */
};

struct tok {
	enum tok_kind kind;
	const char *p; /* T_WORD, T_QIDENT (without the backticks) */
	size_t n;
	char punct;
	bool cut; /* touches the end of truncated text: may be incomplete */
};

struct lexer {
	const char *s;
	size_t len, pos;
	bool truncated;
	bool in_exec_comment; /* inside an executable comment: its closing mark is blank */
	int depth;	      /* parentheses open, as the tokens went by */
};

/* ---- characters ------------------------------------------------------------------------ */

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* Unquoted identifiers: ASCII letters, digits, _ and $, and any byte of a UTF-8 sequence. */
static bool is_word(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
	       c == '$' || c >= 0x80;
}

static unsigned char to_upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

/* ---- the lexer ------------------------------------------------------------------------- */

static bool at(const struct lexer *lx, size_t off, char c)
{
	return lx->pos + off < lx->len && lx->s[lx->pos + off] == c;
}

/* Skips whitespace and comments; false when a comment runs past the end. */
static bool skip_blank(struct lexer *lx)
{
	while (lx->pos < lx->len) {
		unsigned char c = (unsigned char)lx->s[lx->pos];

		if (is_space(c)) {
			lx->pos++;
		} else if (c == '#') {
			while (lx->pos < lx->len && lx->s[lx->pos] != '\n')
				lx->pos++;
		} else if (c == '-' && at(lx, 1, '-') &&
			   (lx->pos + 2 >= lx->len || is_space((unsigned char)lx->s[lx->pos + 2]) ||
			    (unsigned char)lx->s[lx->pos + 2] < 0x20)) {
			while (lx->pos < lx->len && lx->s[lx->pos] != '\n')
				lx->pos++;
		} else if (c == '/' && at(lx, 1, '*')) {
			size_t code = 0;

			if (at(lx, 2, '!'))
				code = 3;
			else if (at(lx, 2, 'M') && at(lx, 3, '!'))
				code = 4;
			if (code) {
				/* An executable comment: its version number, then code. */
				lx->pos += code;
				while (lx->pos < lx->len && is_digit((unsigned char)lx->s[lx->pos]))
					lx->pos++;
				lx->in_exec_comment = true;
				continue;
			}
			lx->pos += 2;
			while (lx->pos + 1 < lx->len &&
			       !(lx->s[lx->pos] == '*' && lx->s[lx->pos + 1] == '/'))
				lx->pos++;
			if (lx->pos + 1 >= lx->len) {
				lx->pos = lx->len;
				return false;
			}
			lx->pos += 2;
		} else if (c == '*' && lx->in_exec_comment && at(lx, 1, '/')) {
			lx->in_exec_comment = false;
			lx->pos += 2;
		} else {
			return true;
		}
	}
	return true;
}

/* A quoted run from pos (the opening quote). false: no closing quote before the end. */
static bool skip_quoted(struct lexer *lx, char q, bool backslash)
{
	lx->pos++;
	while (lx->pos < lx->len) {
		char c = lx->s[lx->pos];

		if (backslash && c == '\\') {
			lx->pos += 2;
			continue;
		}
		if (c == q) {
			if (at(lx, 1, q)) { /* doubled: the quote itself */
				lx->pos += 2;
				continue;
			}
			lx->pos++;
			return true;
		}
		lx->pos++;
	}
	lx->pos = lx->len;
	return false;
}

static struct tok next_token(struct lexer *lx)
{
	struct tok t = { .kind = T_END };
	unsigned char c;
	size_t start;

	if (!skip_blank(lx) || lx->pos >= lx->len)
		return t;
	start = lx->pos;
	c = (unsigned char)lx->s[start];
	if (c == '\'' || c == '"') {
		/* "..." is a string unless ANSI_QUOTES: as a string it can never become a label. */
		if (!skip_quoted(lx, (char)c, true))
			return t;
		t.kind = T_LITERAL;
	} else if (c == '`') {
		if (!skip_quoted(lx, '`', false)) {
			t.kind = T_QIDENT;
			t.p = lx->s + start + 1;
			t.n = lx->len - start - 1;
			t.cut = true;
			return t;
		}
		t.kind = T_QIDENT;
		t.p = lx->s + start + 1;
		t.n = lx->pos - start - 2;
	} else if (is_digit(c) || (c == '.' && lx->pos + 1 < lx->len &&
				   is_digit((unsigned char)lx->s[lx->pos + 1]))) {
		/* Numbers (and the rare identifier that starts with a digit): never a name here. */
		while (lx->pos < lx->len &&
		       (is_word((unsigned char)lx->s[lx->pos]) || lx->s[lx->pos] == '.'))
			lx->pos++;
		t.kind = T_LITERAL;
	} else if (is_word(c)) {
		while (lx->pos < lx->len && is_word((unsigned char)lx->s[lx->pos]))
			lx->pos++;
		t.kind = T_WORD;
		t.p = lx->s + start;
		t.n = lx->pos - start;
		t.cut = lx->truncated && lx->pos == lx->len;
	} else if (c < 0x20 || c == 0x7f) {
		t.kind = T_BAD;
		lx->pos++;
	} else {
		t.kind = T_PUNCT;
		t.punct = (char)c;
		lx->pos++;
		if (c == '(')
			lx->depth++;
		else if (c == ')' && lx->depth > 0)
			lx->depth--;
	}
	return t;
}

static struct tok peek_token(const struct lexer *lx)
{
	struct lexer copy = *lx;

	return next_token(&copy);
}

static bool word_is(const struct tok *t, const char *kw)
{
	size_t i;

	if (t->kind != T_WORD)
		return false;
	for (i = 0; i < t->n && kw[i]; i++)
		if (to_upper((unsigned char)t->p[i]) != (unsigned char)kw[i])
			return false;
	return i == t->n && kw[i] == '\0';
}

static bool punct_is(const struct tok *t, char c)
{
	return t->kind == T_PUNCT && t->punct == c;
}

/* ---- names ----------------------------------------------------------------------------- */

/* Appends one identifier, its bytes made printable (a label, not a place for control bytes). */
static void append_ident(char *out, size_t cap, const struct tok *t)
{
	size_t o = strlen(out);
	size_t n = t->n < MYSQL_IDENT_MAX ? t->n : MYSQL_IDENT_MAX;

	for (size_t i = 0; i < n && o + 1 < cap; i++) {
		unsigned char c = (unsigned char)t->p[i];

		out[o++] = (c < 0x20 || c == 0x7f || c == '"' || c == '\'' || c == '\\') ? '?' :
											   (char)c;
	}
	out[o] = '\0';
}

static bool is_name(const struct tok *t)
{
	return t->kind == T_WORD || t->kind == T_QIDENT;
}

/* Words that cannot be a table where one is expected: the clause goes on instead. */
static bool reserved_here(const struct tok *t)
{
	static const char *const words[] = {
		"SELECT", "WHERE", "SET",     "VALUES", "VALUE", "LIMIT", "ORDER", "GROUP",
		"HAVING", "DUAL",  "LATERAL", "WITH",	"UNION", "INTO",  "FROM",  "WINDOW",
	};

	if (t->kind != T_WORD)
		return false;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (word_is(t, words[i]))
			return true;
	return false;
}

struct scan {
	struct lexer lx;
	struct mysql_sql_summary *out;
	struct tok cte[CTE_MAX];
	size_t n_cte;
	bool found; /* collection decided (possibly as "": a name cut by the capture) */
};

static bool same_name(const struct tok *a, const struct tok *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (to_upper((unsigned char)a->p[i]) != to_upper((unsigned char)b->p[i]))
			return false;
	return true;
}

static bool is_cte(const struct scan *sc, const struct tok *t)
{
	for (size_t i = 0; i < sc->n_cte; i++)
		if (same_name(&sc->cte[i], t))
			return true;
	return false;
}

/*
 * first is the first name of a table reference: reads "name" or
 * "schema.name" and makes it the collection. A name the capture may have cut
 * is not trusted: the collection stays "".
 */
static void take_table(struct scan *sc, struct tok first)
{
	char *out = sc->out->collection;
	struct tok second = { .kind = T_END };
	struct tok dot = peek_token(&sc->lx);

	if (punct_is(&dot, '.') && !first.cut) {
		struct lexer after = sc->lx;

		next_token(&after);
		second = next_token(&after);
		if (is_name(&second)) {
			sc->lx = after;
		} else if (second.kind == T_END && sc->lx.truncated) {
			first.cut = true; /* "schema." and the cut: the table is past it */
			second.kind = T_END;
		} else {
			second.kind = T_END;
		}
	}
	sc->found = true;
	out[0] = '\0';
	if (first.cut || (second.kind != T_END && second.cut))
		return;
	/* A name that ends the truncated text exactly may go on past it. */
	if (sc->lx.truncated && sc->lx.pos >= sc->lx.len)
		return;
	append_ident(out, MYSQL_NAME_MAX, &first);
	if (second.kind != T_END) {
		size_t o = strlen(out);

		if (o + 1 < MYSQL_NAME_MAX) {
			out[o] = '.';
			out[o + 1] = '\0';
		}
		append_ident(out, MYSQL_NAME_MAX, &second);
	}
}

/* Reads a table reference at the lexer if one is there; true when taken. */
static bool table_ref(struct scan *sc)
{
	struct tok t = next_token(&sc->lx);

	if (!is_name(&t) || reserved_here(&t))
		return false;
	take_table(sc, t);
	return true;
}

/*
 * The first table a SELECT-like stretch names, from the lexer's position
 * until the text ends, or (stop_depth >= 0) a ')' closes depth stop_depth.
 * select_open: a SELECT at the starting depth was already read.
 */
static void select_tables(struct scan *sc, int stop_depth, bool select_open)
{
	uint64_t select_at = 0; /* bit d: a SELECT is open at depth d */
	int base = sc->lx.depth;

	if (select_open)
		select_at |= 1ull << (base > DEPTH_MAX ? DEPTH_MAX : base);
	while (!sc->found) {
		struct tok t = next_token(&sc->lx);
		int d = sc->lx.depth > DEPTH_MAX ? DEPTH_MAX : sc->lx.depth;

		if (t.kind == T_END || t.kind == T_BAD)
			return;
		if (punct_is(&t, '(')) {
			select_at &= ~(1ull << d);
		} else if (punct_is(&t, ')')) {
			if (sc->lx.depth < DEPTH_MAX)
				select_at &= ~(1ull << (d + 1));
			if (stop_depth >= 0 && sc->lx.depth < stop_depth)
				return;
		} else if (punct_is(&t, ';') && d == 0) {
			sc->lx.pos--; /* the statement ends here: the ';' is more_statements' */
			return;
		} else if (word_is(&t, "SELECT")) {
			select_at |= 1ull << d;
		} else if (word_is(&t, "FROM") && (select_at & (1ull << d))) {
			struct tok n = peek_token(&sc->lx);

			if (!is_name(&n) || reserved_here(&n) || is_cte(sc, &n))
				continue; /* a subquery, DUAL, a CTE: the search goes on */
			next_token(&sc->lx);
			take_table(sc, n);
		}
	}
}

/* Skips one balanced parenthesised group whose '(' was just read. */
static void skip_group(struct lexer *lx)
{
	int depth = lx->depth;

	for (;;) {
		struct tok t = next_token(lx);

		if (t.kind == T_END || (punct_is(&t, ')') && lx->depth < depth))
			return;
	}
}

/*
 * WITH [RECURSIVE] name [(columns)] AS (body) [, ...]: remembers the names,
 * takes the first table of the bodies, and returns the main statement's first token.
 */
static struct tok skip_with(struct scan *sc)
{
	struct tok t = next_token(&sc->lx);
	int outer;

	if (word_is(&t, "RECURSIVE"))
		t = next_token(&sc->lx);
	for (;;) {
		if (!is_name(&t))
			return t;
		if (sc->n_cte < CTE_MAX)
			sc->cte[sc->n_cte++] = t;
		t = next_token(&sc->lx);
		if (punct_is(&t, '(')) {
			skip_group(&sc->lx);
			t = next_token(&sc->lx);
		}
		if (!word_is(&t, "AS"))
			return t;
		t = next_token(&sc->lx);
		if (!punct_is(&t, '('))
			return t;
		outer = sc->lx.depth - 1;
		if (!sc->found)
			select_tables(sc, sc->lx.depth, false);
		else
			skip_group(&sc->lx);
		/* select_tables may stop early at the table: finish the body. */
		while (sc->lx.depth > outer) {
			struct tok u = next_token(&sc->lx);

			if (u.kind == T_END)
				return u;
		}
		t = next_token(&sc->lx);
		if (!punct_is(&t, ','))
			return t;
		t = next_token(&sc->lx);
	}
}

/* ---- operations ------------------------------------------------------------------------ */

/* clang-format off */
static const char *const known_ops[] = {
	"SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "CALL", "BEGIN", "COMMIT", "ROLLBACK",
	"SAVEPOINT", "RELEASE", "SET", "SHOW", "CREATE", "ALTER", "DROP", "TRUNCATE", "RENAME",
	"USE", "EXPLAIN", "DESCRIBE", "ANALYZE", "OPTIMIZE", "CHECK", "REPAIR", "CHECKSUM",
	"GRANT", "REVOKE", "LOCK", "UNLOCK", "FLUSH", "KILL", "LOAD", "HANDLER", "DO",
	"PREPARE", "EXECUTE", "DEALLOCATE", "XA", "VALUES", "TABLE", "INSTALL", "UNINSTALL",
	"RESET", "PURGE", "CHANGE", "STOP", "BINLOG", "CACHE", "SIGNAL", "RESIGNAL", "GET", "HELP",
	"BACKUP", "SHUTDOWN", "START",
};
/* clang-format on */

static void set_operation(struct mysql_sql_summary *out, const struct tok *t)
{
	for (size_t i = 0; i < sizeof(known_ops) / sizeof(known_ops[0]); i++) {
		if (word_is(t, known_ops[i])) {
			strcpy(out->operation, known_ops[i]);
			return;
		}
	}
	if (word_is(t, "DESC"))
		strcpy(out->operation, "DESCRIBE");
	else
		strcpy(out->operation, "_OTHER");
}

/* Skips the optional words in words[] at the lexer. */
static void skip_words(struct lexer *lx, const char *const *words, size_t n)
{
	for (;;) {
		struct tok t = peek_token(lx);
		size_t i;

		for (i = 0; i < n; i++)
			if (word_is(&t, words[i]))
				break;
		if (i == n)
			return;
		next_token(lx);
	}
}

#define SKIP(lx, ...)                                            \
	do {                                                     \
		static const char *const w_[] = { __VA_ARGS__ }; \
		skip_words(lx, w_, sizeof(w_) / sizeof(w_[0]));  \
	} while (0)

static bool next_is(struct lexer *lx, const char *kw)
{
	struct tok t = peek_token(lx);

	if (!word_is(&t, kw))
		return false;
	next_token(lx);
	return true;
}

/* CREATE / ALTER / DROP / TRUNCATE / RENAME: a table's name when the object is a table. */
static void ddl_table(struct scan *sc)
{
	struct lexer *lx = &sc->lx;

	SKIP(lx, "OR", "REPLACE", "TEMPORARY", "ONLINE", "OFFLINE", "IGNORE", "UNIQUE", "FULLTEXT",
	     "SPATIAL");
	if (next_is(lx, "TABLE") || next_is(lx, "TABLES")) {
		SKIP(lx, "IF", "NOT", "EXISTS");
		table_ref(sc);
	} else if (next_is(lx, "INDEX")) {
		SKIP(lx, "IF", "NOT", "EXISTS");
		next_token(lx); /* the index's name */
		if (next_is(lx, "ON"))
			table_ref(sc);
	}
}

static void statement_tables(struct scan *sc)
{
	struct lexer *lx = &sc->lx;
	const char *o = sc->out->operation;

	if (!strcmp(o, "SELECT")) {
		select_tables(sc, -1, true);
	} else if (!strcmp(o, "INSERT") || !strcmp(o, "REPLACE")) {
		SKIP(lx, "LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE");
		next_is(lx, "INTO");
		table_ref(sc);
	} else if (!strcmp(o, "UPDATE")) {
		SKIP(lx, "LOW_PRIORITY", "IGNORE");
		table_ref(sc);
	} else if (!strcmp(o, "DELETE")) {
		SKIP(lx, "LOW_PRIORITY", "QUICK", "IGNORE");
		next_is(lx, "FROM");
		table_ref(sc);
	} else if (!strcmp(o, "CREATE") || !strcmp(o, "ALTER") || !strcmp(o, "DROP") ||
		   !strcmp(o, "RENAME")) {
		ddl_table(sc);
	} else if (!strcmp(o, "TRUNCATE")) {
		next_is(lx, "TABLE");
		table_ref(sc);
	} else if (!strcmp(o, "USE")) {
		struct tok t = next_token(lx);

		if (is_name(&t) && !t.cut && !(lx->truncated && lx->pos >= lx->len))
			append_ident(sc->out->use_db, MYSQL_DB_MAX, &t);
	} else if (!strcmp(o, "START") && next_is(lx, "TRANSACTION")) {
		/* START TRANSACTION is BEGIN; START SLAVE and the like stay START. */
		strcpy(sc->out->operation, "BEGIN");
	}
}

/*
 * Compound statements inside a CREATE (a stored program's body): BEGIN, IF,
 * CASE, LOOP, WHILE and REPEAT open a block that END closes, and a ';' inside
 * a block belongs to the body. IF opens one only where a statement starts (IF
 * NOT EXISTS is a clause, IF( in an expression the function).
 */
static int block_step(struct lexer *lx, const struct tok *prev, const struct tok *t, int blocks)
{
	static const char *const openers[] = { "BEGIN", "CASE", "LOOP", "WHILE", "REPEAT" };
	static const char *const stmt_starts[] = {
		"BEGIN", "THEN", "ELSE", "DO", "LOOP", "REPEAT"
	};
	struct tok n;

	if (word_is(t, "END")) {
		n = peek_token(lx);
		for (size_t i = 1; i < sizeof(openers) / sizeof(openers[0]); i++)
			if (word_is(&n, openers[i]))
				next_token(lx); /* END CASE, END LOOP, ...: one closing */
		if (word_is(&n, "IF"))
			next_token(lx);
		return blocks > 0 ? blocks - 1 : 0;
	}
	if (word_is(t, "IF")) {
		if (punct_is(prev, ';') || punct_is(prev, ':'))
			return blocks + 1;
		for (size_t i = 0; i < sizeof(stmt_starts) / sizeof(stmt_starts[0]); i++)
			if (word_is(prev, stmt_starts[i]))
				return blocks + 1;
		return blocks;
	}
	for (size_t i = 0; i < sizeof(openers) / sizeof(openers[0]); i++)
		if (word_is(t, openers[i]))
			return blocks + 1;
	return blocks;
}

/*
 * Is there another statement after a ';' at depth 0? If so, *next is where it
 * starts. Scans to the end, or to that statement.
 */
static bool more_statements(struct lexer *lx, bool stored_program, size_t *next)
{
	struct tok prev = { .kind = T_END };
	int blocks = 0;

	for (;;) {
		struct tok t = next_token(lx);

		if (t.kind == T_END)
			return false;
		if (stored_program)
			blocks = block_step(lx, &prev, &t, blocks);
		prev = t;
		if (punct_is(&t, ';') && lx->depth == 0 && blocks == 0) {
			struct tok n = peek_token(lx);

			while (punct_is(&n, ';')) {
				next_token(lx);
				n = peek_token(lx);
			}
			if (n.kind != T_END) {
				*next = lx->pos;
				return true;
			}
		}
	}
}

int mysql_sql_summarize(const char *sql, size_t len, bool truncated, struct mysql_sql_summary *out)
{
	struct scan sc = { .lx = { .s = sql, .len = len, .truncated = truncated }, .out = out };
	struct tok t;

	memset(out, 0, sizeof(*out));
	do
		t = next_token(&sc.lx);
	while (punct_is(&t, '('));
	if (t.kind != T_WORD)
		return -EINVAL;
	if (word_is(&t, "WITH")) {
		t = skip_with(&sc);
		if (t.kind != T_WORD)
			return -EINVAL;
	}
	if (t.cut) /* the first word itself is cut: not even the operation is known */
		return -EINVAL;
	set_operation(out, &t);
	if (!sc.found)
		statement_tables(&sc);
	out->multi = more_statements(&sc.lx, !strcmp(out->operation, "CREATE"), &out->next);
	return 0;
}
