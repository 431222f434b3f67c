/* Internal types shared by the tokenizer pipeline: hash maps, the normalized
 * text buffer with per-byte alignments, split lists, per-call scratch space, and
 * the component structs (normalizer, pre-tokenizer, model, post-processor,
 * decoder) built from tokenizer.json.
 *
 * Alignment model (mirrors HF NormalizedString): every byte of normalized text
 * carries the [start, end) byte range in the ORIGINAL input of the character
 * it came from. A token covering normalized bytes [a, b) maps back to
 * [al[a].s, al[b-1].e). */
#ifndef TD_TOKENIZER_TOK_INTERNAL_H
#define TD_TOKENIZER_TOK_INTERNAL_H

#include "core/ctx.h"
#include "tdeploy/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

/* ---- growable arrays ---------------------------------------------------- */
/* Grow *p (element size sz) to hold at least need elements; false on OOM/overflow. */
bool td_grow(void **p, size_t *cap, size_t need, size_t sz);
#define TD_GROW(ptr, cap, need) td_grow((void **)&(ptr), &(cap), (need), sizeof *(ptr))

/* ---- string -> int32 map (open addressing, FNV-1a) ---------------------- */
typedef struct td_strmap_slot {
    uint64_t hash;
    const char *key; /* NULL = empty; points into memory owned by the map's user */
    uint32_t len;
    int32_t val;
} td_strmap_slot;

typedef struct td_strmap {
    td_strmap_slot *slots;
    size_t cap, count; /* cap is a power of two */
} td_strmap;

static inline uint64_t td_fnv_init(void) { return 1469598103934665603ULL; }
static inline uint64_t td_fnv_step(uint64_t h, unsigned char c) { return (h ^ c) * 1099511628211ULL; }
static inline uint64_t td_fnv(const char *s, size_t n) {
    uint64_t h = td_fnv_init();
    for (size_t i = 0; i < n; i++)
        h = td_fnv_step(h, (unsigned char)s[i]);
    return h;
}
/* Insert key (not copied: must outlive the map). Replaces an existing value. */
bool td_strmap_put(td_strmap *m, const char *key, size_t len, int32_t val);
/* -1 when absent. */
int32_t td_strmap_get(const td_strmap *m, const char *key, size_t len);
int32_t td_strmap_get_h(const td_strmap *m, uint64_t hash, const char *key, size_t len);
void td_strmap_free(td_strmap *m);

/* ---- (id, id) -> (rank, merged id) map for BPE merges -------------------- */
typedef struct td_pairmap_slot {
    uint64_t key; /* (left << 32 | right) + 1; 0 = empty */
    int32_t rank, merged;
} td_pairmap_slot;
typedef struct td_pairmap {
    td_pairmap_slot *slots;
    size_t cap, count;
} td_pairmap;
bool td_pairmap_put(td_pairmap *m, uint32_t a, uint32_t b, int32_t rank, int32_t merged); /* keeps the first */
const td_pairmap_slot *td_pairmap_get(const td_pairmap *m, uint32_t a, uint32_t b);
void td_pairmap_free(td_pairmap *m);

/* ---- UTF-8 + character classes ------------------------------------------ */
/* Decode one code point at s[0..n) (n >= 1, text already validated). Returns its byte length. */
static inline int td_utf8_dec(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    if ((u[0] & 0xE0) == 0xC0 && n >= 2) {
        *cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
        return 2;
    }
    if ((u[0] & 0xF0) == 0xE0 && n >= 3) {
        *cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
        return 3;
    }
    if (n >= 4) {
        *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) | ((uint32_t)(u[2] & 0x3F) << 6) |
              (u[3] & 0x3F);
        return 4;
    }
    *cp = 0xFFFD;
    return 1;
}
static inline int td_utf8_len(unsigned char lead) {
    return lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : 4;
}
int td_utf8_enc(uint32_t cp, char out[4]);
/* Offset of the first invalid byte, or (size_t)-1 when s[0..n) is valid UTF-8. */
size_t td_utf8_invalid_at(const char *s, size_t n);
/* Append s[0..n) to a growable buffer replacing invalid sequences with U+FFFD (like Rust from_utf8_lossy). */
bool td_utf8_lossy_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

