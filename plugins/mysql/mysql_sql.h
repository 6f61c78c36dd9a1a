/*
 * SQL statement summaries for db_operation_name and db_collection_name: a
 * scanner over MySQL's lexical rules (comments, quoted strings and
 * identifiers, executable comments), no regular expressions. Pure C, no
 * allocation: unit tests and fuzzing.
 *
 * Only keywords and identifiers ever reach the summary; string and number
 * literals are skipped by the scanner and never copied.
 */
#ifndef PS_MYSQL_SQL_H
#define PS_MYSQL_SQL_H

#include <stdbool.h>
#include <stddef.h>

#define MYSQL_OP_MAX	24
#define MYSQL_IDENT_MAX 64			  /* MySQL's limit for table and schema names */
#define MYSQL_NAME_MAX	(2 * MYSQL_IDENT_MAX + 2) /* "schema.table" and the NUL */
#define MYSQL_DB_MAX	(MYSQL_IDENT_MAX + 1)

struct mysql_sql_summary {
	/*
	 * SELECT, INSERT, UPDATE, DELETE, REPLACE, CALL, BEGIN (also for START
	 * TRANSACTION), COMMIT, ROLLBACK, SET, SHOW, CREATE, ALTER, DROP, USE, ...;
	 * "_OTHER" for a first word that is not a known statement keyword.
	 */
	char operation[MYSQL_OP_MAX];
	/* The first table the statement names, "schema.table" as written, unquoted; "" if none. */
	char collection[MYSQL_NAME_MAX];
	char use_db[MYSQL_DB_MAX]; /* USE: the database it switches to */
	bool multi;		   /* another statement follows a ';' */
	size_t next;		   /* multi: where the next statement starts in the text */
};

/*
 * Summarises the (first) statement in sql[0..len). With several statements
 * (multi), sql + next .. len holds the rest: summarising it gives the second,
 * and so on. The ';' inside the body of a CREATE PROCEDURE, FUNCTION, TRIGGER
 * or EVENT (BEGIN ... END) does not end a statement: the server takes the
 * whole CREATE as one. truncated: the text is only the
 * start of the statement (a bounded capture); a name that touches the cut is
 * then not trusted and left out. Returns 0, or -EINVAL when the text holds no
 * statement (empty, only comments, binary bytes); out is filled either way.
 */
int mysql_sql_summarize(const char *sql, size_t len, bool truncated, struct mysql_sql_summary *out);

#endif
