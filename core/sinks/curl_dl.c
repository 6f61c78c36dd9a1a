/* libcurl opened when the otlp sink needs it (see curl_dl.h). */
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include <periscope/log.h>
#include "curl_dl.h"

struct ps_curl_api ps_curl_api;

/* The soname of libcurl 7 and 8 alike (Debian's libcurl4, RHEL's libcurl). */
#define LIBCURL "libcurl.so.4"

static const struct {
	const char *name;
	size_t offset;
} symbols[] = {
#define SYM(field, name) { name, offsetof(struct ps_curl_api, field) }
	SYM(global_init, "curl_global_init"),
	SYM(version_info, "curl_version_info"),
	SYM(easy_init, "curl_easy_init"),
	SYM(easy_setopt, "curl_easy_setopt"),
	SYM(easy_getinfo, "curl_easy_getinfo"),
	SYM(easy_strerror, "curl_easy_strerror"),
	SYM(easy_cleanup, "curl_easy_cleanup"),
	SYM(multi_init, "curl_multi_init"),
	SYM(multi_setopt, "curl_multi_setopt"),
	SYM(multi_add_handle, "curl_multi_add_handle"),
	SYM(multi_remove_handle, "curl_multi_remove_handle"),
	SYM(multi_assign, "curl_multi_assign"),
	SYM(multi_socket_action, "curl_multi_socket_action"),
	SYM(multi_info_read, "curl_multi_info_read"),
	SYM(multi_cleanup, "curl_multi_cleanup"),
	SYM(slist_append, "curl_slist_append"),
	SYM(slist_free_all, "curl_slist_free_all"),
	SYM(url, "curl_url"),
	SYM(url_set, "curl_url_set"),
	SYM(url_get, "curl_url_get"),
	SYM(url_cleanup, "curl_url_cleanup"),
	SYM(free, "curl_free"),
#undef SYM
};

int ps_curl_open(void)
{
	static int state = 1; /* 1: not tried; then 0 or -ENOENT for good */
	void *lib;

	if (state <= 0)
		return state;
	lib = dlopen(LIBCURL, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		ps_error("otlp", "the otlp sink needs libcurl (%s): %s; install libcurl4", LIBCURL,
			 dlerror());
		return state = -ENOENT;
	}
	for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
		void *fn = dlsym(lib, symbols[i].name);

		if (!fn) {
			ps_error("otlp", "%s has no %s: libcurl 7.62 or later is needed", LIBCURL,
				 symbols[i].name);
			dlclose(lib);
			return state = -ENOENT;
		}
		*(void **)((char *)&ps_curl_api + symbols[i].offset) = fn;
	}
	return state = 0; /* never closed: the sink's handles live until exit */
}