bool td_char_is_whitespace(uint32_t c);  /* Rust char::is_whitespace (White_Space property) */
bool td_char_is_punct(uint32_t c);       /* ASCII punctuation or Unicode P* */
bool td_char_is_numeric(uint32_t c);     /* Nd | Nl | No */
bool td_char_is_alnum(uint32_t c);       /* Rust char::is_alphanumeric */
bool td_char_is_mark_nonspacing(uint32_t c);
bool td_char_is_mark(uint32_t c); /* Mn | Mc | Me */
bool td_char_is_other(uint32_t c); /* Cc Cf Cn Co Cs */
bool td_char_is_chinese(uint32_t c);

/* ---- normalized text with alignments ------------------------------------ */
typedef struct td_span {
    uint32_t s, e;
} td_span;

typedef struct td_nbuf {
    char *t;
    td_span *al; /* one per byte of t */
    size_t len, cap;
} td_nbuf;

bool td_nbuf_reserve(td_nbuf *b, size_t need);
/* Append code point cp, every byte aligned to sp. */
bool td_nbuf_push_cp(td_nbuf *b, uint32_t cp, td_span sp);
/* Append bytes with their alignments. */
bool td_nbuf_push(td_nbuf *b, const char *t, const td_span *al, size_t n);
void td_nbuf_free(td_nbuf *b);

/* One (char, change) step of HF NormalizedString::transform. */
typedef struct td_xform {
    uint32_t cp;
    int32_t change;
} td_xform;

/* ---- splits (pre-tokenized pieces) -------------------------------------- */
typedef struct td_split {
    size_t off, len; /* into the owning td_splits' buf */
    int32_t added;   /* added-token id, or -1 */
    uint32_t ostart; /* HF offsets_original().0: where this piece starts in the original text */
} td_split;

typedef struct td_splits {
    td_nbuf buf;
    td_split *v;
    size_t n, cap;
} td_splits;

bool td_splits_push(td_splits *s, const char *t, const td_span *al, size_t n, int32_t added, uint32_t ostart);
static inline void td_splits_clear(td_splits *s) {
    s->buf.len = 0;
    s->n = 0;
}
void td_splits_free(td_splits *s);

/* Split-by-match ranges ("find_matches" in HF). */
typedef struct td_match {
    size_t s, e;
    bool is_match;
} td_match;

typedef enum td_split_behavior {
    TD_SPLIT_REMOVED,
    TD_SPLIT_ISOLATED,
    TD_SPLIT_MERGED_PREV,
    TD_SPLIT_MERGED_NEXT,
    TD_SPLIT_CONTIGUOUS,
} td_split_behavior;

/* A token produced for one sequence before post-processing. */
typedef struct td_tok {
    int32_t id;
    int32_t type_id;
    uint32_t s, e;   /* original byte offsets */
    int8_t special;  /* special_tokens_mask */
    int8_t seq;      /* 0, 1, or -1 for specials/padding */
    int8_t attn;
    const char *str; /* owned by the tokenizer */
    uint32_t str_len;
    int32_t word;    /* index of the pre-tokenizer split within its sequence; -1 for specials/padding */
} td_tok;

typedef struct td_tokvec {
    td_tok *v;
    size_t n, cap;
} td_tokvec;
bool td_tokvec_push(td_tokvec *tv, td_tok t);

/* Model output: (id, [s, e) within the split). */
typedef struct td_mtok {
    int32_t id;
    uint32_t s, e;
} td_mtok;

