/*
 * fuzz_proto.c - libFuzzer target: the protocol decoder, from the byte
 * stream to the C structs.
 *
 * Input: byte 0 chooses how the rest is read:
 *	bit 0	0: a stream of frames fed to the frame reader in pieces;
 *		1: the rest is one frame body (no header)
 *	bits 1-3  piece size for the reader (1, 2, 3, 7, 64, 512, 4096, all)
 *	bit 4	small limits (every limit near its minimum) instead of the
 *		defaults
 * Each body goes through proto_scan, proto_unpack_request and
 * proto_unpack_response. Invariants: a refusal has an error code and a
 * message and leaves the output untouched; an accepted message passes
 * proto_*_check, packs again (unless re-encoding outgrows a limit), and
 * what it packs to decodes and packs to the very same bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "proto.h"

static struct proto_limits fp_def, fp_small;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	proto_limits_default(&fp_def);
	fp_small.max_frame = PROTO_MAX_FRAME_MIN;
	fp_small.max_objects = 64;
	fp_small.max_text = 16;
	fp_small.max_ids = 4;
	fp_small.max_stop = 1;
	fp_small.max_stop_len = 4;
	fp_small.max_messages = 2;
	fp_small.max_items = 2;
	if (proto_limits_check(&fp_def, NULL) < 0 ||
	    proto_limits_check(&fp_small, NULL) < 0)
		abort();
	return 0;
}

static void
fp_refused(const char *what, int r, const struct proto_err *e)
{
	FZ_ASSERT(r == -EBADMSG || r == -EINVAL || r == -EMSGSIZE ||
	    r == -EPROTONOSUPPORT, "%s: unexpected %d (%s)", what, r, e->msg);
	FZ_ASSERT(e->code != PROTO_E_NONE, "%s: %d without a code", what, r);
	FZ_ASSERT(e->msg[0] != '\0' && memchr(e->msg, '\0', sizeof(e->msg)),
	    "%s: %d without a message", what, r);
	FZ_ASSERT(fz_utf8_valid(e->msg, strlen(e->msg)) == strlen(e->msg),
	    "%s: message not UTF-8", what);
}

/* Pack an accepted request, decode that, pack again: same bytes. */
static void
fp_request_again(const struct proto_request *r, const struct proto_limits *l)
{
	struct proto_buf b1, b2;
	struct proto_request r2;
	struct proto_err e;
	int rc;

	proto_buf_init(&b1);
	proto_buf_init(&b2);
	memset(&e, 0, sizeof(e));
	rc = proto_pack_request(&b1, r, l, &e);
	if (rc == -EMSGSIZE)
		goto out;	/* re-encoding may be larger (floats) */
	FZ_ASSERT(rc == 0, "pack of a decoded %s: %d %s",
	    proto_msg_name(r->type), rc, e.msg);
	FZ_ASSERT(b1.len > PROTO_HDR_SIZE, "empty frame");
	rc = proto_unpack_request(b1.data + PROTO_HDR_SIZE,
	    b1.len - PROTO_HDR_SIZE, l, &r2, &e);
	FZ_ASSERT(rc == 0, "unpack of a packed %s: %d %s",
	    proto_msg_name(r->type), rc, e.msg);
	FZ_ASSERT(r2.type == r->type && r2.id == r->id, "type or id changed");
	rc = proto_pack_request(&b2, &r2, l, &e);
	FZ_ASSERT(rc == 0, "second pack: %d %s", rc, e.msg);
	FZ_ASSERT(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0,
	    "%s packs differently the second time",
	    proto_msg_name(r->type));
	proto_request_free(&r2);
out:
	proto_buf_free(&b1);
	proto_buf_free(&b2);
}

static void
fp_response_again(const struct proto_response *r,
    const struct proto_limits *l)
{
	struct proto_buf b1, b2;
	struct proto_response r2;
	struct proto_err e;
	int rc;

	proto_buf_init(&b1);
	proto_buf_init(&b2);
	memset(&e, 0, sizeof(e));
	rc = proto_pack_response(&b1, r, l, &e);
	if (rc == -EMSGSIZE)
		goto out;
	FZ_ASSERT(rc == 0, "pack of a decoded %s: %d %s",
	    proto_msg_name(r->type), rc, e.msg);
	rc = proto_unpack_response(b1.data + PROTO_HDR_SIZE,
	    b1.len - PROTO_HDR_SIZE, l, &r2, &e);
	FZ_ASSERT(rc == 0, "unpack of a packed %s: %d %s",
	    proto_msg_name(r->type), rc, e.msg);
	FZ_ASSERT(r2.type == r->type && r2.id == r->id &&
	    r2.request == r->request, "type, id or request changed");
	rc = proto_pack_response(&b2, &r2, l, &e);
	FZ_ASSERT(rc == 0, "second pack: %d %s", rc, e.msg);
	FZ_ASSERT(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0,
	    "%s packs differently the second time",
	    proto_msg_name(r->type));
	proto_response_free(&r2);
out:
	proto_buf_free(&b1);
	proto_buf_free(&b2);
}

