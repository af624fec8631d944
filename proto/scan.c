/*
 * scan.c - the msgpack pre-validator.
 *
 * msgpack-c allocates room for a container from its declared count
 * before it reads a single element (5 bytes "dd ff 00 00 00" ask for
 * 4278190080 objects, about 96 GB), so no body reaches it before this
 * walk over the raw bytes has proved that every declared length and
 * count fits in the bytes that are left: each pending element needs at
 * least one byte. The walk allocates nothing and uses a fixed stack.
 */
#include <errno.h>
#include <stdint.h>

#include "proto.h"

/* Big-endian reads. */
static uint64_t
be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = v << 8 | *p++;
	return v;
}

/*
 * Decode the header of the object at p[0..left): *hdr header bytes
 * (type byte included), *payload bytes of str/bin/ext data, *elems
 * elements for arrays (count) and maps (2 * count), *what a name for
 * messages. Returns 0 or -1 for the reserved byte 0xc1.
 */
static int
header(const uint8_t *p, unsigned *hdr, unsigned *lenbytes, uint64_t *payload,
    int *kind, const char **what)
{
	uint8_t	 b = p[0];

	*hdr = 1;
	*lenbytes = 0;
	*payload = 0;
	*kind = 0;		/* 0 scalar, 1 array, 2 map */
	*what = "int";
	if (b <= 0x7f || b >= 0xe0)
		return 0;	/* fixint */
	if (b <= 0x8f) {
		*kind = 2;
		*payload = b & 0x0f;
		*what = "map";
		return 0;
	}
	if (b <= 0x9f) {
		*kind = 1;
		*payload = b & 0x0f;
		*what = "array";
		return 0;
	}
	if (b <= 0xbf) {
		*payload = b & 0x1f;
		*what = "str";
		return 0;
	}
	switch (b) {
	case 0xc0:
		*what = "nil";
		return 0;
	case 0xc2: case 0xc3:
		*what = "bool";
		return 0;
	case 0xc1:
		return -1;
	case 0xc4: case 0xc5: case 0xc6:
		*lenbytes = 1u << (b - 0xc4);
		*what = "bin";
		break;
	case 0xc7: case 0xc8: case 0xc9:
		*lenbytes = 1u << (b - 0xc7);
		*hdr += 1;	/* ext type byte */
		*what = "ext";
		break;
	case 0xca:
		*payload = 4;
		*what = "float";
		break;
	case 0xcb:
		*payload = 8;
		*what = "float";
		break;
	case 0xcc: case 0xcd: case 0xce: case 0xcf:
		*payload = 1u << (b - 0xcc);
		break;
	case 0xd0: case 0xd1: case 0xd2: case 0xd3:
		*payload = 1u << (b - 0xd0);
		break;
	case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
		*hdr += 1;	/* ext type byte */
		*payload = 1u << (b - 0xd4);
		*what = "ext";
		break;
	case 0xd9: case 0xda: case 0xdb:
		*lenbytes = 1u << (b - 0xd9);
		*what = "str";
		break;
	case 0xdc: case 0xdd:
		*lenbytes = 2u << (b - 0xdc);
		*kind = 1;
		*what = "array";
		break;
	case 0xde: case 0xdf:
		*lenbytes = 2u << (b - 0xde);
		*kind = 2;
		*what = "map";
		break;
	}
	*hdr += *lenbytes;
	return 0;
}

int
proto_scan(const void *buf, size_t len, const struct proto_limits *l,
    struct proto_err *err)
{
	const uint8_t	*p = buf;
	uint64_t	 stack[PROTO_MAX_DEPTH];	/* elements due per level */
	uint64_t	 pending = 0;	/* sum of stack: elements still due */
	uint64_t	 objects = 0, payload, n, left;
	size_t		 pos = 0;
	unsigned	 depth = 0, hdr, lenbytes;
	int		 kind;
	const char	*what;

