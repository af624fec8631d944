/*
 * log.h - hearthd's log: one line per event on standard error.
 *
 * Each line starts with an sd-daemon priority prefix ("<3>" error,
 * "<4>" warning, "<5>" notice, "<6>" info, "<7>" debug) so that
 * journald files it at the right level, then the subsystem or function,
 * then the message:
 *	<6>registry: loaded aidreams260K (1.1 MB) in 3 ms
 * Lines are written with one write(2), so threads do not interleave.
 */
#ifndef HEARTH_LOG_H
#define HEARTH_LOG_H

#include <stdbool.h>

/* Debug lines are dropped unless enabled (hearthd -d). */
void log_init(bool debug);
bool log_debug_enabled(void);

/* Warnings; log_warn appends ": strerror(errno)". */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Normal but significant: refusals by access rules, reloads. */
void log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Log at error priority and exit(1); fatal appends strerror(errno). */
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#endif /* HEARTH_LOG_H */
