/*
 * A sink's writer thread (see writer.h). The loop thread only ever takes the
 * lock for a memcpy or a pointer swap: it never waits for a write.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "writer.h"

struct ps_writer {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t work; /* something pending, or stop */
	pthread_cond_t idle; /* a write finished */
	enum ps_writer_mode mode;
	size_t max_pending;
	ps_writer_fn fn;
	void *arg;

	char *pending; /* handed over, not yet taken by the thread */
	size_t len, cap;
	bool has_pending; /* LATEST: an empty snapshot is still a snapshot to write */
	bool writing;
	bool stop;
	bool released; /* nobody joins: the thread frees itself (ps_writer_release) */
	void (*done)(void *);
	void *done_arg;
	struct ps_writer_report rep;
};

/* Released writers still finishing their last writes (ps_writer_wait_released). */
static pthread_mutex_t released_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t released_gone = PTHREAD_COND_INITIALIZER;
static unsigned released_running;

static void writer_free(struct ps_writer *w)
{
	pthread_cond_destroy(&w->idle);
	pthread_cond_destroy(&w->work);
	pthread_mutex_destroy(&w->lock);
	free(w->pending);
	free(w);
}

/* The end of a released writer's thread: its owner's clean-up, then its own. */
static void writer_retire(struct ps_writer *w)
{
	if (w->done)
		w->done(w->done_arg);
	writer_free(w);
	pthread_mutex_lock(&released_lock);
	released_running--;
	pthread_cond_broadcast(&released_gone);
	pthread_mutex_unlock(&released_lock);
}

static void *writer_main(void *arg)
{
	struct ps_writer *w = arg;
	bool released;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		char *buf;
		size_t len;
		int err;

		while (!w->has_pending && !w->stop)
			pthread_cond_wait(&w->work, &w->lock);
		if (!w->has_pending)
			break;
		buf = w->pending;
		len = w->len;
		w->pending = NULL;
		w->len = w->cap = 0;
		w->has_pending = false;
		w->writing = true;
		pthread_mutex_unlock(&w->lock);

		err = w->fn(w->arg, buf ? buf : "", len);
		free(buf);

		pthread_mutex_lock(&w->lock);
		w->writing = false;
		w->rep.last = err;
		w->rep.writes++;
		if (err)
			w->rep.error = err;
		pthread_cond_broadcast(&w->idle);
	}
	released = w->released;
	pthread_mutex_unlock(&w->lock);
	if (released)
		writer_retire(w);
	return NULL;
}

struct ps_writer *ps_writer_start(enum ps_writer_mode mode, size_t max_pending, ps_writer_fn fn,
				  void *arg)
{
	struct ps_writer *w = calloc(1, sizeof(*w));
	int err;

	if (!w)
		return NULL;
	w->mode = mode;
	w->max_pending = max_pending;
	w->fn = fn;
	w->arg = arg;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->work, NULL);
	pthread_cond_init(&w->idle, NULL);
	err = pthread_create(&w->thread, NULL, writer_main, w);
	if (err) {
		pthread_cond_destroy(&w->idle);
		pthread_cond_destroy(&w->work);
		pthread_mutex_destroy(&w->lock);
		free(w);
		errno = err;
		return NULL;
	}
	return w;
}

/* APPEND: buf goes after what is pending, within max_pending. Called locked. */
static bool append_locked(struct ps_writer *w, const char *buf, size_t len)
{
	if (w->len + len > w->max_pending)
		return false;
	if (w->len + len > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		char *grown;

		while (cap < w->len + len)
			cap *= 2;
		grown = realloc(w->pending, cap);
		if (!grown)
			return false;
		w->pending = grown;
		w->cap = cap;
	}
	memcpy(w->pending + w->len, buf, len);
	w->len += len;
	return true;
}

/* LATEST: buf (owned) replaces whatever is pending. Called locked. */
static void replace_locked(struct ps_writer *w, char *buf, size_t len)
{
	if (w->has_pending)
		w->rep.replaced++;
	free(w->pending);
	w->pending = buf;
	w->len = w->cap = len;
}

void ps_writer_submit(struct ps_writer *w, const char *buf, size_t len)
{
	char *copy;

	if (w->mode == PS_WRITER_LATEST) {
		copy = malloc(len ? len : 1);
		if (!copy) {
			pthread_mutex_lock(&w->lock);
			w->rep.error = -ENOMEM;
			pthread_mutex_unlock(&w->lock);
			return;
		}
		memcpy(copy, buf, len);
		ps_writer_submit_owned(w, copy, len);
		return;
	}
	if (!len)
		return;
	pthread_mutex_lock(&w->lock);
	if (append_locked(w, buf, len)) {
		w->has_pending = true;
		pthread_cond_signal(&w->work);
	} else {
		w->rep.dropped += len;
	}
	pthread_mutex_unlock(&w->lock);
}

void ps_writer_submit_owned(struct ps_writer *w, char *buf, size_t len)
{
	if (w->mode == PS_WRITER_APPEND) {
		ps_writer_submit(w, buf, len);
		free(buf);
		return;
	}
	pthread_mutex_lock(&w->lock);
	replace_locked(w, buf, len);
	w->has_pending = true;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->lock);
}

void ps_writer_report(struct ps_writer *w, struct ps_writer_report *r)
{
	pthread_mutex_lock(&w->lock);
	*r = w->rep;
	w->rep.error = 0;
	w->rep.dropped = 0;
	w->rep.replaced = 0;
	pthread_mutex_unlock(&w->lock);
}

int ps_writer_wait_idle(struct ps_writer *w)
{
	int last;

	pthread_mutex_lock(&w->lock);
	while (w->has_pending || w->writing)
		pthread_cond_wait(&w->idle, &w->lock);
	last = w->rep.last;
	pthread_mutex_unlock(&w->lock);
	return last;
}

void ps_writer_stop(struct ps_writer *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	writer_free(w);
}

void ps_writer_release(struct ps_writer *w, void (*done)(void *), void *done_arg)
{
	if (!w) {
		if (done)
			done(done_arg);
		return;
	}
	pthread_mutex_lock(&released_lock);
	released_running++;
	pthread_mutex_unlock(&released_lock);
	pthread_mutex_lock(&w->lock);
	w->done = done;
	w->done_arg = done_arg;
	w->released = true;
	w->stop = true;
	pthread_cond_signal(&w->work);
	pthread_detach(w->thread);
	pthread_mutex_unlock(&w->lock);
}

void ps_writer_wait_released(void)
{
	pthread_mutex_lock(&released_lock);
	while (released_running)
		pthread_cond_wait(&released_gone, &released_lock);
	pthread_mutex_unlock(&released_lock);
}
