/*
 * Unit tests for the SQL summariser (plugins/mysql/mysql_sql.c): operation and
 * first table of statements as applications and tools write them, and that no
 * literal ever comes out.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mysql_sql.h"

struct sql_case {
	const char *sql;
	const char *op;
	const char *collection;
};

/* clang-format off */
static const struct sql_case cases[] = {
	{ "SELECT * FROM users WHERE id = 1", "SELECT", "users" },
	{ "select name from Users", "SELECT", "Users" },
	{ "SELECT 1", "SELECT", "" },
	{ "SELECT 1 FROM dual", "SELECT", "" },
	{ "SELECT @@version_comment LIMIT 1", "SELECT", "" },
	{ "SELECT a FROM shop.orders o JOIN shop.items i ON i.o = o.id", "SELECT", "shop.orders" },
	{ "SELECT a FROM `shop`.`order items`", "SELECT", "shop.order items" },
	{ "SELECT a FROM `we``ird`", "SELECT", "we``ird" },
	{ "  /* leading */ SELECT a FROM t1", "SELECT", "t1" },
	{ "-- note\nSELECT a FROM t2", "SELECT", "t2" },
	{ "# note\nSELECT a FROM t3", "SELECT", "t3" },
	{ "SELECT a /* FROM fake */ FROM t4", "SELECT", "t4" },
	{ "SELECT 'FROM fake' AS x FROM t5", "SELECT", "t5" },
	{ "SELECT \"FROM fake\", a FROM t6", "SELECT", "t6" },
	{ "SELECT 'it''s', 'a\\'b' FROM t7", "SELECT", "t7" },
	{ "SELECT a--1\nFROM t8", "SELECT", "t8" },
	{ "((SELECT a FROM t9) UNION (SELECT b FROM t10))", "SELECT", "t9" },
	{ "SELECT EXTRACT(YEAR FROM created) FROM events", "SELECT", "events" },
	{ "SELECT TRIM(LEADING 'x' FROM name), SUBSTRING(s FROM 2) FROM people", "SELECT", "people" },
	{ "SELECT * FROM (SELECT * FROM inner_t) AS x", "SELECT", "inner_t" },
	{ "SELECT (SELECT max(v) FROM sub_t) FROM outer_t", "SELECT", "sub_t" },
	{ "SELECT * FROM a WHERE id IN (SELECT id FROM b)", "SELECT", "a" },
	{ "WITH c AS (SELECT id FROM base) SELECT * FROM c", "SELECT", "base" },
	{ "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT n FROM r",
	  "SELECT", "" },
	{ "WITH a AS (SELECT 1), b AS (SELECT x FROM real_t) SELECT * FROM a, b", "SELECT", "real_t" },
	{ "WITH d AS (SELECT id FROM src) DELETE FROM dst WHERE id IN (SELECT id FROM d)", "DELETE",
	  "src" },
	{ "INSERT INTO logs (a, b) VALUES (1, 'x')", "INSERT", "logs" },
	{ "insert ignore into `db1`.logs values (1)", "INSERT", "db1.logs" },
	{ "INSERT logs SET a = 1", "INSERT", "logs" },
	{ "INSERT INTO copy SELECT * FROM orig", "INSERT", "copy" },
	{ "REPLACE INTO kv VALUES ('k', 'v')", "REPLACE", "kv" },
	{ "UPDATE LOW_PRIORITY accounts SET balance = 0", "UPDATE", "accounts" },
	{ "UPDATE a JOIN b ON a.id = b.id SET a.x = b.x", "UPDATE", "a" },
	{ "DELETE FROM sessions WHERE expires < NOW()", "DELETE", "sessions" },
	{ "DELETE QUICK IGNORE FROM sessions", "DELETE", "sessions" },
	{ "DELETE s FROM sessions s JOIN users u ON u.id = s.uid", "DELETE", "s" },
	{ "CALL refresh_stats(1, 'x')", "CALL", "" },
	{ "BEGIN", "BEGIN", "" },
	{ "START TRANSACTION READ ONLY", "BEGIN", "" },
	{ "START SLAVE", "START", "" },
	{ "COMMIT", "COMMIT", "" },
	{ "ROLLBACK TO SAVEPOINT s1", "ROLLBACK", "" },
	{ "SET autocommit = 1", "SET", "" },
	{ "SET NAMES utf8mb4", "SET", "" },
	{ "SHOW TABLES", "SHOW", "" },
	{ "CREATE TABLE IF NOT EXISTS t (id INT)", "CREATE", "t" },
	{ "CREATE TEMPORARY TABLE tmp1 (id INT)", "CREATE", "tmp1" },
	{ "CREATE OR REPLACE TABLE t2 (id INT)", "CREATE", "t2" },
	{ "CREATE UNIQUE INDEX ix ON people (email)", "CREATE", "people" },
	{ "CREATE DATABASE shop", "CREATE", "" },
	{ "ALTER TABLE shop.items ADD COLUMN price INT", "ALTER", "shop.items" },
	{ "DROP TABLE IF EXISTS old_t, older_t", "DROP", "old_t" },
	{ "TRUNCATE TABLE queue", "TRUNCATE", "queue" },
	{ "TRUNCATE queue2", "TRUNCATE", "queue2" },
	{ "RENAME TABLE a1 TO a2", "RENAME", "a1" },
	{ "/*!40101 SET NAMES utf8 */", "SET", "" },
	{ "/*!40000 ALTER TABLE `dump_t` DISABLE KEYS */", "ALTER", "dump_t" },
	{ "/*M!100100 SELECT a FROM mt */", "SELECT", "mt" },
	{ "DESC people", "DESCRIBE", "" },
	{ "EXPLAIN SELECT * FROM t", "EXPLAIN", "" },
	{ "FROBNICATE everything", "_OTHER", "" },
	{ "SELECT a FROM café", "SELECT", "café" },
};
/* clang-format on */

