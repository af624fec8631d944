/*
 * main.c - hearthd: serve local LLM inference over a Unix socket.
 *
 *	hearthd [-d] [-c CONFIG] [-m MODELS_DIR] [-s SOCKET] [-t THREADS]
 *
 * Runs in the foreground and logs to standard error. Defaults: the
 * socket $XDG_RUNTIME_DIR/hearth/hearth.sock for a user,
 * /run/hearth/hearth.sock for root; models in ~/.local/share/hearth/models
 * or /var/lib/hearth/models; the configuration ~/.config/hearth/hearth.conf
 * or /etc/hearth/hearth.conf when it exists. SIGINT and SIGTERM stop it
 * gracefully.
 */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "server.h"

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: hearthd [-d] [-c config] [-m models_dir] "
	    "[-s socket] [-t threads]\n");
	exit(2);
}

/* The user's home directory. */
static const char *
main_home(void)
{
	const char *h = getenv("HOME");
	struct passwd *pw;

	if (h != NULL && *h == '/')
		return h;
	if ((pw = getpwuid(getuid())) != NULL && pw->pw_dir != NULL)
		return pw->pw_dir;
	return NULL;
}

/* mkdir -p for a default directory. */
static int
main_mkdirs(const char *path, mode_t mode)
{
	char buf[PATH_MAX], *p;

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, strlen(path) + 1);
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static char *
main_path(const char *a, const char *b)
{
	char *p;

	if (asprintf(&p, "%s%s", a, b) < 0)
		fatalx("out of memory");
	return p;
}

int
main(int argc, char **argv)
{
	struct config cfg;
	struct srv srv;
	const char *opt_socket = NULL, *opt_models = NULL, *opt_config = NULL;
	const char *home, *xdg;
	char err[512], *socket_path = NULL, *models_dir = NULL;
	char *config_path = NULL;
	bool is_root = geteuid() == 0, debug = false, models_default = false;
	uint32_t threads = 0;
	int ch, r;

	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt(argc, argv, "c:dhm:s:t:")) != -1) {
		switch (ch) {
		case 'c':
			opt_config = optarg;
			break;
		case 'd':
			debug = true;
			break;
		case 'm':
			opt_models = optarg;
			break;
		case 's':
			opt_socket = optarg;
			break;
		case 't':
			if (config_parse_u32(optarg, 1, 256, &threads) < 0) {
				fprintf(stderr, "hearthd: -t %s: not in "
				    "1..256\n", optarg);
				return 2;
			}
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	config_default(&cfg, is_root);
	home = main_home();
	if (opt_config != NULL)
		config_path = strdup(opt_config);
	else if (is_root)
		config_path = strdup("/etc/hearth/hearth.conf");
	else if ((xdg = getenv("XDG_CONFIG_HOME")) != NULL && *xdg == '/')
		config_path = main_path(xdg, "/hearth/hearth.conf");
	else if (home != NULL)
		config_path = main_path(home, "/.config/hearth/hearth.conf");
	if (config_path != NULL) {
		r = config_load(&cfg, config_path, err, sizeof(err));
		/* the default file is optional, a named one is not */
		if (r < 0 && !(r == -ENOENT && opt_config == NULL)) {
			fprintf(stderr, "<3>hearthd: %s\n", err);
			config_free(&cfg);
			free(config_path);
			return 1;
		}
	}
	if (debug)
		cfg.debug = true;
	if (threads != 0)
		cfg.threads = threads;
	log_init(cfg.debug);

	if (opt_socket != NULL)
		socket_path = strdup(opt_socket);
	else if (cfg.socket_path != NULL)
		socket_path = strdup(cfg.socket_path);
	else if (is_root)
		socket_path = strdup("/run/hearth/hearth.sock");
	else if ((xdg = getenv("XDG_RUNTIME_DIR")) != NULL && *xdg == '/')
		socket_path = main_path(xdg, "/hearth/hearth.sock");
	else
		fatalx("hearthd: XDG_RUNTIME_DIR is not set; name a socket "
		    "with -s");
	if (opt_models != NULL)
		models_dir = strdup(opt_models);
	else if (cfg.models_dir != NULL)
		models_dir = strdup(cfg.models_dir);
	else if (is_root)
		models_dir = strdup("/var/lib/hearth/models");
	else if (home != NULL)
		models_dir = main_path(home, "/.local/share/hearth/models");
	else
		fatalx("hearthd: no home directory; name the models "
		    "directory with -m");
	if (socket_path == NULL || models_dir == NULL)
		fatalx("hearthd: out of memory");
	models_default = opt_models == NULL && cfg.models_dir == NULL;
	if (models_default && (r = main_mkdirs(models_dir,
	    is_root ? 0755 : 0700)) < 0)
		log_warnx("hearthd: %s: %s", models_dir, strerror(-r));

	if (srv_init(&srv, &cfg, socket_path, models_dir, is_root, err,
	    sizeof(err)) < 0) {
		log_warnx("hearthd: %s", err);
		srv_free(&srv);
		config_free(&cfg);
		free(config_path);
		free(socket_path);
		free(models_dir);
		fatalx("hearthd: cannot start");
	}
	if (cfg.threads != 0)
		log_info("hearthd: models in %s, keep_alive %lld s, %u slots "
		    "and %u threads per model", models_dir,
		    (long long)cfg.keep_alive, cfg.n_parallel, cfg.threads);
	else
		log_info("hearthd: models in %s, keep_alive %lld s, %u slots "
		    "per model", models_dir, (long long)cfg.keep_alive,
		    cfg.n_parallel);
	r = srv_run(&srv);
	srv_free(&srv);
	log_info("hearthd: stopped");
	config_free(&cfg);
	free(config_path);
	free(socket_path);
	free(models_dir);
	return r < 0 ? 1 : 0;
}
