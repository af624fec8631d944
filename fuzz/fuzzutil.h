/*
 * fuzzutil.h - helpers shared by the fuzz targets, the corpus driver and
 * the seed writer: invariant checks that abort (a crash to libFuzzer, a
 * failed test to make check), files in memory, UTF-8 checks and the
 * small generated vocabularies the tokenizer target and the seeds use.
 */
#ifndef HEARTH_FUZZUTIL_H
#define HEARTH_FUZZUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "gguf_write.h"

/* Every target defines these two (libFuzzer's entry points). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test: print where and abort. */
#define FZ_ASSERT(cond, ...) do {					\
	if (!(cond))							\
		fz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);	\
} while (0)

void fz_fail(const char *file, int line, const char *cond,
	    const char *fmt, ...)
	    __attribute__((format(printf, 4, 5), noreturn));

/* With $FUZZ_VERBOSE set (the corpus driver, by hand), say what happened
 * to an input on stderr; silent otherwise (fuzzing). */
void fz_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * A file in memory (memfd) that the code under test opens by path
 * ("/proc/self/fd/N"). fz_file_set replaces its whole content.
 */
struct fz_file {
	int	 fd;		/* memfd, -1 when not open */
	char	 path[64];	/* /proc/self/fd/<fd> */
};

int  fz_file_open(struct fz_file *f, const char *name);	/* 0 or -errno */
int  fz_file_set(struct fz_file *f, const void *data, size_t len);
void fz_file_close(struct fz_file *f);

/* Length of the longest valid UTF-8 prefix of s (strict: no surrogates,
 * no overlong forms, at most U+10FFFF). */
size_t fz_utf8_valid(const void *s, size_t len);

/* A little-endian value from b (any alignment). */
uint32_t fz_le32(const uint8_t *b);

/*
 * The generated vocabularies (they need no test data):
 * SPM: <unk> <s> </s>, the 256 byte tokens <0xXX>, then "▁" "a" "b" "c"
 *      "▁a" "ab" "bc" "abc" "aa" "<x>" (user-defined) "<c>" (control)
 *      "▁b" "▁▁" "é" "日本" "▁<"; BOS 1, EOS 2, add_bos_token;
 * BPE: byte-level as GPT-2: the 256 byte symbols, then "Ġt" "he" "Ġthe"
 *      "in" ... with their merges, <|endoftext|> <|im_start|> <|im_end|>
 *      (control), "<u>" (user-defined); pre names tokenizer.ggml.pre
 *      (NULL: none).
 * Only tokenizer.* keys are written.
 */
int fz_vocab_spm(struct gguf_writer *w);
int fz_vocab_bpe(struct gguf_writer *w, const char *pre);

#endif /* HEARTH_FUZZUTIL_H */
