/*
 * error.c - error messages that travel with negative errno returns.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

int
err_set(struct eng_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

int
err_prefix(struct eng_err *err, int code, const char *fmt, ...)
{
	char old[ENG_ERR_MAX], pre[ENG_ERR_MAX];
	va_list ap;

	if (err == NULL)
		return code;
	memcpy(old, err->msg, sizeof(old));
	old[sizeof(old) - 1] = '\0';
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	/* the message may be cut; it stays NUL-terminated */
	if (snprintf(err->msg, sizeof(err->msg), "%s: %s", pre, old) < 0)
		err->msg[0] = '\0';
	return code;
}