static void
fp_body(const uint8_t *body, size_t len, const struct proto_limits *l)
{
	struct proto_request req, req_s;
	struct proto_response res, res_s;
	struct proto_err e;
	int scanned, rc;

	memset(&e, 0, sizeof(e));
	scanned = proto_scan(body, len, l, &e);
	if (scanned < 0)
		fp_refused("scan", scanned, &e);

	memset(&req, 0xa5, sizeof(req));
	req_s = req;
	memset(&e, 0, sizeof(e));
	rc = proto_unpack_request(body, len, l, &req, &e);
	if (rc < 0) {
		fp_refused("unpack_request", rc, &e);
		FZ_ASSERT(memcmp(&req, &req_s, sizeof(req)) == 0,
		    "unpack_request changed *out on failure");
	} else {
		FZ_ASSERT(scanned >= 0, "decoded what scan refused");
		FZ_ASSERT(req.type >= PROTO_MSG_HELLO &&
		    req.type <= PROTO_MSG_PING && req.id >= 1, "type %d id %llu",
		    (int)req.type, (unsigned long long)req.id);
		memset(&e, 0, sizeof(e));
		rc = proto_request_check(&req, l, &e);
		FZ_ASSERT(rc == 0, "decoded %s fails its check: %s",
		    proto_msg_name(req.type), e.msg);
		fp_request_again(&req, l);
		proto_request_free(&req);
	}

	memset(&res, 0x5a, sizeof(res));
	res_s = res;
	memset(&e, 0, sizeof(e));
	rc = proto_unpack_response(body, len, l, &res, &e);
	if (rc < 0) {
		fp_refused("unpack_response", rc, &e);
		FZ_ASSERT(memcmp(&res, &res_s, sizeof(res)) == 0,
		    "unpack_response changed *out on failure");
	} else {
		FZ_ASSERT(scanned >= 0, "decoded what scan refused");
		memset(&e, 0, sizeof(e));
		rc = proto_response_check(&res, l, &e);
		FZ_ASSERT(rc == 0, "decoded %s fails its check: %s",
		    proto_msg_name(res.type), e.msg);
		fp_response_again(&res, l);
		proto_response_free(&res);
	}
}

static void
fp_stream(const uint8_t *p, size_t len, size_t piece,
    const struct proto_limits *l)
{
	struct proto_reader *rd = NULL;
	struct proto_err e;
	const uint8_t *body;
	size_t off = 0, n, blen;
	int rc, sticky = 0;

	FZ_ASSERT(proto_reader_new(l->max_frame, &rd) == 0, "reader_new");
	while (off < len) {
		n = len - off < piece ? len - off : piece;
		memset(&e, 0, sizeof(e));
		rc = proto_reader_feed(rd, p + off, n, &e);
		off += n;
		if (rc < 0) {
			/* a bad header may show as soon as it is fed */
			if (sticky == 0)
				fp_refused("reader_feed", rc, &e);
			FZ_ASSERT(sticky == 0 || rc == sticky,
			    "feed: %d after %d", rc, sticky);
			break;
		}
		for (;;) {
			memset(&e, 0, sizeof(e));
			rc = proto_reader_next(rd, &body, &blen, &e);
			if (rc == 0)
				break;
			if (rc < 0) {
				fp_refused("reader_next", rc, &e);
				FZ_ASSERT(sticky == 0 || rc == sticky,
				    "error changed");
				sticky = rc;
				break;
			}
			FZ_ASSERT(blen >= 1 && blen <= l->max_frame,
			    "frame of %zu", blen);
			fp_body(body, blen, l);
		}
	}
	(void)proto_reader_pending(rd);
	proto_reader_free(rd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t pieces[8] = { 1, 2, 3, 7, 64, 512, 4096, SIZE_MAX };
	const struct proto_limits *l;
	uint8_t *body;

	if (size < 1)
		return 0;
	l = data[0] & 0x10 ? &fp_small : &fp_def;
	if (data[0] & 1) {
		/* an exact-size copy: reads past the body are caught */
		body = malloc(size - 1 ? size - 1 : 1);
		FZ_ASSERT(body != NULL, "malloc");
		memcpy(body, data + 1, size - 1);
		fp_body(body, size - 1, l);
		free(body);
	} else
		fp_stream(data + 1, size - 1, pieces[(data[0] >> 1) & 7], l);
	return 0;
}
