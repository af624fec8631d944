/*
 * tokenizer.c - text <-> token ids with llama.cpp's exact results.
 *
 * Encoding first cuts the raw text on special tokens the way llama.cpp's
 * tokenizer_st_partition does: the special tokens (types CONTROL,
 * USER_DEFINED and UNKNOWN) are tried longest first, each splitting every
 * text run left so far at all its occurrences; control and unknown-type
 * tokens take part only with parse_special. The text runs left are then
 * tokenized by the model:
 *
 * SPM ("llama"): a space is put in front of a run that starts the text or
 * follows a special token (add_space_prefix), spaces become U+2581, the run
 * is cut into UTF-8 characters and the adjacent pair whose concatenation
 * is the highest-scoring vocabulary token is merged, again and again (a
 * priority queue, ties to the leftmost pair); pieces that are not tokens
 * fall back to their bytes' <0xXX> tokens.
 *
 * BPE ("gpt2"): the run is cut into words by the pre-tokenizer's regexes
 * (PCRE2, applied one after another; each splits every piece the previous
 * ones left into its matches and the text between them), each word's bytes
 * are mapped to GPT-2's printable byte alphabet and the adjacent pair with
 * the lowest merge rank is merged until none applies.
 *
 * llama.cpp runs some pre-tokenizer regexes through its own code and the
 * others through std::regex on a text where every non-ASCII character is
 * collapsed to one byte per Unicode category (whitespace to \v). The PCRE2
 * patterns below are written so that they split exactly as those do: \s is
 * the White_Space set llama.cpp uses (its collapse maps those characters to
 * \v), and class ranges that llama.cpp cannot match because the collapse
 * has turned their whitespace members into \v leave those members out.
 *
 * Decisions where llama.cpp warns, aborts or leaves things open:
 * - Refused with -EINVAL: array lengths that differ from the token count,
 *   duplicate token texts (as current llama.cpp), token texts or merges
 *   that are not valid UTF-8, merges without a separating space, NaN
 *   scores, token types outside 0..6, byte-type tokens not spelt <0xXX>,
 *   special token ids out of range, add_bos/add_eos without a token id.
 * - Empty token texts are kept (their id decodes to nothing) but can
 *   never be produced by encoding (llama.cpp renames them "[EMPTY_n]").
 * - Unknown tokenizer models (bert, t5, rwkv, ...) give -ENOTSUP; an
 *   unknown or missing tokenizer.ggml.pre gives llama.cpp's default
 *   pre-tokenizer.
 * - BPE vocabularies have no default BOS/EOS (llama.cpp's legacy default
 *   id 11 is not used); SPM ones default to 1/2 and unk 0 as llama.cpp.
 * - BPE encoding refuses text that is not valid UTF-8 (llama.cpp would
 *   replace bad bytes with U+FFFD); SPM takes any bytes.
 * - An SPM byte with neither a <0xXX> nor a one-byte token becomes the
 *   unknown token (llama.cpp throws); without one, encoding fails -EINVAL.
 * - Decoding does not apply llama.cpp's clean_up_tokenization_spaces, so
 *   decode(encode(text)) gives the text back byte for byte.
 * - Special tokens of equal length are tried in id order (llama.cpp's
 *   std::sort leaves their order open).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer.h"

#define TOK_MAX_TEXT	((size_t)1 << 28)	/* bytes one tok_encode takes */
#define TOK_MAX_RE	6		/* regexes of one pre-tokenizer */
#define TOK_N_BYTECP	324		/* code points of the byte alphabet */

/* Per-token flags beside the type. */
enum {
	TOKF_EOG	= 1 << 0,	/* ends generation */
	TOKF_LSTRIP	= 1 << 1,	/* eats whitespace on its left */
	TOKF_RSTRIP	= 1 << 2,	/* eats whitespace on its right */
	TOKF_HIDDEN	= 1 << 3,	/* piece only with special (control) */
};

enum tok_pre {
	TOK_PRE_DEFAULT,
	TOK_PRE_LLAMA3,
	TOK_PRE_QWEN2,
	TOK_PRE_GPT2,
	TOK_PRE_DEEPSEEK_LLM,
};

/* Open-addressing hash table of entry indices. */
struct tok_map {
	uint32_t	*slot;	/* [mask + 1]: entry index + 1, 0 when free */
	size_t		 mask;	/* table size - 1 (a power of two) */
};

struct tok {
	enum tok_kind	 kind;
	enum tok_pre	 pre;		/* BPE pre-tokenizer */
	int32_t		 n_vocab;
	char		*text;		/* every token text, each NUL-ended */
	size_t		*text_off;	/* [n_vocab] offset in text */
	uint32_t	*text_len;	/* [n_vocab] bytes */
	char		*piece;		/* every decoded piece, back to back */
	size_t		*piece_off;	/* [n_vocab] offset in piece */
	uint32_t	*piece_len;	/* [n_vocab] bytes */
	float		*score;		/* [n_vocab] SPM merge scores */
	uint8_t		*type;		/* [n_vocab] enum tok_attr, fixed up */
	uint8_t		*flags;		/* [n_vocab] TOKF_* */
	int32_t		*special_rank;	/* [n_vocab] index in special, or -1 */
	struct tok_map	 map;		/* token text -> id */

	char		*merge;		/* every merge text, back to back */
	size_t		*merge_off;	/* [n_merges] offset in merge */
	uint32_t	*merge_len;	/* [n_merges] bytes */
	uint32_t	*merge_split;	/* [n_merges] offset of the separator */
	uint32_t	 n_merges;
	struct tok_map	 merge_map;	/* (left, right) -> rank */

	int32_t		*special;	/* [n_special] ids, longest first */
	size_t		 n_special;
	uint32_t	*special_lens;	/* [n_special_lens] distinct lengths */
	size_t		 n_special_lens;
	uint8_t		 special_first[32];	/* bitmap of first bytes */

	int32_t		 bos, eos, unk, eot, eom;	/* -1 when none */
	bool		 add_bos, add_eos;
	bool		 add_space_prefix;	/* SPM: leading space */
	bool		 ignore_merges;	/* BPE: whole-word tokens first */
	int32_t		 byte_tok[256];		/* SPM byte fallback, -1 none */

	pcre2_code	*re[TOK_MAX_RE];	/* [n_re] pre-tokenizer */
	size_t		 n_re;
	char		 byte_enc[256][2];	/* byte -> its symbol (UTF-8) */
	uint8_t		 byte_enc_len[256];	/* 1 or 2 */
	int16_t		 byte_dec[TOK_N_BYTECP];	/* symbol -> byte, -1 */
};

/* Growable arrays used while encoding. */
struct tok_ids {
	int32_t	*v;	/* [n] ids */
	size_t	 n, cap;
};

struct tok_frag {
	int32_t	 id;	/* special token, or -1 for raw text */
	size_t	 off;	/* raw text: offset in the input */
	size_t	 len;	/* raw text: bytes */
};

struct tok_frags {
	struct tok_frag	*v;	/* [n] */
	size_t		 n, cap;
};

struct tok_range {
	size_t	off;	/* in the text being pre-tokenized */
	size_t	len;
};

struct tok_ranges {
	struct tok_range	*v;	/* [n] */
	size_t			 n, cap;
};

/* A symbol of the merge loop: a run of bytes of the word or text. */
struct tok_sym {
	int32_t		prev, next;	/* neighbours, -1 at the ends */
	uint32_t	off;		/* first byte */
	uint32_t	n;		/* bytes; 0 once merged into the left */
};

/*
 * A candidate merge. prio is key << 32 | left, so the smallest prio is
 * the best merge and, among equals, the leftmost.
 */
struct tok_big {
	uint64_t	prio;	/* key: SPM score order, BPE rank; then left */
	int32_t		right;
	uint32_t	size;	/* bytes of left + right when queued */
};

struct tok_heap {
	struct tok_big	*v;	/* [n] 4-ary min-heap on prio */
	size_t		 n, cap;
};

/* --- small helpers -------------------------------------------------------- */

static int
tok_grow(void **v, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *nv;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 16;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2 / elem)
			return -ENOMEM;
		ncap *= 2;
	}
	if ((nv = realloc(*v, ncap * elem)) == NULL)
		return -ENOMEM;
	*v = nv;
	*cap = ncap;
	return 0;
}

static int
tok_ids_push(struct tok_ids *a, int32_t id)
{
	if (tok_grow((void **)&a->v, &a->cap, a->n + 1, sizeof(*a->v)) < 0)
		return -ENOMEM;
	a->v[a->n++] = id;
	return 0;
}

static int
tok_frags_push(struct tok_frags *a, int32_t id, size_t off, size_t len)
{
	if (tok_grow((void **)&a->v, &a->cap, a->n + 1, sizeof(*a->v)) < 0)
		return -ENOMEM;
	a->v[a->n].id = id;
	a->v[a->n].off = off;
	a->v[a->n].len = len;
	a->n++;
	return 0;
}

