/*
 * gguf.h - the hardened GGUF reader (versions 2 and 3).
 *
 * gguf_open() reads and validates the header, every metadata key/value
 * and every tensor info of a file; tensor data is not read until asked
 * for with gguf_read_tensor(), which copies it (pread) into memory the
 * caller owns, so the file is never mapped. Every count, length,
 * dimension, type and offset is checked against the file size and for
 * overflow before anything is allocated or read; a bad file yields a
 * negative errno and a message naming the problem.
 */
#ifndef HEARTH_GGUF_H
#define HEARTH_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define GGUF_MAGIC		0x46554747u	/* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT	32
#define GGUF_MAX_DIMS		4

/* Hard caps, checked before allocating (besides the file size). */
#define GGUF_MAX_STRING		(1u << 20)	/* bytes in one string, keys 64 KiB */
#define GGUF_MAX_KEY		(1u << 16)
#define GGUF_MAX_KV		(1u << 20)	/* metadata pairs */
#define GGUF_MAX_TENSORS	(1u << 20)
#define GGUF_MAX_ARRAY		(1u << 26)	/* elements in one array */

enum gguf_vtype {
	GGUF_VTYPE_UINT8   = 0,
	GGUF_VTYPE_INT8    = 1,
	GGUF_VTYPE_UINT16  = 2,
	GGUF_VTYPE_INT16   = 3,
	GGUF_VTYPE_UINT32  = 4,
	GGUF_VTYPE_INT32   = 5,
	GGUF_VTYPE_FLOAT32 = 6,
	GGUF_VTYPE_BOOL    = 7,
	GGUF_VTYPE_STRING  = 8,
	GGUF_VTYPE_ARRAY   = 9,
	GGUF_VTYPE_UINT64  = 10,
	GGUF_VTYPE_INT64   = 11,
	GGUF_VTYPE_FLOAT64 = 12,
	GGUF_VTYPE_COUNT
};

/* A string from the file: length-checked, NUL-terminated copy. */
struct gguf_str {
	uint64_t	 len;	/* bytes, not counting the NUL */
	char		*s;	/* len bytes + NUL; may contain NULs */
};

struct gguf_kv {
	struct gguf_str	 key;
	enum gguf_vtype	 type;
	union {
		uint64_t	 u64;	/* UINT8/16/32/64 */
		int64_t		 i64;	/* INT8/16/32/64 */
		double		 f64;	/* FLOAT32/64 */
		bool		 b;	/* BOOL */
		struct gguf_str	 str;	/* STRING */
		struct {
			enum gguf_vtype	 type;	/* element type, never ARRAY */
			uint64_t	 n;	/* element count */
			void		*data;	/* n elements: raw little-endian
						 * values of the element type
						 * (bool as uint8), or n
						 * struct gguf_str for STRING */
		} arr;
	} v;
};

struct gguf_tensor {
	struct gguf_str	 name;
	uint32_t	 n_dims;		/* 1..GGUF_MAX_DIMS */
	uint64_t	 ne[GGUF_MAX_DIMS];	/* elements per dim, ne[0] innermost;
						 * unused dims are 1 */
	uint32_t	 type;			/* GGML type id */
	uint64_t	 offset;		/* from the start of the data section */
	uint64_t	 nbytes;		/* size of the data */
	uint64_t	 nelems;		/* product of ne */
};

struct gguf {
	char			*path;		/* for messages */
	int			 fd;		/* open until gguf_close() */
	uint64_t		 file_size;
	uint32_t		 version;	/* 2 or 3 */
	uint32_t		 alignment;	/* general.alignment or 32 */
	uint64_t		 data_offset;	/* absolute offset of tensor data */
	uint64_t		 n_kv;
	struct gguf_kv		*kv;		/* [n_kv] */
	uint64_t		 n_tensors;
	struct gguf_tensor	*tensors;	/* [n_tensors] */
};

/*
 * Open and validate path. On success *out owns the file descriptor; on
 * failure *out is untouched and err says why. Errors: -ENOENT/-EACCES...
 * from open, -EISDIR for a directory, -EINVAL for anything else that is
 * not a regular file and for a malformed or truncated file, -E2BIG for
 * a key, tensor or array count past its cap, -EFBIG for a string past
 * its cap, -EIO if the file changes while read, -ENOMEM.
 */
int  gguf_open(const char *path, struct gguf **out, struct eng_err *err);
void gguf_close(struct gguf *g);	/* accepts NULL */

/* Size in bytes of n elements of a GGML type id, or 0 for unknown types
 * or an n that is not a whole number of blocks. Knows all GGML types. */
uint64_t gguf_type_nbytes(uint32_t type, uint64_t n);
/* "f32", "q4_k", ...; NULL for an unknown type id. */
const char *gguf_type_name(uint32_t type);

const struct gguf_kv *gguf_find_kv(const struct gguf *g, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g,
	    const char *name);

/*
 * Typed getters. Return 0, -ENOENT when the key is missing, -EINVAL when
 * it has an incompatible type (integers convert between widths only
 * when the value fits; floats accept FLOAT32/FLOAT64).
 */
int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out);
int gguf_get_u64(const struct gguf *g, const char *key, uint64_t *out);
int gguf_get_i32(const struct gguf *g, const char *key, int32_t *out);
int gguf_get_f32(const struct gguf *g, const char *key, float *out);
int gguf_get_bool(const struct gguf *g, const char *key, bool *out);
int gguf_get_str(const struct gguf *g, const char *key,
	    const struct gguf_str **out);
/* An array whose elements have type elem: *out is the kv. */
int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_vtype elem,
	    const struct gguf_kv **out);

/*
 * Copy tensor t's data (t->nbytes) into dst (dst_size bytes at least)
 * with large sequential preads. -EIO or -EINVAL (with a message) when
 * the file has changed or is short.
 */
int gguf_read_tensor(const struct gguf *g, const struct gguf_tensor *t,
	    void *dst, size_t dst_size, struct eng_err *err);

#endif /* HEARTH_GGUF_H */
