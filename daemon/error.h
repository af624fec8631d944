/*
 * error.h - error messages that travel with negative errno returns.
 *
 * Engine functions return 0 or a negative errno and, when given a
 * struct eng_err, leave a one-line human message in it naming the
 * problem ("ref.gguf: truncated at byte 123 reading tensor count").
 * Library code never logs; the daemon turns these into replies or logs.
 */
#ifndef HEARTH_ERROR_H
#define HEARTH_ERROR_H

#define ENG_ERR_MAX 256

struct eng_err {
	char msg[ENG_ERR_MAX];	/* NUL-terminated, "" when unset */
};

/*
 * Format a message into err (may be NULL) and return code, which should
 * be a negative errno, so callers can write
 *	return err_set(err, -EINVAL, "bad magic %08x", magic);
 */
int err_set(struct eng_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message: "what: old message". Returns code. */
int err_prefix(struct eng_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* HEARTH_ERROR_H */