static int
tok_ranges_push(struct tok_ranges *a, size_t off, size_t len)
{
	if (tok_grow((void **)&a->v, &a->cap, a->n + 1, sizeof(*a->v)) < 0)
		return -ENOMEM;
	a->v[a->n].off = off;
	a->v[a->n].len = len;
	a->n++;
	return 0;
}

/* A key that sorts the higher SPM score first (scores are never NaN). */
static uint32_t
tok_score_key(float score)
{
	uint32_t u;

	if (score == 0.0f)
		score = 0.0f;	/* -0 ties with +0, as the floats compare */
	memcpy(&u, &score, sizeof(u));
	u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);	/* ascending */
	return ~u;
}

static int
tok_heap_push(struct tok_heap *h, uint32_t key, int32_t left, int32_t right,
    uint32_t size)
{
	struct tok_big b;
	size_t i, p;

	if (tok_grow((void **)&h->v, &h->cap, h->n + 1, sizeof(*h->v)) < 0)
		return -ENOMEM;
	b.prio = (uint64_t)key << 32 | (uint32_t)left;
	b.right = right;
	b.size = size;
	for (i = h->n++; i > 0; i = p) {
		p = (i - 1) / 4;
		if (h->v[p].prio <= b.prio)
			break;
		h->v[i] = h->v[p];
	}
	h->v[i] = b;
	return 0;
}

static struct tok_big
tok_heap_pop(struct tok_heap *h)
{
	struct tok_big top = h->v[0], last = h->v[--h->n];
	size_t i = 0, c, m, k;

	for (;;) {
		c = 4 * i + 1;
		if (c >= h->n)
			break;
		m = c;
		for (k = c + 1; k < c + 4 && k < h->n; k++)
			if (h->v[k].prio < h->v[m].prio)
				m = k;
		if (h->v[m].prio >= last.prio)
			break;
		h->v[i] = h->v[m];
		i = m;
	}
	if (h->n > 0)
		h->v[i] = last;
	return top;
}

static int32_t
tok_big_left(const struct tok_big *b)
{
	return (int32_t)(uint32_t)b->prio;
}

/* FNV-1a, streamed so a merge pair hashes as its "left right" text. */
#define TOK_HASH_INIT	0xcbf29ce484222325ULL