START_TEST(summaries)
{
	const struct sql_case *c = &cases[_i];
	struct mysql_sql_summary s;

	ck_assert_int_eq(mysql_sql_summarize(c->sql, strlen(c->sql), false, &s), 0);
	ck_assert_msg(strcmp(s.operation, c->op) == 0, "%s: op %s, want %s", c->sql, s.operation,
		      c->op);
	ck_assert_msg(strcmp(s.collection, c->collection) == 0, "%s: collection '%s', want '%s'",
		      c->sql, s.collection, c->collection);
	ck_assert(!s.multi);
}
END_TEST

START_TEST(use_database)
{
	struct mysql_sql_summary s;

	ck_assert_int_eq(mysql_sql_summarize("USE `shop`", 10, false, &s), 0);
	ck_assert_str_eq(s.operation, "USE");
	ck_assert_str_eq(s.use_db, "shop");
	ck_assert_str_eq(s.collection, "");
	ck_assert_int_eq(mysql_sql_summarize("use app;", 8, false, &s), 0);
	ck_assert_str_eq(s.use_db, "app");
	ck_assert(!s.multi);
	/* Cut by the capture right after the name: it may go on. */
	ck_assert_int_eq(mysql_sql_summarize("USE appl", 8, true, &s), 0);
	ck_assert_str_eq(s.use_db, "");
}
END_TEST

START_TEST(multi_statements)
{
	static const char *const multi[] = {
		"SELECT 1; SELECT 2",
		"INSERT INTO a VALUES (1);UPDATE b SET x = 1",
		"(SELECT 1); SELECT 2",
		"SELECT ';' FROM t; DELETE FROM u",
	};
	static const char *const single[] = {
		"SELECT 1;",
		"SELECT 1 ; ; -- done",
		"SELECT ';' FROM t",
		"SELECT a FROM t /* ; SELECT 2 */",
	};
	struct mysql_sql_summary s;

	for (size_t i = 0; i < sizeof(multi) / sizeof(multi[0]); i++) {
		ck_assert_int_eq(mysql_sql_summarize(multi[i], strlen(multi[i]), false, &s), 0);
		ck_assert_msg(s.multi, "%s", multi[i]);
	}
	for (size_t i = 0; i < sizeof(single) / sizeof(single[0]); i++) {
		ck_assert_int_eq(mysql_sql_summarize(single[i], strlen(single[i]), false, &s), 0);
		ck_assert_msg(!s.multi, "%s", single[i]);
	}
	mysql_sql_summarize(multi[3], strlen(multi[3]), false, &s);
	ck_assert_str_eq(s.operation, "SELECT");
	ck_assert_str_eq(s.collection, "t");
}
END_TEST

