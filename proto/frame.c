/*
 * frame.c - frames on a stream: output buffers, headers, blocking
 * writes and the incremental frame reader.
 *
 * A frame is a 4-byte big-endian body length followed by the body.
 * The reader checks each header as soon as its 4 bytes are buffered
 * and grows its buffer only with bytes actually received.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto.h"

#define READ_CHUNK	65536	/* bytes asked of one read(2) */

struct proto_reader {
	uint8_t		*buf;		/* [cap] bytes; [start, end) buffered */
	size_t		 cap;
	size_t		 start;		/* first byte not yet returned */
	size_t		 end;		/* one past the last byte buffered */
	size_t		 skip;		/* bytes of the frame last returned,
					   dropped at the next call */
	uint32_t	 max_frame;	/* body bytes allowed */
	int		 error;		/* sticky negative errno, or 0 */
	struct proto_err err;		/* its message, repeated */
};

void
proto_buf_init(struct proto_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void
proto_buf_free(struct proto_buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	proto_buf_init(b);
}

int
proto_buf_reserve(struct proto_buf *b, size_t more)
{
	size_t	 need, cap;
	uint8_t	*p;

	if (more > SIZE_MAX - b->len)
		return -ENOMEM;
	need = b->len + more;
	if (need <= b->cap)
		return 0;
	cap = b->cap < 256 ? 256 : b->cap;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if ((p = realloc(b->data, cap)) == NULL)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int
proto_buf_append(struct proto_buf *b, const void *p, size_t len)
{
	int	 rc;

	if (len == 0)
		return 0;
	if ((rc = proto_buf_reserve(b, len)) < 0)
		return rc;
	memcpy(b->data + b->len, p, len);
	b->len += len;
	return 0;
}

void
proto_buf_consume(struct proto_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void
proto_frame_hdr(uint8_t hdr[PROTO_HDR_SIZE], uint32_t len)
{
	hdr[0] = (uint8_t)(len >> 24);
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
}

int
proto_frame_len(const uint8_t hdr[PROTO_HDR_SIZE], uint32_t max_frame,
    uint32_t *len, struct proto_err *err)
{
	uint32_t n;

	n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
	    (uint32_t)hdr[2] << 8 | hdr[3];
	if (n == 0)
		return proto_err_set(err, PROTO_E_BAD_REQUEST, -EBADMSG,
		    "frame: zero-length body");
	if (n > max_frame)
		return proto_err_set(err, PROTO_E_TOO_LARGE, -EMSGSIZE,
		    "frame: body of %u bytes exceeds the maximum of %u",
		    n, max_frame);
	*len = n;
	return 0;
}

int
proto_frame_append(struct proto_buf *b, const void *body, size_t len,
    uint32_t max_frame, struct proto_err *err)
{
	uint8_t	 hdr[PROTO_HDR_SIZE];
	int	 rc;

	if (len == 0)
		return proto_err_set(err, PROTO_E_BAD_REQUEST, -EINVAL,
		    "frame: empty body");
	if (len > max_frame)
		return proto_err_set(err, PROTO_E_TOO_LARGE, -EMSGSIZE,
		    "frame: body of %zu bytes exceeds the maximum of %u",
		    len, max_frame);
	if ((rc = proto_buf_reserve(b, PROTO_HDR_SIZE + len)) < 0)
		return proto_err_set(err, PROTO_E_INTERNAL, rc,
		    "frame: out of memory");
	proto_frame_hdr(hdr, (uint32_t)len);
	memcpy(b->data + b->len, hdr, PROTO_HDR_SIZE);
	memcpy(b->data + b->len + PROTO_HDR_SIZE, body, len);
	b->len += PROTO_HDR_SIZE + len;
	return 0;
}

int
proto_write_all(int fd, const void *p, size_t len)
{
	const uint8_t	*q = p;
	ssize_t		 n;
	bool		 sock = true;

	while (len > 0) {
		if (sock) {
			n = send(fd, q, len, MSG_NOSIGNAL);
			if (n < 0 && errno == ENOTSOCK) {
				sock = false;
				continue;
			}
		} else
			n = write(fd, q, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		q += n;
		len -= (size_t)n;
	}
	return 0;
}

int
proto_reader_new(uint32_t max_frame, struct proto_reader **out)
{
	struct proto_reader *r;

	if (max_frame < PROTO_MAX_FRAME_MIN || max_frame > PROTO_MAX_FRAME_LIMIT)
		return -EINVAL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return -ENOMEM;
	r->max_frame = max_frame;
	*out = r;
	return 0;
}

void
proto_reader_free(struct proto_reader *r)
{
	if (r == NULL)
		return;
	free(r->buf);
	free(r);
}

int
proto_reader_set_max(struct proto_reader *r, uint32_t max_frame)
{
	if (max_frame < PROTO_MAX_FRAME_MIN || max_frame > PROTO_MAX_FRAME_LIMIT)
		return -EINVAL;
	r->max_frame = max_frame;
	return 0;
}

size_t
proto_reader_pending(const struct proto_reader *r)
{
	return r->end - r->start - r->skip;
}

/* Report the sticky error again. */
static int
reader_error(struct proto_reader *r, struct proto_err *err)
{
	if (err != NULL)
		*err = r->err;
	return r->error;
}

/* Drop the frame returned last; move the rest to the front when useful. */
static void
reader_compact(struct proto_reader *r)
{
	r->start += r->skip;
	r->skip = 0;
	if (r->start == r->end) {
		r->start = r->end = 0;
		return;
	}
	if (r->start > 0 && r->start >= r->cap / 2) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
}

/* Make room for more bytes after end. */
static int
reader_reserve(struct proto_reader *r, size_t more)
{
	size_t	 need, cap;
	uint8_t	*p;

	if (r->start > 0 && r->end + more > r->cap) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	if (more > SIZE_MAX - r->end)
		return -ENOMEM;
	need = r->end + more;
	if (need <= r->cap)
		return 0;
	cap = r->cap < 4096 ? 4096 : r->cap;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if ((p = realloc(r->buf, cap)) == NULL)
		return -ENOMEM;
	r->buf = p;
	r->cap = cap;
	return 0;
}

/* Check the header of the frame at start, if its 4 bytes are in. */
static int
reader_check(struct proto_reader *r, uint32_t *len, struct proto_err *err)
{
	int	 rc;

	if (r->end - r->start < PROTO_HDR_SIZE)
		return 0;
	rc = proto_frame_len(r->buf + r->start, r->max_frame, len, &r->err);
	if (rc < 0) {
		r->error = rc;
		return reader_error(r, err);
	}
	return 1;
}

int
proto_reader_feed(struct proto_reader *r, const void *data, size_t len,
    struct proto_err *err)
{
	uint32_t blen;
	int	 rc;

	if (r->error != 0)
		return reader_error(r, err);
	reader_compact(r);
	if (len == 0)
		return 0;
	if ((rc = reader_reserve(r, len)) < 0)
		return proto_err_set(err, PROTO_E_INTERNAL, rc,
		    "frame: out of memory");
	memcpy(r->buf + r->end, data, len);
	r->end += len;
	rc = reader_check(r, &blen, err);
	return rc < 0 ? rc : 0;
}

ssize_t
proto_reader_read(struct proto_reader *r, int fd, struct proto_err *err)
{
	ssize_t	 n;
	uint32_t blen;
	int	 rc;

	if (r->error != 0)
		return reader_error(r, err);
	reader_compact(r);
	if ((rc = reader_reserve(r, READ_CHUNK)) < 0)
		return proto_err_set(err, PROTO_E_INTERNAL, rc,
		    "frame: out of memory");
	do
		n = read(fd, r->buf + r->end, READ_CHUNK);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		rc = -errno;
		return proto_err_set(err, PROTO_E_INTERNAL, rc,
		    "read: %s", strerror(-rc));
	}
	r->end += (size_t)n;
	if ((rc = reader_check(r, &blen, err)) < 0)
		return rc;
	return n;
}

int
proto_reader_next(struct proto_reader *r, const uint8_t **body, size_t *len,
    struct proto_err *err)
{
	uint32_t blen = 0;
	int	 rc;

	if (r->error != 0)
		return reader_error(r, err);
	reader_compact(r);
	if ((rc = reader_check(r, &blen, err)) <= 0)
		return rc;
	if (r->end - r->start - PROTO_HDR_SIZE < blen)
		return 0;
	*body = r->buf + r->start + PROTO_HDR_SIZE;
	*len = blen;
	r->skip = PROTO_HDR_SIZE + (size_t)blen;
	return 1;
}
