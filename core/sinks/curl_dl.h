/*
 * libcurl for the otlp sink, opened with dlopen when an otlp sink is
 * configured: periscoped links neither it nor the TLS library it brings, so a
 * host without libssl (or without libcurl) runs everything else.
 *
 * Included after <curl/curl.h> by the code that calls curl: the calls keep
 * their names and go through the table ps_curl_open filled.
 */
#ifndef PS_CORE_SINKS_CURL_DL_H
#define PS_CORE_SINKS_CURL_DL_H

#include <curl/curl.h>

struct ps_curl_api {
	CURLcode (*global_init)(long flags);
	curl_version_info_data *(*version_info)(CURLversion age);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
	CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
	const char *(*easy_strerror)(CURLcode code);
	void (*easy_cleanup)(CURL *h);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_setopt)(CURLM *m, CURLMoption opt, ...);
	CURLMcode (*multi_add_handle)(CURLM *m, CURL *h);
	CURLMcode (*multi_remove_handle)(CURLM *m, CURL *h);
	CURLMcode (*multi_assign)(CURLM *m, curl_socket_t s, void *p);
	CURLMcode (*multi_socket_action)(CURLM *m, curl_socket_t s, int ev, int *running);
	CURLMsg *(*multi_info_read)(CURLM *m, int *queued);
	CURLMcode (*multi_cleanup)(CURLM *m);
	struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
	void (*slist_free_all)(struct curl_slist *l);
	CURLU *(*url)(void);
	CURLUcode (*url_set)(CURLU *u, CURLUPart part, const char *content, unsigned int flags);
	CURLUcode (*url_get)(const CURLU *u, CURLUPart part, char **out, unsigned int flags);
	void (*url_cleanup)(CURLU *u);
	void (*free)(void *p);
};

extern struct ps_curl_api ps_curl_api;

/* Opens libcurl once (later calls answer at once): 0, or -ENOENT logged with what to install. */
int ps_curl_open(void);

/* curl.h's type-checking wrappers are macros: the table's entries replace them. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init	 ps_curl_api.global_init
#define curl_version_info	 ps_curl_api.version_info
#define curl_easy_init		 ps_curl_api.easy_init
#define curl_easy_setopt	 ps_curl_api.easy_setopt
#define curl_easy_getinfo	 ps_curl_api.easy_getinfo
#define curl_easy_strerror	 ps_curl_api.easy_strerror
#define curl_easy_cleanup	 ps_curl_api.easy_cleanup
#define curl_multi_init		 ps_curl_api.multi_init
#define curl_multi_setopt	 ps_curl_api.multi_setopt
#define curl_multi_add_handle	 ps_curl_api.multi_add_handle
#define curl_multi_remove_handle ps_curl_api.multi_remove_handle
#define curl_multi_assign	 ps_curl_api.multi_assign
#define curl_multi_socket_action ps_curl_api.multi_socket_action
#define curl_multi_info_read	 ps_curl_api.multi_info_read
#define curl_multi_cleanup	 ps_curl_api.multi_cleanup
#define curl_slist_append	 ps_curl_api.slist_append
#define curl_slist_free_all	 ps_curl_api.slist_free_all
#define curl_url		 ps_curl_api.url
#define curl_url_set		 ps_curl_api.url_set
#define curl_url_get		 ps_curl_api.url_get
#define curl_url_cleanup	 ps_curl_api.url_cleanup
#define curl_free		 ps_curl_api.free

#endif
