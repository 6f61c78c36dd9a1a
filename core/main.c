/* periscoped: command line. Everything else lives in daemon.c. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "logging.h"
#include "settings.h"

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: periscoped [OPTION]...\n"
		"Watch every process through eBPF and write RED metrics, TCP flows and alerts.\n"
		"\n"
		"  -c, --config FILE      configuration file (default %s/periscope.yaml;\n"
		"                         an embedded default when it does not exist)\n"
		"      --plugin-dir DIR   load plugins from DIR (default %s)\n"
		"      --check-config     validate the configuration and the plugins it names, then exit\n"
		"      --list-plugins     list the plugins in the plugin directory and their settings\n"
		"      --duration SECONDS run this long, flush every sink once more and exit 0\n"
		"      --instance NAME    run as instance NAME (overrides daemon.instance): one\n"
		"                         periscoped per name, locked by its pid file in\n"
		"                         /run/periscope (periscoped-NAME.pid)\n"
		"      --log-level LEVEL  error, warn, info, debug or trace (overrides daemon.log_level;\n"
		"                         trace adds libbpf's own log to debug)\n"
		"  -V, --version          print the version and exit\n"
		"  -h, --help             print this help and exit\n"
		"\n"
		"Signals: SIGTERM/SIGINT flush and exit; SIGHUP reloads the configuration\n"
		"(an invalid one is rejected and the running one kept).\n"
		"Exit status: 0 ok, 1 runtime failure, 2 usage, 78 bad configuration.\n",
		PS_SYSCONF_DIR, PS_PLUGIN_DIR);
}

static int parse_seconds(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v == 0 || v > 10ull * 365 * 24 * 3600 || s[0] == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

enum { OPT_PLUGIN_DIR = 256, OPT_CHECK, OPT_LIST, OPT_DURATION, OPT_LOG_LEVEL, OPT_INSTANCE };

/*
 * SIGTERM, SIGINT and SIGHUP wait (pending) until the loop's handlers are
 * installed: one that came during start-up would otherwise kill the daemon
 * midway, without its final flush, or be lost. setup_loop unblocks them.
 */
static void hold_stop_signals(int how)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(how, &set, NULL);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "list-plugins", no_argument, NULL, OPT_LIST },
		{ "duration", required_argument, NULL, OPT_DURATION },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "instance", required_argument, NULL, OPT_INSTANCE },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ps_daemon_opts opts = { 0 };
	bool check = false, list = false;
	enum ps_log_level level;
	int c;

	hold_stop_signals(SIG_BLOCK);
	while ((c = getopt_long(argc, argv, "c:Vh", options, NULL)) != -1) {
		switch (c) {
		case 'c':
			opts.config_path = optarg;
			break;
		case OPT_PLUGIN_DIR:
			opts.plugin_dir = optarg;
			break;
		case OPT_CHECK:
			check = true;
			break;
		case OPT_LIST:
			list = true;
			break;
		case OPT_DURATION:
			if (parse_seconds(optarg, &opts.duration_s)) {
				fprintf(stderr, "periscoped: --duration: expected a positive number of "
						"seconds, got '%s'\n", optarg);
				return PS_EXIT_USAGE;
			}
			break;
		case OPT_LOG_LEVEL:
			if (ps_log_parse_level(optarg, &level)) {
				fprintf(stderr,
					"periscoped: --log-level: expected error, warn, info, "
					"debug or trace, got '%s'\n",
					optarg);
				return PS_EXIT_USAGE;
			}
			opts.log_level = optarg;
			ps_log_set_level(level);
			break;
		case OPT_INSTANCE:
			if (!ps_settings_instance_valid(optarg)) {
				fprintf(stderr,
					"periscoped: --instance: expected 1 to 64 letters, "
					"digits, '_', '.' or '-', not starting with '.', got "
					"'%s'\n",
					optarg);
				return PS_EXIT_USAGE;
			}
			opts.instance = optarg;
			break;
		case 'V':
			printf("periscoped %s\n", PACKAGE_VERSION);
			return PS_EXIT_OK;
		case 'h':
			usage(stdout);
			return PS_EXIT_OK;
		default:
			usage(stderr);
			return PS_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "periscoped: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return PS_EXIT_USAGE;
	}
	if (check && list) {
		fprintf(stderr, "periscoped: --check-config and --list-plugins exclude each other\n");
		return PS_EXIT_USAGE;
	}
	/* A closed stdout must fail the flush (-EPIPE), not kill the daemon. */
	signal(SIGPIPE, SIG_IGN);
	if (check || list) {
		hold_stop_signals(SIG_UNBLOCK);
		return check ? ps_daemon_check_config(&opts) : ps_daemon_list_plugins(&opts);
	}
	return ps_daemon_run(&opts);
}
