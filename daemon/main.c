/*
 * main.c - hearthd: serve local LLM inference over a Unix socket.
 *
 *	hearthd [-dn] [-a ADMIN_SOCKET] [-c CONFIG] [-m MODELS_DIR]
 *		[-s SOCKET] [-t THREADS] [--numa-topology FILE]
 *
 * Runs in the foreground and logs to standard error (hearthd(8)).
 * Defaults: the socket $XDG_RUNTIME_DIR/hearth/hearth.sock for a user,
 * /run/hearth/hearth.sock for root (or the sockets systemd passes); no
 * admin socket; models in ~/.local/share/hearth/models or
 * /var/lib/hearth/models; the configuration ~/.config/hearth/hearth.conf
 * or SYSCONFDIR/hearth/hearth.conf when it exists. -n checks the
 * configuration and exits. SIGHUP reloads the configuration; SIGTERM
 * and SIGINT drain and stop. --numa-topology FILE places models on a
 * simulated NUMA topology (numa_topo.h gives the format) instead of the
 * machine's.
 */
#include <errno.h>
#include <getopt.h>
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
#include "registry.h"
#include "server.h"

#ifndef HEARTH_SYSCONFDIR
#define HEARTH_SYSCONFDIR	"/etc"
#endif

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: hearthd [-dn] [-a admin_socket] [-c config] "
	    "[-m models_dir] [-s socket] [-t threads]\n"
	    "               [--numa-topology file]\n");
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
	struct config_overrides ov;
	struct srv_opts so;
	struct config *cfg;
	struct srv srv;
	static const struct option longopts[] = {
		{ "numa-topology", required_argument, NULL, 'N' },
		{ NULL, 0, NULL, 0 }
	};
	const char *opt_config = NULL, *opt_topo = NULL, *home, *xdg;
	char bud[32];
	char err[CONFIG_ERR_MAX + 64], *socket_path = NULL, *models_dir = NULL;
	char *config_path = NULL;
	bool is_root = geteuid() == 0, check = false, loaded = false;
	int ch, r;

	signal(SIGPIPE, SIG_IGN);
	memset(&ov, 0, sizeof(ov));
	while ((ch = getopt_long(argc, argv, "a:c:dhm:ns:t:", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'N':
			opt_topo = optarg;
			break;
		case 'a':
			ov.admin_socket_path = optarg;
			break;
		case 'c':
			opt_config = optarg;
			break;
		case 'd':
			ov.debug = true;
			break;
		case 'm':
			ov.models_dir = optarg;
			break;
		case 'n':
			check = true;
			break;
		case 's':
			ov.socket_path = optarg;
			break;
		case 't':
			if (config_parse_u32(optarg, 1, 256, &ov.threads) < 0) {
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

	if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
		fatalx("hearthd: out of memory");
	config_default(cfg, is_root);
	home = main_home();
	if (opt_config != NULL)
		config_path = strdup(opt_config);
	else if (is_root)
		config_path = strdup(HEARTH_SYSCONFDIR "/hearth/hearth.conf");
	else if ((xdg = getenv("XDG_CONFIG_HOME")) != NULL && *xdg == '/')
		config_path = main_path(xdg, "/hearth/hearth.conf");
	else if (home != NULL)
		config_path = main_path(home, "/.config/hearth/hearth.conf");
	if (config_path != NULL) {
		r = config_load(cfg, config_path, err, sizeof(err));
		/* the default file is optional, a named one is not */
		if (r == -ENOENT && opt_config == NULL) {
			config_free(cfg);
			config_default(cfg, is_root);
		} else if (r == 0) {
			loaded = true;
		} else {
			fprintf(stderr, "<3>hearthd: %s\n", err);
			config_free(cfg);
			free(cfg);
			free(config_path);
			return 1;
		}
	}
	if (config_apply(cfg, &ov) < 0)
		fatalx("hearthd: out of memory");
	if (check) {
		printf("hearthd: %s: %zu [model] and %zu [access] sections, "
		    "OK\n", loaded ? config_path : "no configuration file",
		    cfg->n_models, cfg->n_access);
		config_free(cfg);
		free(cfg);
		free(config_path);
		return 0;
	}
	log_init(cfg->debug);

	if (cfg->socket_path != NULL)
		socket_path = strdup(cfg->socket_path);
	else if (is_root)
		socket_path = strdup("/run/hearth/hearth.sock");
	else if ((xdg = getenv("XDG_RUNTIME_DIR")) != NULL && *xdg == '/')
		socket_path = main_path(xdg, "/hearth/hearth.sock");
	else
		fatalx("hearthd: XDG_RUNTIME_DIR is not set; name a socket "
		    "with -s");
	if (cfg->models_dir != NULL)
		models_dir = strdup(cfg->models_dir);
	else if (is_root)
		models_dir = strdup("/var/lib/hearth/models");
	else if (home != NULL)
		models_dir = main_path(home, "/.local/share/hearth/models");
	else
		fatalx("hearthd: no home directory; name the models "
		    "directory with -m");
	if (socket_path == NULL || models_dir == NULL)
		fatalx("hearthd: out of memory");
	if (cfg->models_dir == NULL && (r = main_mkdirs(models_dir,
	    is_root ? 0755 : 0700)) < 0)
		log_warnx("hearthd: %s: %s", models_dir, strerror(-r));

	if (reg_memory_init(opt_topo, err, sizeof(err)) < 0) {
		log_warnx("hearthd: %s", err);
		config_free(cfg);
		free(cfg);
		free(config_path);
		free(socket_path);
		free(models_dir);
		fatalx("hearthd: cannot start");
	}
	memset(&so, 0, sizeof(so));
	so.socket_path = socket_path;
	so.admin_socket_path = cfg->admin_socket_path;
	so.models_dir = models_dir;
	so.config_path = config_path;
	so.config_optional = opt_config == NULL;
	so.ov = ov;
	so.is_root = is_root;
	/* srv owns cfg from here on */
	if (srv_init(&srv, cfg, &so, err, sizeof(err)) < 0) {
		log_warnx("hearthd: %s", err);
		srv_free(&srv);
		free(config_path);
		free(socket_path);
		free(models_dir);
		fatalx("hearthd: cannot start");
	}
	if (srv.cfg->threads != 0)
		log_info("hearthd: models in %s, keep_alive %lld s, %u slots "
		    "and %u threads per model", models_dir,
		    (long long)srv.cfg->keep_alive, srv.cfg->n_parallel,
		    srv.cfg->threads);
	else
		log_info("hearthd: models in %s, keep_alive %lld s, %u slots "
		    "per model", models_dir, (long long)srv.cfg->keep_alive,
		    srv.cfg->n_parallel);
	mem_fmt_bytes(reg_budget(srv.reg), bud, sizeof(bud));
	log_info("hearthd: memory budget %s (%s), at most %u models "
	    "resident", bud, srv.cfg->memory_budget != NULL ?
	    srv.cfg->memory_budget : "80% of RAM", srv.cfg->max_models);
	if (loaded)
		log_info("hearthd: configuration %s: %zu [model] and %zu "
		    "[access] sections", config_path, srv.cfg->n_models,
		    srv.cfg->n_access);
	r = srv_run(&srv);
	srv_free(&srv);
	log_info("hearthd: stopped");
	free(config_path);
	free(socket_path);
	free(models_dir);
	return r < 0 ? 1 : 0;
}