/* Walks a multi-statement text statement by statement, as the decoder does. */
static size_t walk(const char *sql, char ops[][MYSQL_OP_MAX], char tables[][MYSQL_NAME_MAX],
		   size_t max)
{
	struct mysql_sql_summary s;
	size_t n = 0, at = 0, len = strlen(sql);

	while (n < max && mysql_sql_summarize(sql + at, len - at, false, &s) == 0) {
		strcpy(ops[n], s.operation);
		strcpy(tables[n], s.collection);
		n++;
		if (!s.multi)
			break;
		ck_assert_uint_gt(s.next, 0);
		ck_assert_uint_le(s.next, len - at);
		at += s.next;
	}
	return n;
}

START_TEST(statements_apart)
{
	static const struct {
		const char *sql;
		size_t n;
		const char *ops[4], *tables[4];
	} walks[] = {
		{ "INSERT INTO a VALUES (';');  ;UPDATE `b` SET x = 1; SELECT * FROM c WHERE y = ';'",
		  3,
		  { "INSERT", "UPDATE", "SELECT" },
		  { "a", "b", "c" } },
		{ "(SELECT 1 FROM d); /* ; */ DELETE FROM e -- ;\n; CALL p()",
		  3,
		  { "SELECT", "DELETE", "CALL" },
		  { "d", "e", "" } },
		/* A stored program's body is one statement with the CREATE. */
		{ "CREATE PROCEDURE p() BEGIN IF (SELECT 1) THEN SELECT 1; ELSE SELECT 2; END IF; "
		  "WHILE 0 DO SELECT 3; END WHILE; SELECT IF(1, 2, 3); END; INSERT INTO f VALUES (1)",
		  2,
		  { "CREATE", "INSERT" },
		  { "", "f" } },
		{ "CREATE TABLE IF NOT EXISTS g (id INT); SELECT CASE WHEN 1 THEN 2 END FROM h; "
		  "DROP TABLE g",
		  3,
		  { "CREATE", "SELECT", "DROP" },
		  { "g", "h", "g" } },
	};
	char ops[8][MYSQL_OP_MAX], tables[8][MYSQL_NAME_MAX];

	for (size_t i = 0; i < sizeof(walks) / sizeof(walks[0]); i++) {
		size_t n = walk(walks[i].sql, ops, tables, 8);

		ck_assert_msg(n == walks[i].n, "%s: %zu statements, want %zu", walks[i].sql, n,
			      walks[i].n);
		for (size_t j = 0; j < n; j++) {
			ck_assert_str_eq(ops[j], walks[i].ops[j]);
			ck_assert_str_eq(tables[j], walks[i].tables[j]);
		}
	}
}
END_TEST

