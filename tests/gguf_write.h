/*
 * gguf_write.h - a GGUF (version 3) writer for tests and the model maker.
 *
 * Keys and tensors are kept in the order added and written out with the
 * alignment from general.alignment (default 32). Data is copied in.
 */
#ifndef HEARTH_GGUF_WRITE_H
#define HEARTH_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"

struct gguf_writer;

int  gguf_writer_new(struct gguf_writer **out);
void gguf_writer_free(struct gguf_writer *w);	/* accepts NULL */

/* Metadata; a key set twice replaces the first value in place. */
int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(struct gguf_writer *w, const char *key, int v);
int gguf_writer_set_str(struct gguf_writer *w, const char *key,
	    const char *s);
/* Array of n fixed-size elements of type elem (raw little-endian). */
int gguf_writer_set_arr(struct gguf_writer *w, const char *key,
	    enum gguf_vtype elem, const void *data, uint64_t n);
/* Array of n strings. */
int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key,
	    const char *const *strs, const size_t *lens, uint64_t n);
/* Copy one key/value as read by the reader (any type, arrays too). */
int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_kv *kv);

/* A tensor of GGML type `type` with ne[0..n_dims); nbytes of data. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name,
	    uint32_t n_dims, const uint64_t *ne, uint32_t type,
	    const void *data, size_t nbytes);

/* Serialize to a malloc'd buffer (caller frees) or to a file. */
int gguf_writer_to_buf(const struct gguf_writer *w, uint8_t **buf,
	    size_t *len);
int gguf_writer_to_file(const struct gguf_writer *w, const char *path,
	    struct eng_err *err);

#endif /* HEARTH_GGUF_WRITE_H */
