/*
 * Runs a known sequence of MongoDB operations with the C driver (libmongoc) and
 * prints, from the driver's own command monitoring (APM), what went over the
 * wire: one line per (command, collection, database, status) with its count,
 * tab separated, status "" for success and the server's code for errors
 * (ok: 0, writeErrors, writeConcernError). Handshake and monitoring commands
 * are not published by the driver and are not counted here.
 *
 * usage: drive_mongoc URI [N]
 * Built by tests/integration/mongodb.sh: cc drive_mongoc.c $(pkg-config --cflags --libs libmongoc-1.0)
 */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROWS     128
#define MAX_INFLIGHT 64

struct row {
	char key[512];
	int count;
};

static struct row rows[MAX_ROWS];
static size_t n_rows;

struct inflight {
	int64_t request_id, operation_id;
	char key[400];
	int used;
};

static struct inflight inflight[MAX_INFLIGHT];

static void count_row(const char *key)
{
	for (size_t i = 0; i < n_rows; i++) {
		if (!strcmp(rows[i].key, key)) {
			rows[i].count++;
			return;
		}
	}
	if (n_rows == MAX_ROWS)
		abort();
	snprintf(rows[n_rows].key, sizeof(rows[n_rows].key), "%s", key);
	rows[n_rows++].count = 1;
}

static const char *collection_of(const char *name, const bson_t *cmd)
{
	static const char *const first[] = { "find",	 "insert",	  "update",
					     "delete",	 "aggregate",	  "count",
					     "distinct", "findAndModify", "create",
					     "drop",	 "createIndexes", "killCursors",
					     NULL };
	bson_iter_t it;

	if (!strcmp(name, "getMore"))
		return bson_iter_init_find(&it, cmd, "collection") && BSON_ITER_HOLDS_UTF8(&it) ?
			       bson_iter_utf8(&it, NULL) :
			       "";
	for (size_t i = 0; first[i]; i++)
		if (!strcmp(name, first[i]))
			return bson_iter_init_find(&it, cmd, name) && BSON_ITER_HOLDS_UTF8(&it) ?
				       bson_iter_utf8(&it, NULL) :
				       "";
	return "";
}

static void started(const mongoc_apm_command_started_t *e)
{
	const char *name = mongoc_apm_command_started_get_command_name(e);

	for (size_t i = 0; i < MAX_INFLIGHT; i++) {
		struct inflight *f = &inflight[i];

		if (f->used)
			continue;
		f->used = 1;
		f->request_id = mongoc_apm_command_started_get_request_id(e);
		f->operation_id = mongoc_apm_command_started_get_operation_id(e);
		snprintf(f->key, sizeof(f->key), "%s\t%s\t%s",
			 !strcmp(name, "findandmodify") ? "findAndModify" : name,
			 collection_of(name, mongoc_apm_command_started_get_command(e)),
			 mongoc_apm_command_started_get_database_name(e));
		return;
	}
	abort();
}

/* The collection and database of operations seen, for the batches of exhaust cursors. */
static struct {
	int64_t operation_id;
	char where[400];
} history[MAX_INFLIGHT];
static size_t n_history;

/*
 * Exhaust cursors: the driver publishes a succeeded getMore for each batch the server
 * streams, without a started event; it belongs to the operation of the find.
 */
static void done(int64_t request_id, int64_t operation_id, const char *name, const char *status)
{
	char key[512];

	for (size_t i = 0; i < MAX_INFLIGHT; i++) {
		struct inflight *f = &inflight[i];
		const char *tab;

		if (!f->used || f->request_id != request_id || f->operation_id != operation_id)
			continue;
		snprintf(key, sizeof(key), "%s\t%s", f->key, status);
		count_row(key);
		f->used = 0;
		tab = strchr(f->key, '\t');
		history[n_history % MAX_INFLIGHT].operation_id = operation_id;
		snprintf(history[n_history % MAX_INFLIGHT].where, 400, "%s", tab ? tab + 1 : "");
		n_history++;
		return;
	}
	for (size_t i = 0; i < MAX_INFLIGHT && i < n_history; i++) {
		if (history[i].operation_id != operation_id)
			continue;
		snprintf(key, sizeof(key), "%s\t%s\t%s", name, history[i].where, status);
		count_row(key);
		return;
	}
	abort();
}