/* Truncated text: a name that touches the cut is not trusted; the operation still is. */
START_TEST(truncated)
{
	struct mysql_sql_summary s;

	ck_assert_int_eq(mysql_sql_summarize("SELECT a FROM ord", 17, true, &s), 0);
	ck_assert_str_eq(s.operation, "SELECT");
	ck_assert_str_eq(s.collection, "");
	ck_assert_int_eq(mysql_sql_summarize("SELECT a FROM `app`", 19, true, &s), 0);
	ck_assert_str_eq(s.collection, ""); /* `app`.`orders` may follow */
	ck_assert_int_eq(mysql_sql_summarize("INSERT INTO app.", 16, true, &s), 0);
	ck_assert_str_eq(s.collection, ""); /* the table is past the cut */
	ck_assert_int_eq(mysql_sql_summarize("INSERT INTO app. ", 17, false, &s), 0);
	ck_assert_str_eq(s.collection, "app");
	ck_assert_int_eq(mysql_sql_summarize("SELECT a FROM orders WHE", 24, true, &s), 0);
	ck_assert_str_eq(s.collection, "orders");
	ck_assert_int_eq(mysql_sql_summarize("SELECT a FROM orders WHE", 24, false, &s), 0);
	ck_assert_str_eq(s.collection, "orders");
	ck_assert_int_eq(mysql_sql_summarize("SELEC", 5, true, &s), -EINVAL);
	ck_assert_int_eq(mysql_sql_summarize("INSERT INTO t VALUES ('abc", 26, true, &s), 0);
	ck_assert_str_eq(s.collection, "t");
}
END_TEST

START_TEST(not_statements)
{
	static const char bin[] = { 0, 0, 0, 0x78, (char)0x9c, 'S', 'E', 'L' };
	struct mysql_sql_summary s;

	ck_assert_int_eq(mysql_sql_summarize("", 0, false, &s), -EINVAL);
	ck_assert_int_eq(mysql_sql_summarize("   ", 3, false, &s), -EINVAL);
	ck_assert_int_eq(mysql_sql_summarize("/* only */ -- this", 18, false, &s), -EINVAL);
	ck_assert_int_eq(mysql_sql_summarize("/* unterminated", 15, false, &s), -EINVAL);
	ck_assert_int_eq(mysql_sql_summarize(bin, sizeof(bin), false, &s), -EINVAL);
	ck_assert_int_eq(mysql_sql_summarize("'just a string'", 15, false, &s), -EINVAL);
	ck_assert_int_eq(mysql_sql_summarize("42", 2, false, &s), -EINVAL);
}
END_TEST

/* Literals never reach the summary, whatever the statement. */
START_TEST(no_literals)
{
	static const char *const sql[] = {
		"SELECT * FROM t WHERE secret = 'hunter2'",
		"INSERT INTO 'hunter2' VALUES (1)",
		"UPDATE \"hunter2\" SET a = 1",
		"SELECT a FROM (SELECT 'hunter2') x",
		"DELETE FROM 'hunter2'",
		"USE 'hunter2'",
		"SELECT 'hunter2' FROM dual",
		"WITH 'hunter2' AS (SELECT 1) SELECT 1",
	};
	struct mysql_sql_summary s;

	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
		mysql_sql_summarize(sql[i], strlen(sql[i]), false, &s);
		ck_assert_msg(!strstr(s.operation, "hunter2") && !strstr(s.collection, "hunter2") &&
				      !strstr(s.use_db, "hunter2"),
			      "%s leaked: %s / %s / %s", sql[i], s.operation, s.collection,
			      s.use_db);
	}
}
END_TEST

/* Names are bounded and printable. */
START_TEST(names_bounded)
{
	char sql[600];
	struct mysql_sql_summary s;

	strcpy(sql, "SELECT * FROM ");
	memset(sql + 14, 'x', 300);
	strcpy(sql + 314, ".");
	memset(sql + 315, 'y', 200);
	sql[515] = '\0';
	ck_assert_int_eq(mysql_sql_summarize(sql, strlen(sql), false, &s), 0);
	ck_assert_uint_eq(strlen(s.collection), 2 * MYSQL_IDENT_MAX + 1);
	ck_assert_int_eq(mysql_sql_summarize("SELECT * FROM `a\nb`", 19, false, &s), 0);
	ck_assert_str_eq(s.collection, "a?b");
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("mysql_sql");
	TCase *tc = tcase_create("summary");

	tcase_add_loop_test(tc, summaries, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(tc, use_database);
	tcase_add_test(tc, multi_statements);
	tcase_add_test(tc, statements_apart);
	tcase_add_test(tc, truncated);
	tcase_add_test(tc, not_statements);
	tcase_add_test(tc, no_literals);
	tcase_add_test(tc, names_bounded);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