/* ---- scratch space, reused across the texts of a batch ------------------ */
typedef struct td_bpe_sym {
    int32_t id;
    uint32_t s, e;     /* byte range in the word */
    int32_t prev, next; /* linked list; -1 = none */
} td_bpe_sym;

typedef struct td_bpe_merge {
    uint32_t rank;
    int32_t pos;          /* left symbol index */
    int32_t left, right;  /* the ids the pair had when pushed (stale entries are skipped) */
} td_bpe_merge;

typedef struct td_work {
    td_nbuf nb, nb2;
    td_splits sp[3];
    td_match *m, *m2;
    size_t mcap, m2cap;
    td_xform *xf;
    size_t xfcap;
    uint32_t *cps;
    size_t cpscap;
    uint32_t *tags;
    size_t tagscap;
    pcre2_match_data *md;
    td_mtok *mt;
    size_t mtn, mtcap;
    td_bpe_sym *sym;
    size_t symcap;
    td_bpe_merge *heap;
    size_t heapcap;
    char *str;
    size_t strcap;
    struct td_lat {
        double score;
        int64_t from; /* start byte of the best piece ending here, -1 = none */
        int32_t id;
    } *lat;
    size_t latcap;
    td_tokvec seqtok[2];
    td_match *pieces; /* added-token split of the original text */
    int32_t *piece_ids;
    size_t piecescap, piece_idscap;
    int32_t *ids2; /* added-token ids of matches in normalized text */
    size_t ids2cap;
} td_work;

void td_work_free(td_work *w);

/* ---- vocabulary --------------------------------------------------------- */
typedef struct td_vocab {
    char **tok;   /* id -> NUL-terminated string (NULL for holes); strings owned here */
    uint32_t *toklen;
    size_t n;     /* ids are 0..n-1 */
    td_strmap map;
} td_vocab;
/* Add token with id (copied). Fails on duplicate id with a different token. */
td_status td_vocab_set(td_ctx *ctx, td_vocab *v, const char *tok, size_t len, size_t id, const char *where);
void td_vocab_free(td_vocab *v);

/* ---- normalizers -------------------------------------------------------- */
typedef enum td_norm_type {
    TD_NORM_BERT,
    TD_NORM_NFC,
    TD_NORM_NFD,
    TD_NORM_NFKC,
    TD_NORM_NFKD,
    TD_NORM_LOWERCASE,
    TD_NORM_STRIP_ACCENTS,
    TD_NORM_REPLACE,
    TD_NORM_PREPEND,
    TD_NORM_STRIP,
    TD_NORM_PRECOMPILED,
    TD_NORM_SEQUENCE,
} td_norm_type;

typedef struct td_normalizer {
    td_norm_type type;
    /* Bert */
    bool clean_text, handle_chinese, strip_accents, lowercase;
    /* Replace: literal pattern (pat) or regex (re); content */
    char *pat, *content;
    size_t pat_len, content_len;
    pcre2_code *re;
    /* Prepend */
    char *prepend;
    /* Strip */
    bool strip_left, strip_right;
    /* Precompiled */
    uint32_t *trie;
    size_t trie_units;
    char *norm_table;
    size_t norm_len;
    /* Sequence */
    struct td_normalizer **kids;
    size_t n_kids;
} td_normalizer;

td_status td_normalizer_parse(td_ctx *ctx, const cJSON *j, td_normalizer **out);
void td_normalizer_free(td_normalizer *n);
/* Normalize b in place (w supplies scratch). */
td_status td_normalizer_apply(td_ctx *ctx, const td_normalizer *n, td_work *w, td_nbuf *b);
/* HF NormalizedString::transform over the whole buffer: rebuild b from the (char, change) list. */
td_status td_nbuf_transform(td_ctx *ctx, td_nbuf *b, td_nbuf *scratch, const td_xform *xf, size_t n,
                            size_t initial_offset);
