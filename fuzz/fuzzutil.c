/*
 * fuzzutil.c - helpers shared by the fuzz targets, the corpus driver and
 * the seed writer (see fuzzutil.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzzutil.h"
#include "tokenizer.h"

void
fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: invariant broken: %s: ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	abort();
}

void
fz_log(const char *fmt, ...)
{
	static int verbose = -1;
	va_list ap;

	if (verbose < 0) {
		const char *v = getenv("FUZZ_VERBOSE");

		verbose = v != NULL && *v != '\0' && strcmp(v, "0") != 0;
	}
	if (!verbose)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* --- files in memory ---------------------------------------------------- */

int
fz_file_open(struct fz_file *f, const char *name)
{
	f->fd = memfd_create(name, MFD_CLOEXEC);
	if (f->fd < 0)
		return -errno;
	snprintf(f->path, sizeof(f->path), "/proc/self/fd/%d", f->fd);
	return 0;
}

int
fz_file_set(struct fz_file *f, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t done = 0;
	ssize_t n;

	if (ftruncate(f->fd, 0) != 0)
		return -errno;
	while (done < len) {
		n = pwrite(f->fd, p + done, len - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

void
fz_file_close(struct fz_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

/* --- bytes --------------------------------------------------------------- */

size_t
fz_utf8_valid(const void *s, size_t len)
{
	const uint8_t *b = s;
	size_t i = 0, n, k;
	uint32_t cp, min;

	while (i < len) {
		if (b[i] < 0x80) {
			i++;
			continue;
		}
		if ((b[i] & 0xe0) == 0xc0) {
			n = 2; cp = b[i] & 0x1f; min = 0x80;
		} else if ((b[i] & 0xf0) == 0xe0) {
			n = 3; cp = b[i] & 0x0f; min = 0x800;
		} else if ((b[i] & 0xf8) == 0xf0) {
			n = 4; cp = b[i] & 0x07; min = 0x10000;
		} else
			return i;
		if (len - i < n)
			return i;
		for (k = 1; k < n; k++) {
			if ((b[i + k] & 0xc0) != 0x80)
				return i;
			cp = cp << 6 | (b[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += n;
	}
	return len;
}

uint32_t
fz_le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	    (uint32_t)b[3] << 24;
}

/* --- generated vocabularies ----------------------------------------------- */

#define SPM_SPACE	"\xe2\x96\x81"
#define FZ_SPM_N	(3 + 256 + 16)

int
fz_vocab_spm(struct gguf_writer *w)
{
	static const char *const tail[] = {
		SPM_SPACE, "a", "b", "c", SPM_SPACE "a", "ab", "bc", "abc",
		"aa", "<x>", "<c>", SPM_SPACE "b", SPM_SPACE SPM_SPACE,
		"\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", SPM_SPACE "<"
	};
	static const float tail_score[] = {
		-1, -1, -1, -1, -2, -3, -1.5f, -0.5f, -1, 0, 0, -2.5f, -4,
		-2, -1, -3
	};
	static const int32_t tail_type[] = {
		1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 3, 1, 1, 1, 1, 1
	};
	char bytes[256][8];
	const char *toks[FZ_SPM_N];
	float scores[FZ_SPM_N];
	int32_t types[FZ_SPM_N];
	int i, r;

	toks[0] = "<unk>";
	toks[1] = "<s>";
	toks[2] = "</s>";
	types[0] = TOK_ATTR_UNKNOWN;
	types[1] = types[2] = TOK_ATTR_CONTROL;
	scores[0] = scores[1] = scores[2] = 0;
	for (i = 0; i < 256; i++) {
		snprintf(bytes[i], sizeof(bytes[i]), "<0x%02X>", i);
		toks[3 + i] = bytes[i];
		types[3 + i] = TOK_ATTR_BYTE;
		scores[3 + i] = 0;
	}
	for (i = 0; i < 16; i++) {
		toks[259 + i] = tail[i];
		scores[259 + i] = tail_score[i];
		types[259 + i] = tail_type[i];
	}
	if ((r = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama")) < 0 ||
	    (r = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks,
	    NULL, FZ_SPM_N)) < 0 ||
	    (r = gguf_writer_set_arr(w, "tokenizer.ggml.scores",
	    GGUF_VTYPE_FLOAT32, scores, FZ_SPM_N)) < 0 ||
	    (r = gguf_writer_set_arr(w, "tokenizer.ggml.token_type",
	    GGUF_VTYPE_INT32, types, FZ_SPM_N)) < 0 ||
	    (r = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) < 0 ||
	    (r = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) < 0 ||
	    (r = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id",
	    0)) < 0 ||
	    (r = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1)) < 0)
		return r;
	return 0;
}

/* GPT-2's printable alphabet: byte b is code point cp[b]. */
static void
fz_byte_alphabet(uint32_t cp[256])
{
	unsigned b, n = 0;

	for (b = 0; b < 256; b++) {
		if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
		    (b >= 174 && b <= 255))
			cp[b] = b;
		else
			cp[b] = 256 + n++;
	}
}

static size_t
fz_put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	o[0] = (char)(0xc0 | cp >> 6);
	o[1] = (char)(0x80 | (cp & 0x3f));
	return 2;	/* the alphabet stays below U+0800 */
}

int
fz_vocab_bpe(struct gguf_writer *w, const char *pre)
{
	/* merged tokens and the merges that make them, in rank order */
	static const char *const merged[] = {
		"\xc4\xa0t", "he", "\xc4\xa0the", "in", "er", "\xc4\xa0\x61",
		"ab", "abc", "on", "\xc4\xa0\xc4\xa0", "ing", "\xc4\x8a\xc4\x8a",
	};
	static const char *const merges[] = {
		"\xc4\xa0 t", "h e", "\xc4\xa0t he", "i n", "e r", "\xc4\xa0 a",
		"a b", "ab c", "o n", "\xc4\xa0 \xc4\xa0", "in g",
		"\xc4\x8a \xc4\x8a",
	};
	static const char *const special[] = {
		"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<u>"
	};
	enum { N_MERGED = sizeof(merged) / sizeof(merged[0]) };
	enum { N = 256 + N_MERGED + 4 };
	char sym[256][4];
	const char *toks[N];
	int32_t types[N];
	uint32_t cp[256];
	size_t k;
	int i, r;

	fz_byte_alphabet(cp);
	for (i = 0; i < 256; i++) {
		k = fz_put_utf8(sym[i], cp[i]);
		sym[i][k] = '\0';
		toks[i] = sym[i];
		types[i] = TOK_ATTR_NORMAL;
	}
	for (i = 0; i < N_MERGED; i++) {
		toks[256 + i] = merged[i];
		types[256 + i] = TOK_ATTR_NORMAL;
	}
	for (i = 0; i < 4; i++) {
		toks[256 + N_MERGED + i] = special[i];
		types[256 + N_MERGED + i] = i < 3 ? TOK_ATTR_CONTROL :
		    TOK_ATTR_USER_DEFINED;
	}
	if ((r = gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2")) < 0 ||
	    (pre != NULL &&
	    (r = gguf_writer_set_str(w, "tokenizer.ggml.pre", pre)) < 0) ||
	    (r = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks,
	    NULL, N)) < 0 ||
	    (r = gguf_writer_set_arr(w, "tokenizer.ggml.token_type",
	    GGUF_VTYPE_INT32, types, N)) < 0 ||
	    (r = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges,
	    NULL, N_MERGED)) < 0 ||
	    (r = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id",
	    256 + N_MERGED)) < 0 ||
	    (r = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id",
	    256 + N_MERGED + 2)) < 0 ||
	    (r = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 0)) < 0)
		return r;
	return 0;
}
