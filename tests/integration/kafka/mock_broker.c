/*
 * A one-broker Kafka cluster for the kafka plugin's tests: librdkafka's mock
 * cluster, which speaks the real wire protocol, on a port the test chose.
 *
 *   kafka_mock_broker PORT TOPIC:PARTITIONS...
 *
 * prints "ready 127.0.0.1:PORT" once it listens, then reads commands on stdin,
 * one per line, and answers each with "ok" (or "error: why"):
 *   errors API_KEY CODE...   the next requests of API_KEY fail with CODE, in order
 *   quit                     (end of input does the same)
 *
 * The mock cluster listens on an ephemeral port; bind() below, which the
 * dynamic linker prefers over libc's for librdkafka's call, puts the
 * listener on PORT instead, so that the daemon's configuration can name it
 * before the broker starts.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static uint16_t wanted_port;

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	static int (*real_bind)(int, const struct sockaddr *, socklen_t);
	struct sockaddr_in sin;

	if (!real_bind)
		real_bind =
			(int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
	if (!real_bind) {
		errno = ENOSYS;
		return -1;
	}
	if (wanted_port && addr && addr->sa_family == AF_INET && len >= sizeof(sin)) {
		memcpy(&sin, addr, sizeof(sin));
		if (sin.sin_port == 0) {
			int one = 1;

			sin.sin_port = htons(wanted_port);
			wanted_port = 0; /* one broker, one listener */
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			return real_bind(fd, (const struct sockaddr *)&sin, sizeof(sin));
		}
	}
	return real_bind(fd, addr, len);
}

static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	return errno || end == s || *end || *out < min || *out > max ? -1 : 0;
}

static void command(rd_kafka_mock_cluster_t *mc, char *line)
{
	rd_kafka_resp_err_t errs[64];
	char *save, *word = strtok_r(line, " \t\n", &save);
	size_t n = 0;
	long key, v;

	if (!word)
		return;
	if (strcmp(word, "errors") != 0) {
		printf("error: unknown command %s\n", word);
		return;
	}
	word = strtok_r(NULL, " \t\n", &save);
	if (!word || parse_long(word, 0, 32767, &key)) {
		printf("error: errors API_KEY CODE...\n");
		return;
	}
	while ((word = strtok_r(NULL, " \t\n", &save)) && n < 64) {
		if (parse_long(word, -200, 32767, &v)) {
			printf("error: bad error code %s\n", word);
			return;
		}
		errs[n++] = (rd_kafka_resp_err_t)v;
	}
	rd_kafka_mock_push_request_errors_array(mc, (int16_t)key, n, errs);
	printf("ok\n");
}

int main(int argc, char **argv)
{
	rd_kafka_mock_cluster_t *mc;
	char errstr[256], line[1024];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	long port;

	if (argc < 2 || parse_long(argv[1], 1, 65535, &port)) {
		fprintf(stderr, "usage: %s PORT [TOPIC:PARTITIONS]...\n", argv[0]);
		return 2;
	}
	wanted_port = (uint16_t)port;
	conf = rd_kafka_conf_new();
	/* The handle only hosts the cluster: its own "no bootstrap.servers" warning is noise. */
	rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "mock_broker: %s\n", errstr);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, 1);
	if (!mc) {
		fprintf(stderr, "mock_broker: cannot create the mock cluster\n");
		return 1;
	}
	if (wanted_port) {
		fprintf(stderr, "mock_broker: the listener did not go through bind()\n");
		return 1;
	}
	for (int i = 2; i < argc; i++) {
		char *colon = strchr(argv[i], ':');
		long parts;

		if (!colon || parse_long(colon + 1, 1, 1000, &parts)) {
			fprintf(stderr, "mock_broker: bad topic %s (NAME:PARTITIONS)\n", argv[i]);
			return 2;
		}
		*colon = '\0';
		if (rd_kafka_mock_topic_create(mc, argv[i], (int)parts, 1)) {
			fprintf(stderr, "mock_broker: cannot create topic %s\n", argv[i]);
			return 1;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready %s\n", rd_kafka_mock_cluster_bootstraps(mc));
	while (fgets(line, sizeof(line), stdin)) {
		if (strncmp(line, "quit", 4) == 0)
			break;
		command(mc, line);
	}
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