/* Precompiled charsmap */
td_status td_precompiled_parse(td_ctx *ctx, td_normalizer *n, const char *b64);
td_status td_precompiled_apply(td_ctx *ctx, const td_normalizer *n, td_work *w, td_nbuf *b);

/* ---- pre-tokenizers ----------------------------------------------------- */
typedef enum td_pt_type {
    TD_PT_BERT,
    TD_PT_BYTELEVEL,
    TD_PT_METASPACE,
    TD_PT_WHITESPACE,
    TD_PT_WHITESPACE_SPLIT,
    TD_PT_PUNCTUATION,
    TD_PT_DIGITS,
    TD_PT_SPLIT,
    TD_PT_SEQUENCE,
} td_pt_type;

enum { TD_PREPEND_ALWAYS, TD_PREPEND_FIRST, TD_PREPEND_NEVER };

typedef struct td_pretok {
    td_pt_type type;
    td_split_behavior behavior;
    bool add_prefix_space, use_regex, trim_offsets; /* ByteLevel */
    uint32_t replacement;                           /* Metaspace */
    int prepend_scheme;
    bool split;
    bool individual_digits;
    bool invert;
    char *pat; /* Split string pattern */
    size_t pat_len;
    pcre2_code *re; /* Split regex / Whitespace / ByteLevel */
    struct td_pretok **kids;
    size_t n_kids;
} td_pretok;

td_status td_pretok_parse(td_ctx *ctx, const cJSON *j, td_pretok **out);
void td_pretok_free(td_pretok *p);
/* Pre-tokenize: *io holds the splits; result replaces it (w->sp are scratch). */
td_status td_pretok_apply(td_ctx *ctx, const td_pretok *p, td_work *w, td_splits **io);

/* Shared split helpers (pretokenizer.c) */
td_status td_regex_compile(td_ctx *ctx, const char *pat, size_t len, bool literal, pcre2_code **out,
                           const char *where);
td_status td_regex_find(td_ctx *ctx, const pcre2_code *re, td_work *w, const char *t, size_t n, td_match **m,
                        size_t *cap, size_t *count);
/* Apply behavior to matches in place; returns new count. */
size_t td_split_apply_behavior(td_match *m, size_t n, td_split_behavior b);

/* ByteLevel byte <-> char map */
typedef struct td_bytelevel_map {
    char enc[256][4];
    uint8_t enc_len[256];
    int16_t dec[512]; /* code point -> byte, -1 */
} td_bytelevel_map;
const td_bytelevel_map *td_bytelevel(void);

/* ---- models ------------------------------------------------------------- */
typedef enum td_tok_model_type { TD_TOK_MODEL_WORDPIECE, TD_TOK_MODEL_BPE, TD_TOK_MODEL_UNIGRAM } td_tok_model_type;

typedef struct td_tok_model {
    td_tok_model_type type;
    td_vocab vocab;
    int32_t unk_id; /* -1 = none */
    /* WordPiece */
    char *prefix; /* continuing_subword_prefix (WordPiece, BPE) */
    size_t prefix_len;
    size_t max_input_chars;
    /* BPE */
    char *suffix; /* end_of_word_suffix */
    size_t suffix_len;
    td_pairmap merges;
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_ids[256]; /* <0xXX> ids, -1 when absent */
    struct td_bpe_cache *cache; /* word -> tokens, shared by all callers (mutex inside) */
    /* Unigram */
    double *scores;
    double min_score;
    size_t max_piece_len; /* longest vocab entry in bytes (Unigram, WordPiece) */
} td_tok_model;