/* "" for success, else the code of ok: 0, the first writeError, or the writeConcernError. */
static void status_of(const bson_t *reply, char *buf, size_t len)
{
	bson_iter_t it, child;

	buf[0] = '\0';
	if (bson_iter_init_find(&it, reply, "ok") && !bson_iter_as_bool(&it)) {
		if (bson_iter_init_find(&it, reply, "code"))
			snprintf(buf, len, "%d", (int)bson_iter_as_int64(&it));
		return;
	}
	if (bson_iter_init_find(&it, reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
	    bson_iter_recurse(&it, &child) && bson_iter_next(&child) &&
	    BSON_ITER_HOLDS_DOCUMENT(&child)) {
		bson_iter_t code;

		if (bson_iter_recurse(&child, &code) && bson_iter_find(&code, "code"))
			snprintf(buf, len, "%d", (int)bson_iter_as_int64(&code));
		return;
	}
	if (bson_iter_init_find(&it, reply, "writeConcernError") &&
	    bson_iter_recurse(&it, &child) && bson_iter_find(&child, "code"))
		snprintf(buf, len, "%d", (int)bson_iter_as_int64(&child));
}

static void succeeded(const mongoc_apm_command_succeeded_t *e)
{
	char status[16];

	status_of(mongoc_apm_command_succeeded_get_reply(e), status, sizeof(status));
	done(mongoc_apm_command_succeeded_get_request_id(e),
	     mongoc_apm_command_succeeded_get_operation_id(e),
	     mongoc_apm_command_succeeded_get_command_name(e), status);
}

static void failed(const mongoc_apm_command_failed_t *e)
{
	char status[16];

	status_of(mongoc_apm_command_failed_get_reply(e), status, sizeof(status));
	done(mongoc_apm_command_failed_get_request_id(e),
	     mongoc_apm_command_failed_get_operation_id(e),
	     mongoc_apm_command_failed_get_command_name(e), status);
}

static int drain(mongoc_cursor_t *c)
{
	const bson_t *doc;
	bson_error_t err;
	int n = 0;

	while (mongoc_cursor_next(c, &doc))
		n++;
	if (mongoc_cursor_error(c, &err))
		n = -1;
	mongoc_cursor_destroy(c);
	return n;
}

static int cmp_rows(const void *a, const void *b)
{
	return strcmp(((const struct row *)a)->key, ((const struct row *)b)->key);
}

int main(int argc, char **argv)
{
	mongoc_client_t *client;
	mongoc_collection_t *items;
	mongoc_database_t *db;
	mongoc_apm_callbacks_t *cbs;
	mongoc_write_concern_t *w0, *w3;
	bson_error_t err;
	bson_t reply;
	int n = argc > 2 ? atoi(argv[2]) : 20, got;

	if (argc < 2) {
		fprintf(stderr, "usage: %s URI [N]\n", argv[0]);
		return 2;
	}
	mongoc_init();
	client = mongoc_client_new(argv[1]);
	if (!client)
		return 2;
	cbs = mongoc_apm_callbacks_new();
	mongoc_apm_set_command_started_cb(cbs, started);
	mongoc_apm_set_command_succeeded_cb(cbs, succeeded);
	mongoc_apm_set_command_failed_cb(cbs, failed);
	mongoc_client_set_apm_callbacks(client, cbs, NULL);
	db = mongoc_client_get_database(client, "pstest_c");
	items = mongoc_client_get_collection(client, "pstest_c", "items");

	/* drop of a missing collection (26), create, create again (48) */
	{
		mongoc_collection_t *missing = mongoc_database_get_collection(db, "missing");

		mongoc_collection_drop(missing, NULL);
		mongoc_collection_destroy(missing);
	}
	mongoc_database_command_simple(db, BCON_NEW("create", "items"), NULL, NULL, NULL);
	mongoc_database_command_simple(db, BCON_NEW("create", "items"), NULL, NULL, NULL);

	for (int i = 0; i < n; i++)
		mongoc_collection_insert_one(items,
					     BCON_NEW("_id", BCON_INT32(i), "k", BCON_INT32(i % 5)),
					     NULL, NULL, NULL);
	{
		bson_t *docs[64];
		int m = 3 * n < 64 ? 3 * n : 64;

		for (int i = 0; i < m; i++)
			docs[i] = BCON_NEW("_id", BCON_INT32(n + i), "k", BCON_INT32(i % 5));
		if (!mongoc_collection_insert_many(items, (const bson_t **)docs, (size_t)m, NULL,
						   NULL, &err))
			fprintf(stderr, "insert_many: %s\n", err.message);
		for (int i = 0; i < m; i++)
			bson_destroy(docs[i]);
	}
	/* duplicate key (11000) */
	mongoc_collection_insert_one(items, BCON_NEW("_id", BCON_INT32(0)), NULL, NULL, NULL);
	/* unacknowledged: OP_MSG moreToCome */
	w0 = mongoc_write_concern_new();
	mongoc_write_concern_set_w(w0, MONGOC_WRITE_CONCERN_W_UNACKNOWLEDGED);
	{
		bson_t opts = BSON_INITIALIZER;

		mongoc_write_concern_append(w0, &opts);
		mongoc_collection_insert_one(items, BCON_NEW("_id", BCON_INT32(1000001)), &opts,
					     NULL, NULL);
		bson_destroy(&opts);
	}

	got = drain(mongoc_collection_find_with_opts(items, BCON_NEW(NULL),
						     BCON_NEW("batchSize", BCON_INT32(7)), NULL));
	fprintf(stderr, "find: %d documents\n", got);
	got = drain(mongoc_collection_find_with_opts(
		items, BCON_NEW(NULL),
		BCON_NEW("batchSize", BCON_INT32(25), "exhaust", BCON_BOOL(true)), NULL));
	fprintf(stderr, "exhaust find: %d documents\n", got);

	mongoc_collection_update_one(items, BCON_NEW("_id", BCON_INT32(1)),
				     BCON_NEW("$set", "{", "v", "y", "}"), NULL, NULL, NULL);
	mongoc_collection_update_many(items, BCON_NEW("k", BCON_INT32(2)),
				      BCON_NEW("$inc", "{", "c", BCON_INT32(1), "}"), NULL, NULL,
				      NULL);
	w3 = mongoc_write_concern_new();
	mongoc_write_concern_set_w(w3, 3);
	{
		bson_t opts = BSON_INITIALIZER;

		mongoc_write_concern_append(w3, &opts);
		mongoc_collection_update_one(items, BCON_NEW("_id", BCON_INT32(4)),
					     BCON_NEW("$set", "{", "v", BCON_INT32(1), "}"), &opts,
					     NULL, NULL);
		bson_destroy(&opts);
	}
	mongoc_collection_delete_one(items, BCON_NEW("_id", BCON_INT32(5)), NULL, NULL, NULL);
	mongoc_collection_delete_many(items, BCON_NEW("k", BCON_INT32(4)), NULL, NULL, NULL);

	drain(mongoc_collection_aggregate(
		items, MONGOC_QUERY_NONE,
		BCON_NEW("pipeline", "[", "{", "$match", "{", "k", BCON_INT32(1), "}", "}", "]"),
		BCON_NEW("batchSize", BCON_INT32(5)), NULL));
	drain(mongoc_collection_aggregate(
		items, MONGOC_QUERY_NONE,
		BCON_NEW("pipeline", "[", "{", "$bogusStage", "{", "}", "}", "]"), NULL, NULL));
	mongoc_collection_count_documents(items, BCON_NEW(NULL), NULL, NULL, NULL, NULL);
	mongoc_collection_estimated_document_count(items, NULL, NULL, NULL, NULL);
	mongoc_collection_read_command_with_opts(items, BCON_NEW("distinct", "items", "key", "k"),
						 NULL, NULL, &reply, NULL);
	bson_destroy(&reply);
	{
		mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();

		mongoc_find_and_modify_opts_set_update(fam, BCON_NEW("$set", "{", "v", "w", "}"));
		mongoc_collection_find_and_modify_with_opts(items, BCON_NEW("_id", BCON_INT32(6)),
							    fam, &reply, NULL);
		bson_destroy(&reply);
		mongoc_find_and_modify_opts_destroy(fam);
	}
	mongoc_database_command_simple(db, BCON_NEW("noSuchCommand", BCON_INT32(1)), NULL, NULL,
				       NULL);
	mongoc_database_command_simple(db, BCON_NEW("ping", BCON_INT32(1)), NULL, NULL, NULL);
	mongoc_collection_drop(items, NULL);

	mongoc_write_concern_destroy(w0);
	mongoc_write_concern_destroy(w3);
	mongoc_collection_destroy(items);
	mongoc_database_destroy(db);
	mongoc_client_destroy(client);
	mongoc_apm_callbacks_destroy(cbs);
	mongoc_cleanup();

	qsort(rows, n_rows, sizeof(rows[0]), cmp_rows);
	for (size_t i = 0; i < n_rows; i++)
		printf("%s\t%d\n", rows[i].key, rows[i].count);
	return 0;
}