	if (len == 0)
		return proto_err_set(err, PROTO_E_BAD_REQUEST, -EBADMSG,
		    "msgpack: empty body");
	if (len > l->max_frame)
		return proto_err_set(err, PROTO_E_TOO_LARGE, -EMSGSIZE,
		    "msgpack: body of %zu bytes exceeds the maximum of %u",
		    len, l->max_frame);
	for (;;) {
		/* Close the containers whose elements have all been read. */
		while (depth > 0 && stack[depth - 1] == 0)
			depth--;
		if (pos > 0 && depth == 0)
			break;
		if (pos >= len)
			return proto_err_set(err, PROTO_E_BAD_REQUEST, -EBADMSG,
			    "msgpack: truncated: %llu more elements due at "
			    "byte %zu", (unsigned long long)pending, pos);
		left = len - pos;
		if (header(p + pos, &hdr, &lenbytes, &payload, &kind,
		    &what) < 0)
			return proto_err_set(err, PROTO_E_BAD_REQUEST, -EBADMSG,
			    "msgpack: reserved byte 0xc1 at byte %zu", pos);
		if (pos == 0 && kind != 2)
			return proto_err_set(err, PROTO_E_BAD_REQUEST, -EBADMSG,
			    "msgpack: top level: expected a map, got %s", what);
		if (++objects > l->max_objects)
			return proto_err_set(err, PROTO_E_TOO_LARGE, -EMSGSIZE,
			    "msgpack: more than %u objects", l->max_objects);
		if (hdr > left)
			return proto_err_set(err, PROTO_E_BAD_REQUEST, -EBADMSG,
			    "msgpack: %s header at byte %zu cut short",
			    what, pos);
		if (lenbytes > 0)
			payload = be(p + pos + 1, lenbytes);
		left -= hdr;
		if (depth > 0) {
			/* this object fills one element of its container */
			stack[depth - 1]--;
			pending--;
		}
		if (kind == 0) {
			if (payload > left)
				return proto_err_set(err, PROTO_E_BAD_REQUEST,
				    -EBADMSG, "msgpack: %s at byte %zu %s "
				    "%llu bytes, only %llu left", what, pos,
				    lenbytes > 0 ? "declares" : "needs",
				    (unsigned long long)payload,
				    (unsigned long long)left);
			pos += hdr + (size_t)payload;
			left -= payload;
			if (pending > left)
				return proto_err_set(err, PROTO_E_BAD_REQUEST,
				    -EBADMSG, "msgpack: truncated: %llu more "
				    "elements due, %llu bytes left",
				    (unsigned long long)pending,
				    (unsigned long long)left);
			continue;
		}
		n = kind == 2 ? 2 * payload : payload;
		if (pending + n > left)
			return proto_err_set(err, PROTO_E_BAD_REQUEST, -EBADMSG,
			    "msgpack: %s at byte %zu declares %llu elements, "
			    "only %llu bytes left", what, pos,
			    (unsigned long long)payload,
			    (unsigned long long)left);
		if (objects + pending + n > l->max_objects)
			return proto_err_set(err, PROTO_E_TOO_LARGE, -EMSGSIZE,
			    "msgpack: %s at byte %zu declares %llu elements, "
			    "over the limit of %u objects", what, pos,
			    (unsigned long long)payload, l->max_objects);
		if (depth >= PROTO_MAX_DEPTH)
			return proto_err_set(err, PROTO_E_BAD_REQUEST, -EBADMSG,
			    "msgpack: nested deeper than %d at byte %zu",
			    PROTO_MAX_DEPTH, pos);
		pos += hdr;
		stack[depth++] = n;
		pending += n;
	}
	if (pos != len)
		return proto_err_set(err, PROTO_E_BAD_REQUEST, -EBADMSG,
		    "msgpack: %zu trailing bytes after the top-level map",
		    len - pos);
	return objects > INT32_MAX ? INT32_MAX : (int)objects;
}