td_status td_tok_model_parse(td_ctx *ctx, const cJSON *j, td_tok_model **out);
void td_tok_model_free(td_tok_model *m);
/* Tokenize one split word; appends to w->mt (w->mtn is reset by the caller). */
td_status td_tok_model_tokenize(td_ctx *ctx, const td_tok_model *m, td_work *w, const char *s, size_t n);
td_status td_wordpiece_parse(td_ctx *ctx, const cJSON *j, td_tok_model *m);
td_status td_wordpiece_tokenize(td_ctx *ctx, const td_tok_model *m, td_work *w, const char *s, size_t n);
td_status td_bpe_parse(td_ctx *ctx, const cJSON *j, td_tok_model *m);
td_status td_bpe_tokenize(td_ctx *ctx, const td_tok_model *m, td_work *w, const char *s, size_t n);
void td_bpe_cache_free(struct td_bpe_cache *c);
td_status td_unigram_parse(td_ctx *ctx, const cJSON *j, td_tok_model *m);
td_status td_unigram_tokenize(td_ctx *ctx, const td_tok_model *m, td_work *w, const char *s, size_t n);
bool td_work_push_mtok(td_work *w, int32_t id, uint32_t s, uint32_t e);

/* ---- added tokens ------------------------------------------------------- */
typedef struct td_added_token {
    char *content;
    size_t len;
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} td_added_token;

typedef struct td_added_vocab {
    td_added_token *v;
    size_t n;
    /* per first byte: indexes into v sorted by length (desc), split by normalized flag */
    int32_t *by_byte[2][256];
    size_t by_byte_n[2][256];
    /* normalized forms of the normalized tokens (matched against normalized text) */
    char **norm_content;
    size_t *norm_len;
    td_strmap content_map; /* content -> index */
    int32_t *by_id;        /* id -> index into v (last definition), -1; by_id_n entries */
    size_t by_id_n;
} td_added_vocab;

td_status td_added_parse(td_ctx *ctx, const cJSON *arr, td_added_vocab *av);
/* Build the matching tables (needs the normalizer for `normalized` tokens). */
td_status td_added_build(td_ctx *ctx, td_added_vocab *av, const td_normalizer *norm, td_work *w);
void td_added_free(td_added_vocab *av);
/* Find added-token matches in t[0..n): fills w->m with (range, is_match) and
 * stores the added-token index in ... see added_tokens.c. normalized selects the set. */
td_status td_added_find(td_ctx *ctx, const td_added_vocab *av, bool normalized, const char *t, size_t n,
                        td_match **m, size_t *cap, size_t *count, int32_t **ids, size_t *idcap);
const td_added_token *td_added_by_id(const td_added_vocab *av, int64_t id);
/* The token string HF reports for an added token: its normalized form when it is a normalized token. */
const char *td_added_text(const td_added_vocab *av, const td_added_token *t);

/* ---- post-processors ---------------------------------------------------- */
typedef enum td_pp_type { TD_PP_TEMPLATE, TD_PP_BERT, TD_PP_ROBERTA, TD_PP_BYTELEVEL, TD_PP_SEQUENCE } td_pp_type;

typedef struct td_tpl_piece {
    bool is_special;
    int seq;         /* 0 = A, 1 = B (for sequences) */
    int32_t type_id;
    int32_t *ids;    /* special: ids/tokens */
    const char **toks;
    size_t n_ids;
} td_tpl_piece;

typedef struct td_postproc {
    td_pp_type type;
    td_tpl_piece *single, *pair;
    size_t n_single, n_pair;
    char **strs; /* owned token strings */
    size_t n_strs;
    int32_t cls_id, sep_id;
    const char *cls_tok, *sep_tok;
    bool trim_offsets, add_prefix_space;
    struct td_postproc **kids;
    size_t n_kids;
} td_postproc;

td_status td_postproc_parse(td_ctx *ctx, const cJSON *j, td_postproc **out);
void td_postproc_free(td_postproc *p);
size_t td_postproc_added(const td_postproc *p, bool pair);
/* Apply to the per-sequence tokens (a, b may be NULL) producing out. */
td_status td_postproc_apply(td_ctx *ctx, const td_postproc *p, td_tokvec *a, td_tokvec *b, bool add_special,
                            td_tokvec *out);
