/*
 * A sink's writer thread: the loop thread formats (or renders a snapshot),
 * hands the bytes over and goes back to draining the ring buffers; this
 * thread does the write, however slow the reader or the disk. One write runs
 * at a time, in submission order.
 *
 * Two policies for what arrives while a write is in progress:
 *  - PS_WRITER_APPEND (a stream, stdout): queued behind it, up to max_pending
 *    bytes; beyond, new output is dropped and counted.
 *  - PS_WRITER_LATEST (a file replaced whole each flush, textfile): only the
 *    newest submission waits; an older one not started yet is replaced (and
 *    counted), since the newer snapshot supersedes it.
 */
#ifndef PS_CORE_SINKS_WRITER_H
#define PS_CORE_SINKS_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ps_writer_mode {
	PS_WRITER_APPEND,
	PS_WRITER_LATEST,
};

/* Writes buf[0..len) on the writer thread: 0 or -errno. */
typedef int (*ps_writer_fn)(void *arg, const char *buf, size_t len);

struct ps_writer;

/* What happened since the previous ps_writer_report. */
struct ps_writer_report {
	int error;	  /* the last failed write's -errno since the previous report, or 0 */
	int last;	  /* the result of the most recent write to finish (sticky), 0 before any */
	uint64_t dropped; /* APPEND: bytes dropped past max_pending */
	uint64_t replaced; /* LATEST: submissions superseded before their write started */
	uint64_t writes;   /* writes finished since the writer started */
};

/* Starts the thread; NULL with errno set. max_pending: APPEND's bound, in bytes. */
struct ps_writer *ps_writer_start(enum ps_writer_mode mode, size_t max_pending, ps_writer_fn fn,
				  void *arg);
/* Copies buf: never waits for a write in progress. */
void ps_writer_submit(struct ps_writer *w, const char *buf, size_t len);
/* The same, taking buf (malloc'd) over instead of copying it. */
void ps_writer_submit_owned(struct ps_writer *w, char *buf, size_t len);
void ps_writer_report(struct ps_writer *w, struct ps_writer_report *r);
/* Blocks until nothing is pending nor being written; returns the last result. For tests. */
int ps_writer_wait_idle(struct ps_writer *w);
/* Writes what is pending, then ends the thread and frees w. NULL is fine. */
void ps_writer_stop(struct ps_writer *w);
/*
 * The same without waiting: the thread writes what is pending, calls
 * done(done_arg) (the owner's clean-up of what fn uses), frees w and ends. A
 * reload that replaces a sink thus never waits for a slow disk or reader.
 */
void ps_writer_release(struct ps_writer *w, void (*done)(void *), void *done_arg);
/* Blocks until every released writer has finished: the daemon's exit, after the final flush. */
void ps_writer_wait_released(void);

#endif