static uint64_t
tok_hash(uint64_t h, const void *p, size_t n)
{
	const uint8_t *s = p;

	while (n-- > 0) {
		h ^= *s++;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static int
tok_map_init(struct tok_map *m, size_t n)
{
	size_t size = 16;

	while (size < 2 * n)
		size *= 2;
	if ((m->slot = calloc(size, sizeof(*m->slot))) == NULL)
		return -ENOMEM;
	m->mask = size - 1;
	return 0;
}

/* Length of a strictly valid UTF-8 sequence at s, 0 if there is none. */
static size_t
tok_utf8_len(const uint8_t *s, size_t n, uint32_t *cp)
{
	uint8_t b = s[0], lo = 0x80, hi = 0xbf;
	size_t need, i;
	uint32_t c;

	if (b < 0x80) {
		*cp = b;
		return 1;
	}
	if (b >= 0xc2 && b <= 0xdf) {
		need = 1;
		c = b & 0x1f;
	} else if (b >= 0xe0 && b <= 0xef) {
		need = 2;
		c = b & 0x0f;
		if (b == 0xe0)
			lo = 0xa0;
		else if (b == 0xed)
			hi = 0x9f;
	} else if (b >= 0xf0 && b <= 0xf4) {
		need = 3;
		c = b & 0x07;
		if (b == 0xf0)
			lo = 0x90;
		else if (b == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < need + 1)
		return 0;
	for (i = 1; i <= need; i++) {
		if (s[i] < lo || s[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
		c = (c << 6) | (s[i] & 0x3f);
	}
	*cp = c;
	return need + 1;
}

static bool
tok_utf8_valid(const char *s, size_t n)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0, k;
	uint32_t cp;

	while (i < n) {
		if ((k = tok_utf8_len(p + i, n - i, &cp)) == 0)
			return false;
		i += k;
	}
	return true;
}

/* llama.cpp's length of a UTF-8 character from its first byte alone. */
static size_t
tok_lead_len(uint8_t b)
{
	static const uint8_t len[16] = {
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4
	};

	return len[b >> 4];
}

static bool
tok_isspace(uint8_t c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static uint32_t
tok_le32(const void *base, size_t i)
{
	const uint8_t *p = (const uint8_t *)base + 4 * i;

	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static const char *
tok_str(const struct tok *t, int32_t id)
{
	return t->text + t->text_off[id];
}

static int32_t
tok_lookup(const struct tok *t, const char *s, size_t n)
{
	uint64_t h = tok_hash(TOK_HASH_INIT, s, n);
	size_t i = (size_t)h & t->map.mask;
	uint32_t v;
	int32_t id;

	while ((v = t->map.slot[i]) != 0) {
		id = (int32_t)(v - 1);
		if (t->text_len[id] == n && memcmp(tok_str(t, id), s, n) == 0)
			return id;
		i = (i + 1) & t->map.mask;
	}
	return -1;
}

/* Rank of merging left and right, or -1. */
static int64_t
tok_merge_rank(const struct tok *t, const char *l, size_t ln, const char *r,
    size_t rn)
{
	uint64_t h;
	size_t i;
	uint32_t v, m;
	const char *s;

	h = tok_hash(TOK_HASH_INIT, l, ln);
	h = tok_hash(h, " ", 1);
	h = tok_hash(h, r, rn);
	i = (size_t)h & t->merge_map.mask;
	while ((v = t->merge_map.slot[i]) != 0) {
		m = v - 1;
		s = t->merge + t->merge_off[m];
		if (t->merge_split[m] == ln && t->merge_len[m] == ln + 1 + rn &&
		    memcmp(s, l, ln) == 0 && memcmp(s + ln + 1, r, rn) == 0)
			return m;
		i = (i + 1) & t->merge_map.mask;
	}
	return -1;
}

/* --- pre-tokenizer regexes ------------------------------------------------ */

/* The White_Space characters llama.cpp's \s stands for. */
#define RE_WS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}" \
	"\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

#define RE_CONTRACTIONS \
	"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

#define RE_LLAMA3_TAIL \
	"| ?[^" RE_WS "\\p{L}\\p{N}]+[\\r\\n]*|[" RE_WS "]*[\\r\\n]+" \
	"|[" RE_WS "]+(?![^" RE_WS "])|[" RE_WS "]+"

#define RE_GPT2 \
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" RE_WS \
	"\\p{L}\\p{N}]+|[" RE_WS "]+(?![^" RE_WS "])"

/* deepseek-llm's letters: the cased letters of its tokenizer.json. */
#define RE_DS_LETTERS \
	"A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}" \
	"\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}" \
	"\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}" \
	"\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}" \
	"\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}" \
	"\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}" \
	"\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}" \
	"\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}" \
	"\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}" \
	"\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}" \
	"\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}" \
	"\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}" \
	"\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}" \
	"\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}" \
	"\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}" \
	"\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}" \
	"\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}" \
	"\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}" \
	"\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}" \
	"\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}" \
	"\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}" \
	"\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}" \
	"\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"

static const char *const tok_re_llama3[] = {
	RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
	    RE_LLAMA3_TAIL,
	NULL
};

static const char *const tok_re_qwen2[] = {
	RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
	    RE_LLAMA3_TAIL,
	NULL
};

static const char *const tok_re_gpt2[] = {
	RE_GPT2,
	NULL
};

static const char *const tok_re_default[] = {
	"[\\p{P}\\$\\+<=>\\^~\\|]+",
	RE_GPT2,
	"\\p{N}+",
	"[0-9][0-9][0-9]",
	NULL
};

/*
 * deepseek-llm: U+3000 is left out of the punctuation class and the
 * whitespace characters out of U+0800..U+4E00, because llama.cpp has
 * turned them into \v before it matches. "\s+$" only ever matches from
 * the start of the trailing whitespace run; saying so keeps it linear.
 */
static const char *const tok_re_deepseek_llm[] = {
	"[\\r\\n]",
	"[" RE_WS "]?[" RE_DS_LETTERS "]+",
	"[" RE_WS "]?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}"
	    "\\x{2018}-\\x{201F}\\x{3001}-\\x{3002}]+",
	"(?<![" RE_WS "])[" RE_WS "]++\\z",
	"[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{167F}\\x{1681}-\\x{1FFF}"
	    "\\x{200B}-\\x{2027}\\x{202A}-\\x{202E}\\x{2030}-\\x{205E}"
	    "\\x{2060}-\\x{2FFF}\\x{3001}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
	"\\p{N}+",
	NULL
};

/* tokenizer.ggml.pre names and what llama.cpp makes of them. */
static const struct {
	const char	*name;
	enum tok_pre	 pre;
	bool		 add_bos;	/* default for add_bos_token */
	bool		 ignore_merges;
} tok_pre_names[] = {
	{ "default",		TOK_PRE_DEFAULT,	false, false },
	{ "llama3",		TOK_PRE_LLAMA3,		true,  true },
	{ "llama-v3",		TOK_PRE_LLAMA3,		true,  true },
	{ "llama-bpe",		TOK_PRE_LLAMA3,		true,  true },
	{ "falcon3",		TOK_PRE_LLAMA3,		true,  true },
	{ "falcon-h1",		TOK_PRE_LLAMA3,		true,  true },
	{ "pixtral",		TOK_PRE_LLAMA3,		true,  true },
	{ "midm-2.0",		TOK_PRE_LLAMA3,		true,  true },
	{ "lfm2",		TOK_PRE_LLAMA3,		true,  true },
	{ "dbrx",		TOK_PRE_LLAMA3,		false, false },
	{ "smaug-bpe",		TOK_PRE_LLAMA3,		false, false },
	{ "qwen2",		TOK_PRE_QWEN2,		false, false },
	{ "deepseek-r1-qwen",	TOK_PRE_QWEN2,		false, false },
	{ "stablelm2",		TOK_PRE_QWEN2,		false, false },
	{ "megrez",		TOK_PRE_QWEN2,		false, false },
	{ "hunyuan",		TOK_PRE_QWEN2,		false, false },
	{ "grok-2",		TOK_PRE_QWEN2,		false, false },
	{ "gpt-2",		TOK_PRE_GPT2,		false, false },
	{ "phi-2",		TOK_PRE_GPT2,		false, false },
	{ "mpt",		TOK_PRE_GPT2,		false, false },
	{ "olmo",		TOK_PRE_GPT2,		false, false },
	{ "jais",		TOK_PRE_GPT2,		false, false },
	{ "gigachat",		TOK_PRE_GPT2,		false, false },
	{ "exaone4",		TOK_PRE_GPT2,		false, false },
	{ "deepseek-llm",	TOK_PRE_DEEPSEEK_LLM,	false, false },
};

static const char *const *
tok_pre_regexes(enum tok_pre pre)
{
	switch (pre) {
	case TOK_PRE_LLAMA3:
		return tok_re_llama3;
	case TOK_PRE_QWEN2:
		return tok_re_qwen2;
	case TOK_PRE_GPT2:
		return tok_re_gpt2;
	case TOK_PRE_DEEPSEEK_LLM:
		return tok_re_deepseek_llm;
	case TOK_PRE_DEFAULT:
	default:
		return tok_re_default;
	}
}

static int
tok_compile(struct tok *t, struct eng_err *err)
{
	const char *const *src = tok_pre_regexes(t->pre);
	PCRE2_UCHAR msg[128];
	PCRE2_SIZE eoff;
	int ecode;

	for (t->n_re = 0; src[t->n_re] != NULL; t->n_re++) {
		t->re[t->n_re] = pcre2_compile((PCRE2_SPTR)src[t->n_re],
		    PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP |
		    PCRE2_NEVER_BACKSLASH_C, &ecode, &eoff, NULL);
		if (t->re[t->n_re] == NULL) {
			pcre2_get_error_message(ecode, msg, sizeof(msg));
			return err_set(err, -EINVAL, "pre-tokenizer regex %zu: "
			    "%s at %zu", t->n_re, (const char *)msg,
			    (size_t)eoff);
		}
		/* Without JIT, pcre2_match interprets; both give one result. */
		(void)pcre2_jit_compile(t->re[t->n_re], PCRE2_JIT_COMPLETE);
	}
	return 0;
}

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves. */
static void
tok_init_bytes(struct tok *t)
{
	uint32_t cp, n = 0;
	int b;

	memset(t->byte_dec, 0xff, sizeof(t->byte_dec));
	for (b = 0; b < 256; b++) {
		if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) ||
		    (b >= 0xae && b <= 0xff))
			cp = (uint32_t)b;
		else
			cp = 256 + n++;
		if (cp < 0x80) {
			t->byte_enc[b][0] = (char)cp;
			t->byte_enc_len[b] = 1;
		} else {
			t->byte_enc[b][0] = (char)(0xc0 | (cp >> 6));
			t->byte_enc[b][1] = (char)(0x80 | (cp & 0x3f));
			t->byte_enc_len[b] = 2;
		}
		t->byte_dec[cp] = (int16_t)b;
	}
}

/* --- loading -------------------------------------------------------------- */

static const char *const tok_eog_texts[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
	"<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
	"<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
	"<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
	"<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
	"[e~[", NULL
};

/* Fill-in-the-middle tokens llama.cpp finds by their text. */
static const struct {
	const char	*key;		/* metadata id, when set */
	const char	*alt_key;	/* deprecated spelling */
	bool		 eog;
	const char	*texts[9];
} tok_fim[] = {
	{ "tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id",
	    false, { "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
	    "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>",
	    "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL } },
	{ "tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id",
	    false, { "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
	    "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>",
	    "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL } },
	{ "tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id",
	    false, { "<|fim_middle|>", "<fim-middle>", "<fim_middle>",
	    "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>",
	    "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL } },
	{ "tokenizer.ggml.fim_pad_token_id", NULL, true,
	    { "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
	    NULL } },
	{ "tokenizer.ggml.fim_rep_token_id", NULL, true,
	    { "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
	    "<reponame>", NULL } },
	{ "tokenizer.ggml.fim_sep_token_id", NULL, true,
	    { "<|file_sep|>", NULL } },
};

static int32_t
tok_find_str(const struct tok *t, const char *s)
{
	return tok_lookup(t, s, strlen(s));
}

static bool
tok_is(const struct tok *t, int32_t id, const char *s)
{
	size_t n = strlen(s);

	return t->text_len[id] == n && memcmp(tok_str(t, id), s, n) == 0;
}

static void
tok_force_control(struct tok *t, int32_t id)
{
	if (t->type[id] != TOK_ATTR_CONTROL)
		t->type[id] = TOK_ATTR_CONTROL;
}

/*
 * An optional token id; -ENOENT leaves *id alone. A bad value is an
 * error, unless lenient: ids hearth does not use (padding, fill-in-the-
 * middle) are then ignored, as llama.cpp ignores them.
 */
static int
tok_get_id(const struct gguf *g, const char *key, int32_t n_vocab,
    bool lenient, int32_t *id, struct eng_err *err)
{
	uint32_t v;
	int r;

	if ((r = gguf_get_u32(g, key, &v)) == -ENOENT)
		return -ENOENT;
	if (r < 0 || v >= (uint32_t)n_vocab) {
		if (lenient)
			return -ENOENT;
		if (r < 0)
			return err_set(err, -EINVAL, "%s: not a token id", key);
		return err_set(err, -EINVAL, "%s: id %u out of range "
		    "(vocabulary of %d)", key, v, n_vocab);
	}
	*id = (int32_t)v;
	return 0;
}

static int
tok_get_flag(const struct gguf *g, const char *key, bool *out,
    struct eng_err *err)
{
	int r;

	if ((r = gguf_get_bool(g, key, out)) == -ENOENT)
		return 0;
	if (r < 0)
		return err_set(err, -EINVAL, "%s: not a bool", key);
	return 0;
}

/* Copy and check the token texts, build the text -> id table. */
static int
tok_load_tokens(struct tok *t, const struct gguf_kv *kv, struct eng_err *err)
{
	const struct gguf_str *s = kv->v.arr.data;
	size_t total = 0, off = 0, i, k;
	uint64_t h;
	uint32_t v;
	int32_t id;

	for (i = 0; i < (size_t)t->n_vocab; i++) {
		if (s[i].len > UINT32_MAX - 1 || s[i].len >= SIZE_MAX - total)
			return err_set(err, -EINVAL, "token %zu too long", i);
		if (!tok_utf8_valid(s[i].s, (size_t)s[i].len))
			return err_set(err, -EINVAL, "token %zu is not valid "
			    "UTF-8", i);
		total += (size_t)s[i].len + 1;
	}
	t->text = malloc(total);
	t->text_off = calloc((size_t)t->n_vocab, sizeof(*t->text_off));
	t->text_len = calloc((size_t)t->n_vocab, sizeof(*t->text_len));
	if (t->text == NULL || t->text_off == NULL || t->text_len == NULL ||
	    tok_map_init(&t->map, (size_t)t->n_vocab) < 0)
		return err_set(err, -ENOMEM, "out of memory");
	for (i = 0; i < (size_t)t->n_vocab; i++) {
		memcpy(t->text + off, s[i].s, (size_t)s[i].len);
		t->text[off + s[i].len] = '\0';
		t->text_off[i] = off;
		t->text_len[i] = (uint32_t)s[i].len;
		off += (size_t)s[i].len + 1;
		if (s[i].len == 0)
			continue;	/* kept, but never matched */
		h = tok_hash(TOK_HASH_INIT, s[i].s, (size_t)s[i].len);
		k = (size_t)h & t->map.mask;
		while ((v = t->map.slot[k]) != 0) {
			id = (int32_t)(v - 1);
			if (t->text_len[id] == s[i].len && memcmp(tok_str(t,
			    id), s[i].s, (size_t)s[i].len) == 0)
				return err_set(err, -EINVAL, "duplicate token: "
				    "ids %d and %zu have the same text", id, i);
			k = (k + 1) & t->map.mask;
		}
		t->map.slot[k] = (uint32_t)i + 1;
	}
	return 0;
}

static int
tok_load_merges(struct tok *t, const struct gguf *g, struct eng_err *err)
{
	const struct gguf_kv *kv;
	const struct gguf_str *s;
	const char *sp;
	size_t total = 0, off = 0, i, k, m;
	uint64_t h;
	uint32_t v;
	int r;

	if ((r = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_VTYPE_STRING,
	    &kv)) < 0)
		return err_set(err, -EINVAL, "tokenizer.ggml.merges: %s",
		    r == -ENOENT ? "missing" : "not an array of strings");
	if (kv->v.arr.n > UINT32_MAX - 1)
		return err_set(err, -EINVAL, "too many merges");
	s = kv->v.arr.data;
	t->n_merges = (uint32_t)kv->v.arr.n;
	for (i = 0; i < t->n_merges; i++) {
		if (s[i].len > UINT32_MAX - 1 || s[i].len >= SIZE_MAX - total)
			return err_set(err, -EINVAL, "merge %zu too long", i);
		if (!tok_utf8_valid(s[i].s, (size_t)s[i].len))
			return err_set(err, -EINVAL, "merge %zu is not valid "
			    "UTF-8", i);
		/* llama.cpp splits at the first space after the first byte */
		if (s[i].len < 2 || (sp = memchr(s[i].s + 1, ' ',
		    (size_t)s[i].len - 1)) == NULL)
			return err_set(err, -EINVAL, "merge %zu has no "
			    "separating space", i);
		total += (size_t)s[i].len;
	}
	t->merge = malloc(total ? total : 1);
	t->merge_off = calloc(t->n_merges ? t->n_merges : 1,
	    sizeof(*t->merge_off));
	t->merge_len = calloc(t->n_merges ? t->n_merges : 1,
	    sizeof(*t->merge_len));
	t->merge_split = calloc(t->n_merges ? t->n_merges : 1,
	    sizeof(*t->merge_split));
	if (t->merge == NULL || t->merge_off == NULL || t->merge_len == NULL ||
	    t->merge_split == NULL ||
	    tok_map_init(&t->merge_map, t->n_merges) < 0)
		return err_set(err, -ENOMEM, "out of memory");
	for (i = 0; i < t->n_merges; i++) {
		sp = memchr(s[i].s + 1, ' ', (size_t)s[i].len - 1);
		memcpy(t->merge + off, s[i].s, (size_t)s[i].len);
		t->merge_off[i] = off;
		t->merge_len[i] = (uint32_t)s[i].len;
		t->merge_split[i] = (uint32_t)(sp - s[i].s);
		off += (size_t)s[i].len;
		h = tok_hash(TOK_HASH_INIT, s[i].s, (size_t)s[i].len);
		k = (size_t)h & t->merge_map.mask;
		while ((v = t->merge_map.slot[k]) != 0) {
			m = v - 1;
			if (t->merge_len[m] == s[i].len &&
			    memcmp(t->merge + t->merge_off[m], s[i].s,
			    (size_t)s[i].len) == 0)
				break;	/* a repeat keeps its first rank */
			k = (k + 1) & t->merge_map.mask;
		}
		if (v == 0)
			t->merge_map.slot[k] = (uint32_t)i + 1;
	}
	return 0;
}

static bool
tok_is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') ||
	    (c >= 'a' && c <= 'f');
}

static int
tok_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return c - 'a' + 10;
}

static int
tok_load_types(struct tok *t, const struct gguf *g, struct eng_err *err)
{
	const struct gguf_kv *kv;
	const char *s;
	uint32_t v;
	int32_t i;
	int r;

	if ((t->type = malloc((size_t)t->n_vocab)) == NULL ||
	    (t->flags = calloc((size_t)t->n_vocab, 1)) == NULL ||
	    (t->score = calloc((size_t)t->n_vocab, sizeof(float))) == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	memset(t->type, TOK_ATTR_NORMAL, (size_t)t->n_vocab);
	r = gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_VTYPE_INT32, &kv);
	if (r == -EINVAL)
		return err_set(err, -EINVAL, "tokenizer.ggml.token_type: not "
		    "an array of int32");
	if (r == 0) {
		if (kv->v.arr.n != (uint64_t)t->n_vocab)
			return err_set(err, -EINVAL, "tokenizer.ggml."
			    "token_type has %llu entries for %d tokens",
			    (unsigned long long)kv->v.arr.n, t->n_vocab);
		for (i = 0; i < t->n_vocab; i++) {
			v = tok_le32(kv->v.arr.data, (size_t)i);
			if (v > TOK_ATTR_BYTE)
				return err_set(err, -EINVAL, "token %d has "
				    "type %d", i, (int32_t)v);
			t->type[i] = (uint8_t)v;
			if (v != TOK_ATTR_BYTE)
				continue;
			s = tok_str(t, i);
			if (t->text_len[i] != 6 || memcmp(s, "<0x", 3) != 0 ||
			    !tok_is_hex(s[3]) || !tok_is_hex(s[4]) ||
			    s[5] != '>')
				return err_set(err, -EINVAL, "byte token %d is "
				    "not spelt <0xXX>", i);
		}
	}
	r = gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_VTYPE_FLOAT32, &kv);
	if (r == -EINVAL)
		return err_set(err, -EINVAL, "tokenizer.ggml.scores: not an "
		    "array of float32");
	if (r == -ENOENT && t->kind == TOK_KIND_SPM)
		return err_set(err, -EINVAL, "tokenizer.ggml.scores: missing");
	if (r == 0) {
		if (kv->v.arr.n != (uint64_t)t->n_vocab)
			return err_set(err, -EINVAL, "tokenizer.ggml.scores "
			    "has %llu entries for %d tokens",
			    (unsigned long long)kv->v.arr.n, t->n_vocab);
		for (i = 0; i < t->n_vocab; i++) {
			v = tok_le32(kv->v.arr.data, (size_t)i);
			memcpy(&t->score[i], &v, sizeof(v));
			if (isnan(t->score[i]))
				return err_set(err, -EINVAL, "token %d has a "
				    "NaN score", i);
		}
	}
	return 0;
}

static int
tok_load_specials(struct tok *t, const struct gguf *g, struct eng_err *err)
{
	static const char *const gpt_oss_user[] = {
		"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL
	};
	int32_t pad = -1, id, best;
	const struct {
		const char	*key;
		int32_t		*id;
		bool		 lenient;	/* unused: a bad one is none */
	} keys[] = {
		{ "tokenizer.ggml.bos_token_id",	&t->bos, false },
		{ "tokenizer.ggml.eos_token_id",	&t->eos, false },
		{ "tokenizer.ggml.unknown_token_id",	&t->unk, false },
		{ "tokenizer.ggml.eot_token_id",	&t->eot, false },
		{ "tokenizer.ggml.eom_token_id",	&t->eom, false },
		{ "tokenizer.ggml.padding_token_id",	&pad,	 true },
	};
	bool has_return, has_call, has_flush, has_end, has_tool, has_s;
	int32_t end_id, s_id;
	size_t i, k;
	int r;

	/* llama.cpp's defaults: SPM has <unk> <s> </s> at 0 1 2 */
	t->bos = t->eos = t->unk = t->eot = t->eom = -1;
	if (t->kind == TOK_KIND_SPM) {
		t->unk = t->n_vocab > 0 ? 0 : -1;
		t->bos = t->n_vocab > 1 ? 1 : -1;
		t->eos = t->n_vocab > 2 ? 2 : -1;
	}
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if ((r = tok_get_id(g, keys[i].key, t->n_vocab, keys[i].lenient,
		    keys[i].id, err)) == -EINVAL)
			return r;
	if (tok_get_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos,
	    err) < 0 || tok_get_flag(g, "tokenizer.ggml.add_eos_token",
	    &t->add_eos, err) < 0)
		return -EINVAL;
	if (t->add_bos && t->bos < 0)
		return err_set(err, -EINVAL, "add_bos_token is set but there "
		    "is no bos_token_id");
	if (t->add_eos && t->eos < 0)
		return err_set(err, -EINVAL, "add_eos_token is set but there "
		    "is no eos_token_id");

	/* Tokens llama.cpp recognizes by their text are control tokens. */
	for (i = 0; i < sizeof(tok_fim) / sizeof(tok_fim[0]); i++) {
		id = -1;
		if ((r = tok_get_id(g, tok_fim[i].key, t->n_vocab, true, &id,
		    err)) == -EINVAL)
			return r;
		if (r == -ENOENT && tok_fim[i].alt_key != NULL)
			(void)tok_get_id(g, tok_fim[i].alt_key, t->n_vocab,
			    true, &id, err);
		if (id < 0) {
			best = -1;
			for (k = 0; tok_fim[i].texts[k] != NULL; k++) {
				id = tok_find_str(t, tok_fim[i].texts[k]);
				if (id >= 0 && (best < 0 || id < best))
					best = id;
			}
			if ((id = best) >= 0)
				tok_force_control(t, id);
		}
		if (id >= 0 && tok_fim[i].eog)
			t->flags[id] |= TOKF_EOG;
	}
	for (k = 0; tok_eog_texts[k] != NULL; k++) {
		if ((id = tok_find_str(t, tok_eog_texts[k])) < 0)
			continue;
		t->flags[id] |= TOKF_EOG;
		tok_force_control(t, id);
	}
	for (k = 0; gpt_oss_user[k] != NULL; k++)
		if ((id = tok_find_str(t, gpt_oss_user[k])) >= 0)
			t->type[id] = TOK_ATTR_USER_DEFINED;
	if (t->eos >= 0)
		t->flags[t->eos] |= TOKF_EOG;
	if (t->eot >= 0)
		t->flags[t->eot] |= TOKF_EOG;
	if (t->eom >= 0)
		t->flags[t->eom] |= TOKF_EOG;

	/* o200k_harmony and solar-open: <|end|> does not end generation. */
	has_return = has_call = has_flush = has_end = has_tool = has_s = false;
	end_id = s_id = -1;
	for (id = 0; id < t->n_vocab; id++) {
		if (!(t->flags[id] & TOKF_EOG))
			continue;
		if (tok_is(t, id, "<|return|>"))
			has_return = true;
		else if (tok_is(t, id, "<|call|>") ||
		    tok_is(t, id, "<|calls|>"))
			has_call = true;
		else if (tok_is(t, id, "<|flush|>"))
			has_flush = true;
		else if (tok_is(t, id, "<|end|>")) {
			has_end = true;
			end_id = id;
		} else if (tok_is(t, id, "<|tool_response>"))
			has_tool = true;
		else if (tok_is(t, id, "</s>")) {
			has_s = true;
			s_id = id;
		}
	}
	if (((has_return && has_call) || (has_call && has_flush)) && has_end) {
		t->flags[end_id] &= (uint8_t)~TOKF_EOG;
		t->type[end_id] = TOK_ATTR_USER_DEFINED;
	}
	if (has_tool && has_s) {
		t->flags[s_id] &= (uint8_t)~TOKF_EOG;
		t->type[s_id] = TOK_ATTR_NORMAL;
	}
	return 0;
}

struct tok_lenid {
	uint32_t	len;	/* text bytes */
	int32_t		id;
};

static int
tok_lenid_cmp(const void *a, const void *b)
{
	const struct tok_lenid *x = a, *y = b;

	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int
tok_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Special tokens for the raw-text split, longest first. */
static int
tok_build_special(struct tok *t, const struct gguf *g, struct eng_err *err)
{
	const struct gguf_str *name;
	struct tok_lenid *sorted;
	char lname[64];
	uint8_t ty;
	size_t i, n, k;
	int32_t id;

	if ((t->special_rank = malloc((size_t)t->n_vocab *
	    sizeof(*t->special_rank))) == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	n = 0;
	for (id = 0; id < t->n_vocab; id++) {
		ty = t->type[id];
		t->special_rank[id] = -1;
		if ((ty == TOK_ATTR_CONTROL || ty == TOK_ATTR_USER_DEFINED ||
		    ty == TOK_ATTR_UNKNOWN) && t->text_len[id] > 0)
			n++;
	}
	t->special = malloc((n ? n : 1) * sizeof(*t->special));
	t->special_lens = malloc((n ? n : 1) * sizeof(*t->special_lens));
	if (t->special == NULL || t->special_lens == NULL ||
	    (sorted = malloc((n ? n : 1) * sizeof(*sorted))) == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	for (id = 0, k = 0; id < t->n_vocab; id++) {
		ty = t->type[id];
		if ((ty == TOK_ATTR_CONTROL || ty == TOK_ATTR_USER_DEFINED ||
		    ty == TOK_ATTR_UNKNOWN) && t->text_len[id] > 0) {
			sorted[k].len = t->text_len[id];
			sorted[k++].id = id;
		}
	}
	t->n_special = n;
	qsort(sorted, n, sizeof(*sorted), tok_lenid_cmp);
	for (i = 0; i < n; i++) {
		id = t->special[i] = sorted[i].id;
		t->special_rank[id] = (int32_t)i;
		t->special_first[(uint8_t)tok_str(t, id)[0] >> 3] |=
		    (uint8_t)(1u << ((uint8_t)tok_str(t, id)[0] & 7));
		t->special_lens[i] = t->text_len[id];
	}
	qsort(t->special_lens, n, sizeof(*t->special_lens), tok_u32_cmp);
	for (i = 0, k = 0; i < n; i++)
		if (k == 0 || t->special_lens[k - 1] != t->special_lens[i])
			t->special_lens[k++] = t->special_lens[i];
	t->n_special_lens = k;
	free(sorted);

	/* llama.cpp: Phi-3's special tokens eat the whitespace after them. */
	if (gguf_get_str(g, "general.name", &name) == 0) {
		n = name->len < sizeof(lname) - 1 ? (size_t)name->len :
		    sizeof(lname) - 1;
		for (i = 0; i < n; i++)
			lname[i] = (name->s[i] >= 'A' && name->s[i] <= 'Z') ?
			    (char)(name->s[i] - 'A' + 'a') : name->s[i];
		lname[n] = '\0';
		if (memmem(lname, n, "phi-3", 5) != NULL ||
		    memmem(lname, n, "phi3", 4) != NULL) {
			for (i = 0; i < t->n_special; i++)
				t->flags[t->special[i]] |= TOKF_RSTRIP;
			if ((id = tok_find_str(t, "</s>")) >= 0)
				t->flags[id] |= TOKF_RSTRIP;
			if ((id = tok_find_str(t, "<unk>")) >= 0)
				t->flags[id] &= (uint8_t)~TOKF_RSTRIP;
			if ((id = tok_find_str(t, "<s>")) >= 0)
				t->flags[id] &= (uint8_t)~TOKF_RSTRIP;
			if ((id = tok_find_str(t, "<|endoftext|>")) >= 0)
				t->flags[id] &= (uint8_t)~TOKF_RSTRIP;
		}
	}
	return 0;
}

/* The bytes a normal token's text s[0..n) stands for, into p. */
static size_t
tok_normal_piece(const struct tok *t, const uint8_t *s, size_t n, char *p)
{
	size_t j = 0, k = 0, l;
	uint32_t cp;

	while (j < n) {
		if (t->kind == TOK_KIND_SPM) {
			/* U+2581 is a space */
			if (n - j >= 3 &&
			    memcmp(s + j, "\xe2\x96\x81", 3) == 0) {
				p[k++] = ' ';
				j += 3;
			} else
				p[k++] = (char)s[j++];
			continue;
		}
		/* texts are valid UTF-8, checked on load */
		if ((l = tok_utf8_len(s + j, n - j, &cp)) == 0) {
			p[k++] = (char)s[j++];
			continue;
		}
		if (cp < TOK_N_BYTECP && t->byte_dec[cp] >= 0)
			p[k++] = (char)t->byte_dec[cp];
		else {
			/* not in the byte alphabet: kept as it is */
			memcpy(p + k, s + j, l);
			k += l;
		}
		j += l;
	}
	return k;
}

/* What each token decodes to (with special set), precomputed. */
static int
tok_build_pieces(struct tok *t, struct eng_err *err)
{
	size_t total = 0, off = 0, k;
	const uint8_t *s;
	uint32_t n;
	int32_t id;
	char *p;

	for (id = 0; id < t->n_vocab; id++)
		total += t->text_len[id];	/* a piece is never longer */
	if ((t->piece = malloc(total ? total : 1)) == NULL ||
	    (t->piece_off = calloc((size_t)t->n_vocab,
	    sizeof(*t->piece_off))) == NULL ||
	    (t->piece_len = calloc((size_t)t->n_vocab,
	    sizeof(*t->piece_len))) == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	for (id = 0; id < t->n_vocab; id++) {
		s = (const uint8_t *)tok_str(t, id);
		n = t->text_len[id];
		p = t->piece + off;
		t->piece_off[id] = off;
		k = 0;
		switch (t->type[id]) {
		case TOK_ATTR_CONTROL:
		case TOK_ATTR_UNKNOWN:
			t->flags[id] |= TOKF_HIDDEN;
			/* FALLTHROUGH */
		case TOK_ATTR_USER_DEFINED:
			memcpy(p, s, n);
			k = n;
			break;
		case TOK_ATTR_BYTE:
			p[0] = (char)(tok_hex((char)s[3]) << 4 |
			    tok_hex((char)s[4]));
			k = 1;
			break;
		case TOK_ATTR_NORMAL:
			k = tok_normal_piece(t, s, n, p);
			break;
		default:	/* undefined and unused tokens show nothing */
			break;
		}
		t->piece_len[id] = (uint32_t)k;
		off += k;
	}
	return 0;
}

int
tok_new(const struct gguf *g, struct tok **out, struct eng_err *err)
{
	const struct gguf_str *model = NULL, *pre = NULL;
	const struct gguf_kv *kv;
	struct tok *t;
	char buf[8];
	size_t i;
	int r, b;

	if (g == NULL || out == NULL)
		return err_set(err, -EINVAL, "tok_new: no file");
	if ((r = gguf_get_str(g, "tokenizer.ggml.model", &model)) < 0)
		return err_set(err, -EINVAL, "tokenizer.ggml.model: %s",
		    r == -ENOENT ? "missing" : "not a string");
	if ((r = gguf_get_str(g, "tokenizer.ggml.pre", &pre)) == -EINVAL)
		return err_set(err, -EINVAL, "tokenizer.ggml.pre: not a "
		    "string");
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return err_set(err, -ENOMEM, "out of memory");
	if (strcmp(model->s, "llama") == 0 && model->len == 5)
		t->kind = TOK_KIND_SPM;
	else if (strcmp(model->s, "gpt2") == 0 && model->len == 4)
		t->kind = TOK_KIND_BPE;
	else {
		r = err_set(err, -ENOTSUP, "unsupported tokenizer model "
		    "'%.32s'", model->s);
		goto fail;
	}

	if ((r = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VTYPE_STRING,
	    &kv)) < 0) {
		r = err_set(err, -EINVAL, "tokenizer.ggml.tokens: %s",
		    r == -ENOENT ? "missing" : "not an array of strings");
		goto fail;
	}
	if (kv->v.arr.n == 0 || kv->v.arr.n > INT32_MAX - 1) {
		r = err_set(err, -EINVAL, "tokenizer.ggml.tokens: %llu tokens",
		    (unsigned long long)kv->v.arr.n);
		goto fail;
	}
	t->n_vocab = (int32_t)kv->v.arr.n;
	if ((r = tok_load_tokens(t, kv, err)) < 0 ||
	    (r = tok_load_types(t, g, err)) < 0)
		goto fail;

	if (t->kind == TOK_KIND_SPM) {
		t->add_bos = true;
		t->add_space_prefix = true;
		if ((r = tok_get_flag(g, "tokenizer.ggml.add_space_prefix",
		    &t->add_space_prefix, err)) < 0)
			goto fail;
		for (b = 0; b < 256; b++) {
			snprintf(buf, sizeof(buf), "<0x%02X>", b);
			t->byte_tok[b] = tok_find_str(t, buf);
			if (t->byte_tok[b] < 0) {
				buf[0] = (char)b;
				t->byte_tok[b] = tok_lookup(t, buf, 1);
			}
		}
	} else {
		t->pre = TOK_PRE_DEFAULT;
		for (i = 0; pre != NULL &&
		    i < sizeof(tok_pre_names) / sizeof(tok_pre_names[0]); i++) {
			if (strlen(tok_pre_names[i].name) != pre->len ||
			    strcmp(tok_pre_names[i].name, pre->s) != 0)
				continue;
			t->pre = tok_pre_names[i].pre;
			t->add_bos = tok_pre_names[i].add_bos;
			t->ignore_merges = tok_pre_names[i].ignore_merges;
			break;
		}
		tok_init_bytes(t);
		if ((r = tok_load_merges(t, g, err)) < 0 ||
		    (r = tok_compile(t, err)) < 0)
			goto fail;
	}
	if ((r = tok_load_specials(t, g, err)) < 0 ||
	    (r = tok_build_special(t, g, err)) < 0 ||
	    (r = tok_build_pieces(t, err)) < 0)
		goto fail;
	*out = t;
	return 0;
fail:
	tok_free(t);
	return r;
}

void
tok_free(struct tok *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < TOK_MAX_RE; i++)
		pcre2_code_free(t->re[i]);
	free(t->text);
	free(t->text_off);
	free(t->text_len);
	free(t->piece);
	free(t->piece_off);
	free(t->piece_len);
	free(t->score);
	free(t->type);
	free(t->flags);
	free(t->special_rank);
	free(t->map.slot);
	free(t->merge);
	free(t->merge_off);
	free(t->merge_len);
	free(t->merge_split);
	free(t->merge_map.slot);
	free(t->special);
	free(t->special_lens);
	free(t);
}

/* --- accessors ------------------------------------------------------------ */

enum tok_kind
tok_kind(const struct tok *t)
{
	return t->kind;
}

int32_t
tok_n_vocab(const struct tok *t)
{
	return t->n_vocab;
}

int32_t
tok_bos(const struct tok *t)
{
	return t->bos;
}

int32_t
tok_eos(const struct tok *t)
{
	return t->eos;
}

bool
tok_add_bos(const struct tok *t)
{
	return t->add_bos;
}

bool
tok_add_eos(const struct tok *t)
{
	return t->add_eos;
}

bool
tok_is_eog(const struct tok *t, int32_t id)
{
	return id >= 0 && id < t->n_vocab && (t->flags[id] & TOKF_EOG);
}

enum tok_attr
tok_attr(const struct tok *t, int32_t id)
{
	if (id < 0 || id >= t->n_vocab)
		return TOK_ATTR_UNDEFINED;
	return (enum tok_attr)t->type[id];
}

const char *
tok_text(const struct tok *t, int32_t id, size_t *len)
{
	if (id < 0 || id >= t->n_vocab)
		return NULL;
	if (len != NULL)
		*len = t->text_len[id];
	return tok_str(t, id);
}

int32_t
tok_find(const struct tok *t, const char *text, size_t len)
{
	if (text == NULL || len == 0)
		return -1;
	return tok_lookup(t, text, len);
}

/* --- encoding ------------------------------------------------------------- */

/* Cut the raw run text[off..off+flen) at every occurrence of token id. */
static int
tok_split_frag(const struct tok *t, const char *text, size_t off,
    size_t flen, int32_t id, struct tok_frags *b)
{
	const char *tk = tok_str(t, id), *m;
	size_t tl = t->text_len[id], left, rem;

	while (flen > 0) {
		if ((m = memmem(text + off, flen, tk, tl)) == NULL)
			return tok_frags_push(b, -1, off, flen);
		left = (size_t)(m - (text + off));
		rem = flen - left - tl;
		if (t->flags[id] & TOKF_LSTRIP)
			while (left > 0 &&
			    tok_isspace((uint8_t)text[off + left - 1]))
				left--;
		if (left > 0 && tok_frags_push(b, -1, off, left) < 0)
			return -ENOMEM;
		if (tok_frags_push(b, id, 0, 0) < 0)
			return -ENOMEM;
		off = (size_t)(m - text) + tl;
		if (t->flags[id] & TOKF_RSTRIP)
			while (rem > 0 && tok_isspace((uint8_t)text[off])) {
				off++;
				rem--;
			}
		flen = rem;
	}
	return 0;
}

/*
 * Split the text on the special tokens that may match, llama.cpp's way:
 * token by token, longest first, each cutting every raw run left.
 */
static int
tok_partition(const struct tok *t, const char *text, size_t len,
    bool parse_special, struct tok_frags *out)
{
	struct tok_frags a = { 0 }, b = { 0 }, tmp;
	uint8_t *present = NULL, c;
	size_t pos, i, j;
	int32_t id;
	int r = -ENOMEM;

	if (len == 0) {
		*out = a;
		return 0;
	}
	if (tok_frags_push(&a, -1, 0, len) < 0)
		goto done;
	if (t->n_special == 0)
		goto ok;
	if ((present = calloc(t->n_special, 1)) == NULL)
		goto done;
	/* which special tokens occur at all */
	for (pos = 0; pos < len; pos++) {
		c = (uint8_t)text[pos];
		if (!(t->special_first[c >> 3] & (1u << (c & 7))))
			continue;
		for (i = 0; i < t->n_special_lens; i++) {
			if (t->special_lens[i] > len - pos)
				break;
			id = tok_lookup(t, text + pos, t->special_lens[i]);
			if (id >= 0 && t->special_rank[id] >= 0)
				present[t->special_rank[id]] = 1;
		}
	}
	for (i = 0; i < t->n_special; i++) {
		if (!present[i])
			continue;
		id = t->special[i];
		if (!parse_special && (t->type[id] == TOK_ATTR_CONTROL ||
		    t->type[id] == TOK_ATTR_UNKNOWN))
			continue;
		b.n = 0;
		for (j = 0; j < a.n; j++) {
			if (a.v[j].id >= 0) {
				if (tok_frags_push(&b, a.v[j].id, 0, 0) < 0)
					goto done;
				continue;
			}
			if (tok_split_frag(t, text, a.v[j].off, a.v[j].len, id,
			    &b) < 0)
				goto done;
		}
		tmp = a;
		a = b;
		b = tmp;
	}
ok:
	*out = a;
	a.v = NULL;
	r = 0;
done:
	free(a.v);
	free(b.v);
	free(present);
	return r;
}

/* Queue the merge of symbols l and r if their text is a token. */
static int
tok_spm_try(const struct tok *t, const char *s, const struct tok_sym *sym,
    int32_t l, int32_t r, struct tok_heap *h)
{
	uint32_t n;
	int32_t id;

	if (l < 0 || r < 0)
		return 0;
	n = sym[l].n + sym[r].n;
	if ((id = tok_lookup(t, s + sym[l].off, n)) < 0)
		return 0;
	return tok_heap_push(h, tok_score_key(t->score[id]), l, r, n);
}

/* SentencePiece-style merges over s (spaces already escaped). */
static int
tok_spm_run(const struct tok *t, const char *s, size_t n, struct tok_ids *out)
{
	struct tok_sym *sym = NULL;
	struct tok_heap h = { 0 };
	struct tok_big big;
	struct tok_sym *L, *R;
	size_t off, nsym = 0, k;
	int32_t i, id, left;
	int r = -ENOMEM;

	if (n == 0)
		return 0;
	if ((sym = malloc(n * sizeof(*sym))) == NULL)
		goto done;
	for (off = 0; off < n; nsym++) {
		k = tok_lead_len((uint8_t)s[off]);
		if (k > n - off)
			k = n - off;
		sym[nsym].off = (uint32_t)off;
		sym[nsym].n = (uint32_t)k;
		sym[nsym].prev = (int32_t)nsym - 1;
		off += k;
		sym[nsym].next = off == n ? -1 : (int32_t)nsym + 1;
	}
	for (i = 1; i < (int32_t)nsym; i++)
		if (tok_spm_try(t, s, sym, i - 1, i, &h) < 0)
			goto done;
	while (h.n > 0) {
		big = tok_heap_pop(&h);
		left = tok_big_left(&big);
		L = &sym[left];
		R = &sym[big.right];
		if (L->n == 0 || R->n == 0 || L->n + R->n != big.size)
			continue;
		L->n += R->n;
		R->n = 0;
		L->next = R->next;
		if (R->next >= 0)
			sym[R->next].prev = left;
		if (tok_spm_try(t, s, sym, L->prev, left, &h) < 0 ||
		    tok_spm_try(t, s, sym, left, L->next, &h) < 0)
			goto done;
	}
	for (i = 0; i != -1; i = sym[i].next) {
		if ((id = tok_lookup(t, s + sym[i].off, sym[i].n)) >= 0) {
			if (tok_ids_push(out, id) < 0)
				goto done;
			continue;
		}
		for (k = 0; k < sym[i].n; k++) {
			id = t->byte_tok[(uint8_t)s[sym[i].off + k]];
			if (id < 0)
				id = t->unk;
			if (id < 0) {
				r = -EINVAL;
				goto done;
			}
			if (tok_ids_push(out, id) < 0)
				goto done;
		}
	}
	r = 0;
done:
	free(sym);
	free(h.v);
	return r;
}

static int
tok_spm_fragment(const struct tok *t, const char *text, size_t len,
    bool prefix, struct tok_ids *out)
{
	char *buf;
	size_t i, n = 0;
	int r;

	if ((buf = malloc(3 * len + 3)) == NULL)
		return -ENOMEM;
	if (prefix) {
		memcpy(buf, "\xe2\x96\x81", 3);
		n = 3;
	}
	for (i = 0; i < len; i++) {
		if (text[i] == ' ') {
			memcpy(buf + n, "\xe2\x96\x81", 3);
			n += 3;
		} else
			buf[n++] = text[i];
	}
	r = tok_spm_run(t, buf, n, out);
	free(buf);
	return r;
}

/*
 * Cut s[off..off+len) into the matches of re and the runs between them,
 * as llama.cpp's std::regex_iterator loop does.
 */
static int
tok_re_split(const pcre2_code *re, const char *s, size_t off, size_t len,
    pcre2_match_data *md, struct tok_ranges *out)
{
	PCRE2_SPTR sub = (PCRE2_SPTR)s + off;
	size_t pos = 0, start = 0, ms, me, k;
	PCRE2_SIZE *ov;
	uint32_t cp;
	int rc;

	while (start < len) {
		rc = pcre2_match(re, sub, len, start, PCRE2_NO_UTF_CHECK, md,
		    NULL);
		if (rc == PCRE2_ERROR_JIT_STACKLIMIT)	/* interpret instead */
			rc = pcre2_match(re, sub, len, start,
			    PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0)
			return rc == PCRE2_ERROR_NOMEMORY ? -ENOMEM : -E2BIG;
		ov = pcre2_get_ovector_pointer(md);
		ms = ov[0];
		me = ov[1];
		if (me <= ms) {
			/* an empty match splits nothing */
			if (ms >= len)
				break;
			k = tok_utf8_len(sub + ms, len - ms, &cp);
			start = ms + (k > 0 ? k : 1);
			continue;
		}
		if (ms > pos && tok_ranges_push(out, off + pos, ms - pos) < 0)
			return -ENOMEM;
		if (tok_ranges_push(out, off + ms, me - ms) < 0)
			return -ENOMEM;
		pos = start = me;
	}
	if (pos < len && tok_ranges_push(out, off + pos, len - pos) < 0)
		return -ENOMEM;
	return 0;
}

/* Cut s into words with the pre-tokenizer's regexes, one after another. */
static int
tok_pretokenize(const struct tok *t, const char *s, size_t n,
    struct tok_ranges *words)
{
	struct tok_ranges a = { 0 }, b = { 0 }, tmp;
	pcre2_match_data *md = NULL;
	size_t i, j;
	int r = -ENOMEM;

	if (tok_ranges_push(&a, 0, n) < 0)
		goto done;
	if ((md = pcre2_match_data_create(1, NULL)) == NULL)
		goto done;
	for (i = 0; i < t->n_re; i++) {
		b.n = 0;
		for (j = 0; j < a.n; j++) {
			if ((r = tok_re_split(t->re[i], s, a.v[j].off,
			    a.v[j].len, md, &b)) < 0)
				goto done;
		}
		tmp = a;
		a = b;
		b = tmp;
	}
	*words = a;
	a.v = NULL;
	r = 0;
done:
	pcre2_match_data_free(md);
	free(a.v);
	free(b.v);
	return r;
}

static int
tok_bpe_try(const struct tok *t, const char *s, const struct tok_sym *sym,
    int32_t l, int32_t r, struct tok_heap *h)
{
	int64_t rank;

	if (l < 0 || r < 0)
		return 0;
	rank = tok_merge_rank(t, s + sym[l].off, sym[l].n, s + sym[r].off,
	    sym[r].n);
	if (rank < 0)
		return 0;
	return tok_heap_push(h, (uint32_t)rank, l, r, sym[l].n + sym[r].n);
}

/* Byte-level BPE over one word (already mapped to the byte alphabet). */
static int
tok_bpe_word(const struct tok *t, const char *s, size_t n,
    struct tok_sym **symp, size_t *symcap, struct tok_heap *h,
    struct tok_ids *out)
{
	struct tok_sym *sym, *L, *R;
	struct tok_big big;
	size_t off, nsym = 0, k;
	int32_t i, id, left;

	if (t->ignore_merges && (id = tok_lookup(t, s, n)) >= 0)
		return tok_ids_push(out, id);
	if (tok_grow((void **)symp, symcap, n, sizeof(**symp)) < 0)
		return -ENOMEM;
	sym = *symp;
	for (off = 0; off < n; nsym++) {
		k = tok_lead_len((uint8_t)s[off]);
		if (k > n - off)
			k = n - off;
		sym[nsym].off = (uint32_t)off;
		sym[nsym].n = (uint32_t)k;
		sym[nsym].prev = (int32_t)nsym - 1;
		off += k;
		sym[nsym].next = off == n ? -1 : (int32_t)nsym + 1;
	}
	h->n = 0;
	for (i = 1; i < (int32_t)nsym; i++)
		if (tok_bpe_try(t, s, sym, i - 1, i, h) < 0)
			return -ENOMEM;
	while (h->n > 0) {
		big = tok_heap_pop(h);
		left = tok_big_left(&big);
		L = &sym[left];
		R = &sym[big.right];
		if (L->n == 0 || R->n == 0 || L->n + R->n != big.size)
			continue;
		L->n += R->n;
		R->n = 0;
		L->next = R->next;
		if (R->next >= 0)
			sym[R->next].prev = left;
		if (tok_bpe_try(t, s, sym, L->prev, left, h) < 0 ||
		    tok_bpe_try(t, s, sym, left, L->next, h) < 0)
			return -ENOMEM;
	}
	for (i = 0; i != -1; i = sym[i].next) {
		if ((id = tok_lookup(t, s + sym[i].off, sym[i].n)) >= 0) {
			if (tok_ids_push(out, id) < 0)
				return -ENOMEM;
			continue;
		}
		/* as llama.cpp: bytes of the symbol that are tokens, if any */
		for (k = 0; k < sym[i].n; k++) {
			id = tok_lookup(t, s + sym[i].off + k, 1);
			if (id >= 0 && tok_ids_push(out, id) < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

static int
tok_bpe_fragment(const struct tok *t, const char *text, size_t len,
    struct tok_ids *out)
{
	struct tok_ranges words = { 0 };
	struct tok_heap h = { 0 };
	struct tok_sym *sym = NULL;
	size_t symcap = 0, i, j, n;
	const uint8_t *w;
	char *buf = NULL;
	int r;

	if ((r = tok_pretokenize(t, text, len, &words)) < 0)
		goto done;
	r = -ENOMEM;
	if ((buf = malloc(2 * len + 1)) == NULL)
		goto done;
	for (i = 0; i < words.n; i++) {
		w = (const uint8_t *)text + words.v[i].off;
		for (j = 0, n = 0; j < words.v[i].len; j++) {
			memcpy(buf + n, t->byte_enc[w[j]],
			    t->byte_enc_len[w[j]]);
			n += t->byte_enc_len[w[j]];
		}
		if (n > 0 && tok_bpe_word(t, buf, n, &sym, &symcap, &h,
		    out) < 0)
			goto done;
	}
	r = 0;
done:
	free(words.v);
	free(h.v);
	free(sym);
	free(buf);
	return r;
}

int
tok_encode(const struct tok *t, const char *text, size_t len,
    bool add_special, bool parse_special, int32_t *ids, size_t max_ids,
    size_t *n_ids)
{
	struct tok_frags fr = { 0 };
	struct tok_ids out = { 0 };
	bool prev_special = true;
	size_t i;
	int r;

	if (t == NULL || n_ids == NULL || (text == NULL && len > 0) ||
	    (ids == NULL && max_ids > 0))
		return -EINVAL;
	if (len > TOK_MAX_TEXT)
		return -E2BIG;
	if (t->kind == TOK_KIND_BPE && !tok_utf8_valid(text, len))
		return -EINVAL;
	if ((r = tok_partition(t, text, len, parse_special, &fr)) < 0)
		goto done;
	r = -ENOMEM;
	if (add_special && t->add_bos && tok_ids_push(&out, t->bos) < 0)
		goto done;
	for (i = 0; i < fr.n; i++) {
		if (fr.v[i].id >= 0) {
			if (tok_ids_push(&out, fr.v[i].id) < 0)
				goto done;
			prev_special = true;
			continue;
		}
		if (t->kind == TOK_KIND_SPM)
			r = tok_spm_fragment(t, text + fr.v[i].off, fr.v[i].len,
			    t->add_space_prefix && prev_special, &out);
		else
			r = tok_bpe_fragment(t, text + fr.v[i].off, fr.v[i].len,
			    &out);
		if (r < 0)
			goto done;
		r = -ENOMEM;
		prev_special = false;
	}
	if (add_special && t->add_eos && tok_ids_push(&out, t->eos) < 0)
		goto done;
	if (out.n > 0 && max_ids > 0)
		memcpy(ids, out.v, (out.n < max_ids ? out.n : max_ids) *
		    sizeof(*ids));
	*n_ids = out.n;
	r = out.n > max_ids ? -ENOBUFS : 0;
done:
	free(fr.v);
	free(out.v);
	return r;
}

/* --- decoding ------------------------------------------------------------- */

/* The piece of id as tok_piece gives it (no range check). */
static const char *
tok_piece_ref(const struct tok *t, int32_t id, bool special, size_t *len)
{
	if (!special && (t->flags[id] & TOKF_HIDDEN)) {
		*len = 0;
		return "";
	}
	*len = t->piece_len[id];
	return t->piece + t->piece_off[id];
}

int
tok_piece(const struct tok *t, int32_t id, bool special, char *buf,
    size_t size)
{
	const char *p;
	size_t n;

	if (t == NULL || id < 0 || id >= t->n_vocab || (buf == NULL && size))
		return -EINVAL;
	p = tok_piece_ref(t, id, special, &n);
	if (size > 0) {
		memcpy(buf, p, n < size - 1 ? n : size - 1);
		buf[n < size - 1 ? n : size - 1] = '\0';
	}
	return (int)n;
}

int
tok_decode(const struct tok *t, const int32_t *ids, size_t n_ids,
    bool special, bool remove_space, char *out, size_t size)
{
	size_t i, n, total = 0, w;
	bool strip = remove_space && t != NULL && t->add_space_prefix;
	const char *p;

	if (t == NULL || (ids == NULL && n_ids > 0) || (out == NULL && size))
		return -EINVAL;
	for (i = 0; i < n_ids; i++)
		if (ids[i] < 0 || ids[i] >= t->n_vocab)
			return -EINVAL;
	for (i = 0; i < n_ids; i++) {
		p = tok_piece_ref(t, ids[i], special, &n);
		if (strip && ids[i] != t->bos) {
			/* the first token after any BOS loses its space */
			if (n > 0 && p[0] == ' ') {
				p++;
				n--;
			}
			strip = false;
		}
		if (n > (size_t)INT_MAX - total)
			return -EOVERFLOW;
		if (size > 0 && total < size - 1) {
			w = size - 1 - total;
			memcpy(out + total, p, n < w ? n : w);
		}
		total += n;
	}
	if (size > 0)
		out[total < size - 1 ? total : size - 1] = '\0';
	return (int)total;
}

void
tok_stream_init(struct tok_stream *s)
{
	memset(s, 0, sizeof(*s));
	s->first = true;
}

/*
 * Turn in[0..n) into valid UTF-8 in out (NULL: only count). Invalid
 * bytes become U+FFFD, one per maximal invalid run as the Unicode
 * standard recommends; an incomplete character at the end is held back
 * (its length in *held) unless final.
 */
static size_t
tok_utf8_fix(const uint8_t *in, size_t n, bool final, char *out,
    size_t *held)
{
	size_t i = 0, o = 0, need, k;
	uint8_t b, lo, hi;

	*held = 0;
	while (i < n) {
		b = in[i];
		lo = 0x80;
		hi = 0xbf;
		if (b < 0x80) {
			if (out != NULL)
				out[o] = (char)b;
			o++;
			i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf)
			need = 1;
		else if (b >= 0xe0 && b <= 0xef) {
			need = 2;
			if (b == 0xe0)
				lo = 0xa0;
			else if (b == 0xed)
				hi = 0x9f;
		} else if (b >= 0xf0 && b <= 0xf4) {
			need = 3;
			if (b == 0xf0)
				lo = 0x90;
			else if (b == 0xf4)
				hi = 0x8f;
		} else
			need = 0;
		for (k = 1; need > 0 && k <= need; k++) {
			if (i + k >= n)
				break;	/* incomplete at the end */
			if (in[i + k] < lo || in[i + k] > hi)
				break;	/* invalid */
			lo = 0x80;
			hi = 0xbf;
		}
		if (need > 0 && k > need) {
			if (out != NULL)
				memcpy(out + o, in + i, need + 1);
			o += need + 1;
			i += need + 1;
			continue;
		}
		if (need > 0 && i + k >= n && !final) {
			*held = n - i;
			break;
		}
		if (out != NULL)
			memcpy(out + o, "\xef\xbf\xbd", 3);
		o += 3;
		i += need > 0 ? k : 1;
	}
	return o;
}

int
tok_stream_push(const struct tok *t, struct tok_stream *s, int32_t id,
    bool special, char *out, size_t size)
{
	uint8_t small[256], *buf = small;
	size_t n, total, o, held;
	const char *p;
	bool first;
	int r;

	if (t == NULL || s == NULL || (out == NULL && size) ||
	    s->n_pend > sizeof(s->pend))
		return -EINVAL;
	if (id < 0 || id >= t->n_vocab)
		return -EINVAL;
	p = tok_piece_ref(t, id, special, &n);
	first = s->first;
	if (first && id != t->bos) {
		if (t->add_space_prefix && n > 0 && p[0] == ' ') {
			p++;
			n--;
		}
		first = false;
	}
	if (n > (size_t)INT_MAX / 3 - sizeof(s->pend))
		return -EOVERFLOW;
	total = s->n_pend + n;
	if (total > sizeof(small) && (buf = malloc(total)) == NULL)
		return -ENOMEM;
	memcpy(buf, s->pend, s->n_pend);
	memcpy(buf + s->n_pend, p, n);
	o = tok_utf8_fix(buf, total, false, NULL, &held);
	if (o > size) {
		r = -ENOBUFS;
		goto done;
	}
	(void)tok_utf8_fix(buf, total, false, out, &held);
	if (o < size)
		out[o] = '\0';
	memcpy(s->pend, buf + total - held, held);
	s->n_pend = held;
	s->first = first;
	r = (int)o;
done:
	if (buf != small)
		free(buf);
	return r;
}

int
tok_stream_flush(struct tok_stream *s, char *out, size_t size)
{
	size_t o, held;

	if (s == NULL || (out == NULL && size) || s->n_pend > sizeof(s->pend))
		return -EINVAL;
	o = tok_utf8_fix(s->pend, s->n_pend, true, NULL, &held);
	if (o > size)
		return -ENOBUFS;
	(void)tok_utf8_fix(s->pend, s->n_pend, true, out, &held);
	if (o < size)
		out[o] = '\0';
	s->n_pend = 0;
	return (int)o;
}