/* As td_postproc_apply; bit 0 / bit 1 of raw_types keep the type ids a / b
 * came with (0 / 1) where a TemplateProcessing Sequence piece would set its
 * own: HF's template sets the type ids of a sequence but not of the
 * overflowing windows cut from it, so those keep their original ones. */
td_status td_postproc_apply_ex(td_ctx *ctx, const td_postproc *p, td_tokvec *a, td_tokvec *b, bool add_special,
                               unsigned raw_types, td_tokvec *out);
/* Truncate a (and b) as HF truncate_encodings does; max_len already excludes the specials. */
td_status td_truncate(td_ctx *ctx, td_tokvec *a, td_tokvec *b, size_t max_len, size_t stride, td_trunc_strategy strat,
                      bool left);
/* Overflowing rows of a truncated row: full_a/full_b are the sequences before
 * truncation, kept_a/kept_b the lengths td_truncate kept (full_b NULL for a
 * single text). *rows_out (n_out post-processed, unpadded rows in HF's order)
 * is owned by the caller: free with td_overflow_free. TD_ERR_UNSUPPORTED when
 * both texts of a pair were cut or a cut text kept no tokens. */
td_status td_overflow_rows(td_ctx *ctx, const td_postproc *post, const td_tokvec *full_a, size_t kept_a,
                           const td_tokvec *full_b, size_t kept_b, const td_tok_options *o, td_tokvec **rows_out,
                           size_t *n_out);
void td_overflow_free(td_tokvec *rows, size_t n);
/* Pad tv to target length. */
bool td_pad(td_tokvec *tv, size_t target, const td_tok_options *o);

/* ---- decoders ----------------------------------------------------------- */
typedef enum td_dec_type {
    TD_DEC_WORDPIECE,
    TD_DEC_BYTELEVEL,
    TD_DEC_METASPACE,
    TD_DEC_BPE,
    TD_DEC_BYTEFALLBACK,
    TD_DEC_FUSE,
    TD_DEC_STRIP,
    TD_DEC_REPLACE,
    TD_DEC_SEQUENCE,
} td_dec_type;

typedef struct td_decoder {
    td_dec_type type;
    char *prefix; /* WordPiece prefix, BPE suffix */
    bool cleanup;
    uint32_t replacement;
    int prepend_scheme;
    uint32_t strip_content;
    size_t strip_start, strip_stop;
    char *pat, *content; /* Replace */
    pcre2_code *re;
    struct td_decoder **kids;
    size_t n_kids;
} td_decoder;

/* A list of owned strings being decoded. */
typedef struct td_strlist {
    char **s;
    size_t *len;
    size_t n, cap;
} td_strlist;
bool td_strlist_push(td_strlist *l, const char *s, size_t n);
void td_strlist_free(td_strlist *l);

td_status td_decoder_parse(td_ctx *ctx, const cJSON *j, td_decoder **out);
void td_decoder_free(td_decoder *d);
/* decode_chain: transform the token list in place. */
td_status td_decoder_chain(td_ctx *ctx, const td_decoder *d, td_strlist *l);

/* ---- the tokenizer ------------------------------------------------------ */
struct td_tokenizer {
    td_normalizer *normalizer;
    td_pretok *pretok;
    td_tok_model *model;
    td_postproc *post;
    td_decoder *decoder;
    td_added_vocab added;
    td_tok_options defaults;
    char *pad_token_owned;
};

/* JSON helpers (tokenizer.c) */
const cJSON *td_json_get(const cJSON *obj, const char *key); /* NULL when missing or JSON null */
td_status td_json_bool(td_ctx *ctx, const cJSON *obj, const char *key, bool dflt, bool *out, const char *where);
td_status td_json_str(td_ctx *ctx, const cJSON *obj, const char *key, const char **out, const char *where);
td_status td_json_size(td_ctx *ctx, const cJSON *obj, const char *key, size_t max, size_t *out,
                       const char *where);

#endif
