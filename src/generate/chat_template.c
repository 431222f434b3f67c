/* A Jinja subset for chat templates (see chat_template.h): the template is cut
 * into text/expression/statement pieces (whitespace control, trim_blocks and
 * lstrip_blocks applied there), parsed into a tree, and evaluated over values
 * held in one arena that is freed after the render. */
#define _GNU_SOURCE
#include "generate/chat_template.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---------------- arena ---------------- */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
} chunk;

typedef struct rt {
    td_ctx *ctx;
    chunk *mem;
    td_status st;         /* first error; everything stops once set */
    char *out;            /* rendered text */
    size_t out_len, out_cap;
    int depth;            /* parser recursion (expressions) */
    int blocks;           /* nesting of if/for blocks while parsing */
    int eval_depth;       /* evaluator recursion */
    uint64_t steps;       /* statements run + expression nodes evaluated */
    size_t arena_bytes;   /* sum of the arena's chunks */
    bool over_limit;      /* an allocation was refused by MAX_ARENA_BYTES */
} rt;

/* A template comes from a model file, so it is hostile input like any other: the
 * parser and the evaluator recurse at most this deep, a render does at most
 * MAX_STEPS units of work, and its values and output stay under these sizes.
 * Real chat templates are far below every one (a few dozen nodes per message). */
#define MAX_EXPR_DEPTH 64
#define MAX_BLOCK_DEPTH 64
#define MAX_EVAL_DEPTH 256
#define MAX_STEPS 20000000ull
#define MAX_ARENA_BYTES (256ull << 20)
#define MAX_OUTPUT_BYTES (64ull << 20)

static void *alloc(rt *r, size_t n) {
    if (n > MAX_ARENA_BYTES) {
        r->over_limit = true;
        return NULL;
    }
    n = (n + 15) & ~(size_t)15;
    if (!r->mem || r->mem->cap - r->mem->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (r->arena_bytes + cap > MAX_ARENA_BYTES) {
            r->over_limit = true;
            return NULL;
        }
        r->arena_bytes += cap;
        chunk *c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = r->mem;
        c->used = 0;
        c->cap = cap;
        r->mem = c;
    }
    void *p = r->mem->data + r->mem->used;
    r->mem->used += n;
    memset(p, 0, n);
    return p;
}

static td_status fail(rt *r, td_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static td_status fail(rt *r, td_status code, const char *fmt, ...) {
    if (r->st != TD_OK)
        return r->st;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->st = td_fail(r->ctx, code, "chat template: %s", msg);
    return r->st;
}

static void oom(rt *r) {
    if (r->over_limit)
        fail(r, TD_ERR_UNSUPPORTED, "the template's values grow past %llu MiB", MAX_ARENA_BYTES >> 20);
    else
        fail(r, TD_ERR_OUT_OF_MEMORY, "out of memory");
}

/* ---------------- values ---------------- */

typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_STR, V_LIST, V_DICT } vkind;

typedef struct val {
    vkind k;
    int64_t i;              /* V_BOOL, V_INT */
    const char *s;          /* V_STR (arena, NUL-terminated) */
    size_t len;
    const struct val *items; /* V_LIST, V_DICT values */
    const char **keys;       /* V_DICT */
    size_t n;
} val;

static val undef(void) { return (val){.k = V_UNDEF}; }
static val vint(int64_t i) { return (val){.k = V_INT, .i = i}; }
static val vbool(bool b) { return (val){.k = V_BOOL, .i = b}; }

static val vstr_n(rt *r, const char *s, size_t n) {
    char *c = alloc(r, n + 1);
    if (!c) {
        oom(r);
        return undef();
    }
    if (n)
        memcpy(c, s, n);
    c[n] = 0;
    return (val){.k = V_STR, .s = c, .len = n};
}

static val vstr(rt *r, const char *s) { return vstr_n(r, s ? s : "", s ? strlen(s) : 0); }

static bool truthy(val v) {
    switch (v.k) {
    case V_BOOL:
    case V_INT: return v.i != 0;
    case V_STR: return v.len > 0;
    case V_LIST:
    case V_DICT: return v.n > 0;
    default: return false;
    }
}

static const char *kind_name(vkind k) {
    static const char *n[] = {"undefined", "none", "bool", "int", "string", "list", "dict"};
    return n[k];
}

/* Python's str() of a value, as {{ }} prints it */
static val to_str(rt *r, val v) {
    char buf[32];
    switch (v.k) {
    case V_STR: return v;
    case V_UNDEF: return vstr(r, "");
    case V_NONE: return vstr(r, "None");
    case V_BOOL: return vstr(r, v.i ? "True" : "False");
    case V_INT: snprintf(buf, sizeof buf, "%lld", (long long)v.i); return vstr(r, buf);
    default: fail(r, TD_ERR_UNSUPPORTED, "printing a %s is not supported", kind_name(v.k)); return undef();
    }
}

static bool equal(val a, val b) {
    if ((a.k == V_INT || a.k == V_BOOL) && (b.k == V_INT || b.k == V_BOOL))
        return a.i == b.i;
    if (a.k != b.k)
        return false;
    if (a.k == V_STR)
        return a.len == b.len && !memcmp(a.s, b.s, a.len);
    return a.k == V_NONE || a.k == V_UNDEF;
}

/* ---------------- pieces ---------------- */

typedef enum { P_TEXT, P_EXPR, P_STMT } pkind;

typedef struct piece {
    pkind k;
    const char *s;
    size_t len;
    int line;
} piece;

typedef struct pieces {
    piece *v;
    size_t n, cap;
} pieces;

static bool push(rt *r, pieces *p, pkind k, const char *s, size_t len, int line) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        piece *nv = realloc(p->v, cap * sizeof *nv);
        if (!nv) {
            oom(r);
            return false;
        }
        p->v = nv;
        p->cap = cap;
    }
    p->v[p->n++] = (piece){k, s, len, line};
    return true;
}

/* Line numbers for messages, counted incrementally: split asks in increasing order, so the whole template is
 * scanned once (counting from the start for every piece made a template of many tags quadratic). */
typedef struct liner {
    const char *base, *pos;
    int line;
} liner;

static int line_of(liner *l, const char *p) {
    if (p < l->pos) {
        l->pos = l->base;
        l->line = 1;
    }
    for (; l->pos < p; l->pos++)
        l->line += *l->pos == '\n';
    return l->line;
}

/* End of a tag body: the closing "}}" / "%}" / "#}" outside string literals. */
static const char *tag_end(const char *p, char close) {
    char quote = 0;
    for (; *p; p++) {
        if (quote) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == quote)
                quote = 0;
        } else if (close != '#' && (*p == '\'' || *p == '"')) {
            quote = *p;
        } else if (*p == close && p[1] == '}') {
            return p;
        }
    }
    return NULL;
}

/* Cut the template into pieces, applying {%- -%} and jinja2's trim_blocks + lstrip_blocks. */
static bool split(rt *r, const char *t, pieces *out) {
    const char *p = t;
    liner ln = {t, t, 1};
    bool strip_next = false, trim_nl = false;
    while (*p) {
        const char *open = p;
        while (*open && !(open[0] == '{' && (open[1] == '{' || open[1] == '%' || open[1] == '#')))
            open++;
        const char *ts = p, *te = open;
        if (strip_next)
            while (ts < te && isspace((unsigned char)*ts))
                ts++;
        else if (trim_nl && ts < te && *ts == '\n')
            ts++;
        else if (trim_nl && ts + 1 < te && ts[0] == '\r' && ts[1] == '\n')
            ts += 2;
        strip_next = trim_nl = false;
        if (!*open) {
            if (te > ts && !push(r, out, P_TEXT, ts, (size_t)(te - ts), line_of(&ln, ts)))
                return false;
            break;
        }
        char kind = open[1];
        const char *body = open + 2;
        bool minus_left = *body == '-', plus_left = *body == '+';
        if (minus_left || plus_left)
            body++;
        if (minus_left) {
            while (te > ts && isspace((unsigned char)te[-1]))
                te--;
        } else if (kind != '{' && !plus_left) {
            /* lstrip_blocks: spaces and tabs between the line start (in the source) and a block tag go */
            const char *q = open;
            while (q > t && (q[-1] == ' ' || q[-1] == '\t'))
                q--;
            if ((q == t || q[-1] == '\n') && q < te)
                te = q > ts ? q : ts;
        }
        if (te > ts && !push(r, out, P_TEXT, ts, (size_t)(te - ts), line_of(&ln, ts)))
            return false;
        char close = kind == '{' ? '}' : kind;
        const char *end = tag_end(body, close);
        if (!end) {
            fail(r, TD_ERR_FORMAT, "line %d: unclosed %c%c tag", line_of(&ln, open), '{', kind);
            return false;
        }
        const char *be = end;
        bool minus_right = be > body && be[-1] == '-';
        if (minus_right)
            be--;
        if (kind != '#' && !push(r, out, kind == '{' ? P_EXPR : P_STMT, body, (size_t)(be - body), line_of(&ln, open)))
            return false;
        p = end + 2;
        strip_next = minus_right;
        trim_nl = !minus_right && kind != '{'; /* trim_blocks: one newline after a block tag or comment */
    }
    return true;
}

/* ---------------- expressions ---------------- */

typedef enum {
    E_LIT, E_NAME, E_ATTR, E_ITEM, E_CALL, E_FILTER, E_TEST, E_BIN, E_NOT, E_NEG, E_COND, E_LIST, E_SLICE
} ekind;

typedef struct expr {
    ekind k;
    val lit;                /* E_LIT */
    const char *name;       /* E_NAME, E_ATTR, E_CALL, E_FILTER, E_TEST */
    char op[3];             /* E_BIN: "+", "==", "an" (and), "or", "in", "ni" (not in), ... */
    bool negate;            /* E_TEST: is not */
    struct expr *a, *b, *c; /* operands; E_COND: a if b else c; E_SLICE: a[b:c] (b, c may be NULL);
                             * E_CALL: a is the object of a method call (NULL for a function) */
    struct expr **args;     /* E_CALL, E_FILTER, E_LIST */
    size_t n_args;
} expr;

typedef struct lexer {
    rt *r;
    const char *p, *end;
    int line;
} lexer;

static void skip_ws(lexer *lx) {
    while (lx->p < lx->end && isspace((unsigned char)*lx->p))
        lx->p++;
}

static bool at_word(lexer *lx, const char *w) {
    skip_ws(lx);
    size_t n = strlen(w);
    return (size_t)(lx->end - lx->p) >= n && !memcmp(lx->p, w, n) &&
           (lx->p + n == lx->end || !(isalnum((unsigned char)lx->p[n]) || lx->p[n] == '_'));
}

static bool eat_word(lexer *lx, const char *w) {
    if (!at_word(lx, w))
        return false;
    lx->p += strlen(w);
    return true;
}

static bool eat(lexer *lx, const char *sym) {
    skip_ws(lx);
    size_t n = strlen(sym);
    if ((size_t)(lx->end - lx->p) >= n && !memcmp(lx->p, sym, n)) {
        lx->p += n;
        return true;
    }
    return false;
}

static const char *ident(lexer *lx) {
    skip_ws(lx);
    const char *s = lx->p;
    if (s >= lx->end || !(isalpha((unsigned char)*s) || *s == '_'))
        return NULL;
    while (lx->p < lx->end && (isalnum((unsigned char)*lx->p) || *lx->p == '_'))
        lx->p++;
    char *id = alloc(lx->r, (size_t)(lx->p - s) + 1);
    if (!id) {
        oom(lx->r);
        return NULL;
    }
    memcpy(id, s, (size_t)(lx->p - s));
    return id;
}

static expr *node(lexer *lx, ekind k) {
    expr *e = alloc(lx->r, sizeof *e);
    if (!e)
        oom(lx->r);
    else
        e->k = k;
    return e;
}

static expr *syntax(lexer *lx, const char *what) {
    int n = (int)(lx->end - lx->p > 24 ? 24 : lx->end - lx->p);
    fail(lx->r, TD_ERR_UNSUPPORTED, "line %d: %s at \"%.*s\" (not in the supported Jinja subset)", lx->line, what, n,
         lx->p);
    return NULL;
}

static expr *parse_expr(lexer *lx);

static expr *string_lit(lexer *lx) {
    char q = *lx->p++;
    size_t cap = (size_t)(lx->end - lx->p) + 1, n = 0;
    char *buf = alloc(lx->r, cap);
    if (!buf) {
        oom(lx->r);
        return NULL;
    }
    while (lx->p < lx->end && *lx->p != q) {
        char c = *lx->p++;
        if (c == '\\' && lx->p < lx->end) {
            char e = *lx->p++;
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e; /* \\ \' \" as themselves */
        }
        buf[n++] = c;
    }
    if (lx->p >= lx->end)
        return syntax(lx, "unterminated string");
    lx->p++;
    expr *e = node(lx, E_LIT);
    if (e)
        e->lit = (val){.k = V_STR, .s = buf, .len = n};
    return e;
}

static bool parse_args(lexer *lx, expr *e, const char *close) {
    expr *tmp[16];
    size_t n = 0;
    if (!eat(lx, close)) {
        do {
            if (n == 16) {
                syntax(lx, "more than 16 arguments");
                return false;
            }
            if (!(tmp[n++] = parse_expr(lx)))
                return false;
        } while (eat(lx, ","));
        if (!eat(lx, close)) {
            syntax(lx, "expected a closing bracket");
            return false;
        }
    }
    e->args = alloc(lx->r, (n ? n : 1) * sizeof *e->args);
    if (!e->args) {
        oom(lx->r);
        return false;
    }
    memcpy(e->args, tmp, n * sizeof *tmp);
    e->n_args = n;
    return true;
}

static expr *primary(lexer *lx) {
    skip_ws(lx);
    if (lx->p >= lx->end)
        return syntax(lx, "expression expected");
    char c = *lx->p;
    if (c == '\'' || c == '"')
        return string_lit(lx);
    if (isdigit((unsigned char)c)) {
        int64_t v = 0;
        while (lx->p < lx->end && isdigit((unsigned char)*lx->p))
            if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *lx->p++ - '0', &v))
                return syntax(lx, "integer literal larger than 64 bits");
        expr *e = node(lx, E_LIT);
        if (e)
            e->lit = vint(v);
        return e;
    }
    if (eat(lx, "(")) {
        expr *e = parse_expr(lx);
        return e && eat(lx, ")") ? e : syntax(lx, "expected )");
    }
    if (eat(lx, "[")) {
        expr *e = node(lx, E_LIST);
        return e && parse_args(lx, e, "]") ? e : NULL;
    }
    const char *id = ident(lx);
    if (!id)
        return syntax(lx, "unexpected character");
    expr *e = node(lx, E_LIT);
    if (!e)
        return NULL;
    if (!strcmp(id, "true") || !strcmp(id, "True"))
        e->lit = vbool(true);
    else if (!strcmp(id, "false") || !strcmp(id, "False"))
        e->lit = vbool(false);
    else if (!strcmp(id, "none") || !strcmp(id, "None"))
        e->lit = (val){.k = V_NONE};
    else {
        e->k = E_NAME;
        e->name = id;
    }
    return e;
}

static bool at(lexer *lx, char c) {
    skip_ws(lx);
    return lx->p < lx->end && *lx->p == c;
}

static bool is_method(const char *name) {
    static const char *const m[] = {"strip", "lstrip", "rstrip", "upper", "lower", "startswith", "endswith"};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (!strcmp(name, m[i]))
            return true;
    return false;
}

static expr *postfix(lexer *lx) {
    expr *e = primary(lx);
    while (e) {
        if (eat(lx, ".")) {
            expr *a = node(lx, E_ATTR);
            if (!a || !(a->name = ident(lx)))
                return a ? syntax(lx, "attribute name expected") : NULL;
            a->a = e;
            e = a;
        } else if (eat(lx, "[")) {
            /* x[i] or x[start:stop] (either bound may be left out); a step is refused */
            expr *a = node(lx, E_ITEM);
            if (!a || (!at(lx, ':') && !(a->b = parse_expr(lx))))
                return NULL;
            if (eat(lx, ":")) {
                a->k = E_SLICE;
                if (!at(lx, ']') && !at(lx, ':') && !(a->c = parse_expr(lx)))
                    return NULL;
                if (at(lx, ':'))
                    return syntax(lx, "slice steps are not supported");
            }
            if (!eat(lx, "]"))
                return syntax(lx, "expected ]");
            a->a = e;
            e = a;
        } else if (e->k == E_ATTR && at(lx, '(')) {
            /* a string method: Python's str.strip(), .startswith(x), ... */
            if (!is_method(e->name)) {
                fail(lx->r, TD_ERR_UNSUPPORTED, "line %d: method .%s() is not in the supported Jinja subset (strip, "
                     "lstrip, rstrip, upper, lower, startswith, endswith)", lx->line, e->name);
                return NULL;
            }
            eat(lx, "(");
            e->k = E_CALL;
            if (!parse_args(lx, e, ")"))
                return NULL;
        } else if (eat(lx, "(")) {
            if (e->k != E_NAME || strcmp(e->name, "raise_exception") != 0) {
                fail(lx->r, TD_ERR_UNSUPPORTED, "line %d: calling %s is not in the supported Jinja subset (only "
                     "raise_exception)", lx->line, e->k == E_NAME ? e->name : "an expression");
                return NULL;
            }
            e->k = E_CALL;
            if (!parse_args(lx, e, ")"))
                return NULL;
        } else if (eat(lx, "|")) {
            expr *f = node(lx, E_FILTER);
            if (!f || !(f->name = ident(lx)))
                return f ? syntax(lx, "filter name expected") : NULL;
            f->a = e;
            if (eat(lx, "(") && !parse_args(lx, f, ")"))
                return NULL;
            e = f;
        } else if (at_word(lx, "is")) {
            eat_word(lx, "is");
            expr *t = node(lx, E_TEST);
            if (!t)
                return NULL;
            t->negate = eat_word(lx, "not");
            if (!(t->name = ident(lx)))
                return syntax(lx, "test name expected after 'is'");
            t->a = e;
            e = t;
        } else {
            break;
        }
    }
    return e;
}

static expr *binary(lexer *lx, expr *a, const char *op, expr *b) {
    if (!a || !b)
        return NULL;
    expr *e = node(lx, E_BIN);
    if (e) {
        snprintf(e->op, sizeof e->op, "%s", op);
        e->a = a;
        e->b = b;
    }
    return e;
}

/* Recursion guard for the parser's recursive rules (parse_expr, unary minus, not). */
static bool enter(lexer *lx) {
    if (lx->r->depth >= MAX_EXPR_DEPTH) {
        syntax(lx, "expression nested too deeply");
        return false;
    }
    lx->r->depth++;
    return true;
}

static expr *unary(lexer *lx) {
    if (eat(lx, "-")) {
        expr *e = node(lx, E_NEG);
        if (!e || !enter(lx))
            return NULL;
        e->a = unary(lx);
        lx->r->depth--;
        return e->a ? e : NULL;
    }
    return postfix(lx);
}

static expr *mul(lexer *lx) {
    expr *e = unary(lx);
    for (;;) {
        if (eat(lx, "//"))
            e = binary(lx, e, "//", unary(lx));
        else if (eat(lx, "*"))
            e = binary(lx, e, "*", unary(lx));
        else if (eat(lx, "/"))
            e = binary(lx, e, "/", unary(lx));
        else if (eat(lx, "%"))
            e = binary(lx, e, "%", unary(lx));
        else
            return e;
    }
}

static expr *add(lexer *lx) {
    expr *e = mul(lx);
    for (;;) {
        if (eat(lx, "+"))
            e = binary(lx, e, "+", mul(lx));
        else if (eat(lx, "-"))
            e = binary(lx, e, "-", mul(lx));
        else if (eat(lx, "~"))
            e = binary(lx, e, "~", mul(lx));
        else
            return e;
    }
}

static expr *compare(lexer *lx) {
    expr *e = add(lx);
    static const char *ops[] = {"==", "!=", "<=", ">=", "<", ">"};
    for (;;) {
        bool found = false;
        for (size_t i = 0; i < 6 && !found; i++)
            if (eat(lx, ops[i])) {
                e = binary(lx, e, ops[i], add(lx));
                found = true;
            }
        if (found)
            continue;
        if (eat_word(lx, "in"))
            e = binary(lx, e, "in", add(lx));
        else if (at_word(lx, "not")) {
            const char *save = lx->p;
            eat_word(lx, "not");
            if (!eat_word(lx, "in")) {
                lx->p = save;
                return e;
            }
            e = binary(lx, e, "ni", add(lx));
        } else
            return e;
    }
}

static expr *not_expr(lexer *lx) {
    if (eat_word(lx, "not")) {
        expr *e = node(lx, E_NOT);
        if (!e || !enter(lx))
            return NULL;
        e->a = not_expr(lx);
        lx->r->depth--;
        return e->a ? e : NULL;
    }
    return compare(lx);
}

static expr *and_expr(lexer *lx) {
    expr *e = not_expr(lx);
    while (e && eat_word(lx, "and"))
        e = binary(lx, e, "an", not_expr(lx));
    return e;
}

static expr *or_expr(lexer *lx) {
    expr *e = and_expr(lx);
    while (e && eat_word(lx, "or"))
        e = binary(lx, e, "or", and_expr(lx));
    return e;
}

static expr *parse_expr(lexer *lx) {
    if (!enter(lx))
        return NULL;
    expr *e = or_expr(lx);
    if (e && at_word(lx, "if")) {
        eat_word(lx, "if");
        expr *c = node(lx, E_COND);
        if (!c)
            return NULL;
        c->a = e;
        if (!(c->b = or_expr(lx)))
            return NULL;
        c->c = NULL;
        if (eat_word(lx, "else") && !(c->c = parse_expr(lx)))
            return NULL;
        e = c;
    }
    lx->r->depth--;
    return e;
}

/* ---------------- statements ---------------- */

typedef enum { S_TEXT, S_OUT, S_IF, S_FOR, S_SET } skind;

typedef struct stmt {
    skind k;
    const char *text;     /* S_TEXT */
    size_t len;
    expr *e;              /* S_OUT, S_IF condition, S_FOR iterable, S_SET value */
    const char *name;     /* S_FOR variable, S_SET name */
    struct stmt *body;    /* S_IF then, S_FOR body (linked lists) */
    struct stmt *orelse;  /* S_IF elif/else chain (an S_IF or a list) */
    struct stmt *next;
    int line;
} stmt;

typedef struct parser {
    rt *r;
    pieces *ps;
    size_t i;
} parser;

/* The statement keyword of piece i ("endif", ...) and a lexer after it. */
static const char *keyword(parser *pr, size_t i, lexer *lx) {
    piece *p = &pr->ps->v[i];
    *lx = (lexer){pr->r, p->s, p->s + p->len, p->line};
    const char *save = lx->p;
    const char *w = ident(lx);
    if (!w)
        lx->p = save;
    return w ? w : "";
}

static stmt *parse_block(parser *pr, const char *const *stops, const char **stopped);

static stmt *new_stmt(parser *pr, skind k, int line) {
    stmt *s = alloc(pr->r, sizeof *s);
    if (!s)
        oom(pr->r);
    else {
        s->k = k;
        s->line = line;
    }
    return s;
}

static bool done_expr(lexer *lx) {
    skip_ws(lx);
    if (lx->p != lx->end) {
        syntax(lx, "unexpected text after the expression");
        return false;
    }
    return true;
}

static stmt *parse_if(parser *pr, lexer *lx, int line) {
    stmt *s = new_stmt(pr, S_IF, line);
    if (!s || !(s->e = parse_expr(lx)) || !done_expr(lx))
        return NULL;
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    const char *stopped = NULL;
    s->body = parse_block(pr, stops, &stopped);
    if (pr->r->st != TD_OK)
        return NULL;
    if (!stopped) {
        fail(pr->r, TD_ERR_FORMAT, "line %d: {%% if %%} without {%% endif %%}", line);
        return NULL;
    }
    lexer l2;
    keyword(pr, pr->i - 1, &l2);
    if (!strcmp(stopped, "elif")) {
        /* an elif is an if nested in the else: it counts as a level, or a long chain would exhaust the stack */
        if (pr->r->blocks >= MAX_BLOCK_DEPTH) {
            fail(pr->r, TD_ERR_UNSUPPORTED, "line %d: blocks nested (or elif chained) more than %d deep",
                 pr->ps->v[pr->i - 1].line, MAX_BLOCK_DEPTH);
            return NULL;
        }
        pr->r->blocks++;
        s->orelse = parse_if(pr, &l2, pr->ps->v[pr->i - 1].line);
        pr->r->blocks--;
    }
    else if (!strcmp(stopped, "else")) {
        static const char *const end[] = {"endif", NULL};
        s->orelse = parse_block(pr, end, &stopped);
        if (pr->r->st == TD_OK && !stopped)
            fail(pr->r, TD_ERR_FORMAT, "line %d: {%% else %%} without {%% endif %%}", line);
    }
    return pr->r->st == TD_OK ? s : NULL;
}

static stmt *parse_block_in(parser *pr, const char *const *stops, const char **stopped);

/* Statements until a piece whose keyword is in stops (consumed; *stopped names it) or the end. */
static stmt *parse_block(parser *pr, const char *const *stops, const char **stopped) {
    *stopped = NULL;
    if (pr->r->blocks >= MAX_BLOCK_DEPTH) {
        piece *p = &pr->ps->v[pr->i < pr->ps->n ? pr->i : pr->ps->n - 1];
        fail(pr->r, TD_ERR_UNSUPPORTED, "line %d: blocks nested (or elif chained) more than %d deep", p->line,
             MAX_BLOCK_DEPTH);
        return NULL;
    }
    pr->r->blocks++;
    stmt *s = parse_block_in(pr, stops, stopped);
    pr->r->blocks--;
    return s;
}

static stmt *parse_block_in(parser *pr, const char *const *stops, const char **stopped) {
    stmt *head = NULL, **tail = &head;
    while (pr->i < pr->ps->n && pr->r->st == TD_OK) {
        piece *p = &pr->ps->v[pr->i];
        stmt *s = NULL;
        if (p->k == P_TEXT) {
            s = new_stmt(pr, S_TEXT, p->line);
            if (s) {
                s->text = p->s;
                s->len = p->len;
            }
            pr->i++;
        } else if (p->k == P_EXPR) {
            lexer lx = {pr->r, p->s, p->s + p->len, p->line};
            s = new_stmt(pr, S_OUT, p->line);
            if (s && (!(s->e = parse_expr(&lx)) || !done_expr(&lx)))
                return NULL;
            pr->i++;
        } else {
            lexer lx;
            const char *kw = keyword(pr, pr->i, &lx);
            for (size_t k = 0; stops && stops[k]; k++)
                if (!strcmp(kw, stops[k])) {
                    *stopped = stops[k];
                    pr->i++;
                    return head;
                }
            pr->i++;
            if (!strcmp(kw, "if")) {
                s = parse_if(pr, &lx, p->line);
            } else if (!strcmp(kw, "for")) {
                s = new_stmt(pr, S_FOR, p->line);
                if (!s || !(s->name = ident(&lx)))
                    return s ? (stmt *)syntax(&lx, "loop variable expected") : NULL;
                if (!eat_word(&lx, "in"))
                    return (stmt *)syntax(&lx, "only `for NAME in EXPR` is supported");
                if (!(s->e = parse_expr(&lx)) || !done_expr(&lx))
                    return NULL;
                static const char *const end[] = {"endfor", NULL};
                const char *st2 = NULL;
                s->body = parse_block(pr, end, &st2);
                if (pr->r->st == TD_OK && !st2)
                    fail(pr->r, TD_ERR_FORMAT, "line %d: {%% for %%} without {%% endfor %%}", p->line);
            } else if (!strcmp(kw, "set")) {
                s = new_stmt(pr, S_SET, p->line);
                if (!s || !(s->name = ident(&lx)))
                    return s ? (stmt *)syntax(&lx, "variable name expected") : NULL;
                if (!eat(&lx, "="))
                    return (stmt *)syntax(&lx, "only `set NAME = EXPR` is supported");
                if (!(s->e = parse_expr(&lx)) || !done_expr(&lx))
                    return NULL;
            } else {
                fail(pr->r, TD_ERR_UNSUPPORTED, "line %d: {%% %s %%} is not in the supported Jinja subset (if, for, "
                     "set)", p->line, *kw ? kw : "?");
                return NULL;
            }
        }
        if (!s)
            return NULL;
        *tail = s;
        tail = &s->next;
    }
    return head;
}

/* ---------------- evaluation ---------------- */

typedef struct var {
    const char *name;
    val v;
} var;

typedef struct scope {
    var vars[64];
    size_t n;
    struct scope *up;
} scope;

static val lookup(const scope *sc, const char *name) {
    for (; sc; sc = sc->up)
        for (size_t i = sc->n; i-- > 0;)
            if (!strcmp(sc->vars[i].name, name))
                return sc->vars[i].v;
    return undef();
}

static void assign(rt *r, scope *sc, const char *name, val v) {
    for (size_t i = 0; i < sc->n; i++)
        if (!strcmp(sc->vars[i].name, name)) {
            sc->vars[i].v = v;
            return;
        }
    if (sc->n == 64) {
        fail(r, TD_ERR_UNSUPPORTED, "more than 64 variables in one scope");
        return;
    }
    sc->vars[sc->n++] = (var){name, v};
}

static val eval(rt *r, const expr *e, scope *sc);

static val str_concat(rt *r, val a, val b) {
    char *c = alloc(r, a.len + b.len + 1);
    if (!c) {
        oom(r);
        return undef();
    }
    if (a.len) /* a failed to_str gives no string at all (NULL, 0) */
        memcpy(c, a.s, a.len);
    if (b.len)
        memcpy(c + a.len, b.s, b.len);
    c[a.len + b.len] = 0;
    return (val){.k = V_STR, .s = c, .len = a.len + b.len};
}

static val member(rt *r, val obj, val key) {
    if (obj.k == V_DICT && key.k == V_STR) {
        for (size_t i = 0; i < obj.n; i++)
            if (!strcmp(obj.keys[i], key.s))
                return obj.items[i];
        return undef();
    }
    if (obj.k == V_LIST && (key.k == V_INT)) {
        int64_t i = key.i < 0 ? key.i + (int64_t)obj.n : key.i;
        if (i < 0 || i >= (int64_t)obj.n)
            return undef();
        return obj.items[i];
    }
    if (obj.k == V_UNDEF) {
        fail(r, TD_ERR_INVALID_ARGUMENT, "attribute or item of an undefined value");
        return undef();
    }
    return undef();
}

static val binop(rt *r, const char *op, val a, val b) {
    if (!strcmp(op, "=="))
        return vbool(equal(a, b));
    if (!strcmp(op, "!="))
        return vbool(!equal(a, b));
    if (!strcmp(op, "~"))
        return str_concat(r, to_str(r, a), to_str(r, b));
    if (!strcmp(op, "in") || !strcmp(op, "ni")) {
        bool found = false;
        if (b.k == V_STR && a.k == V_STR)
            found = a.len == 0 || memmem(b.s, b.len, a.s, a.len) != NULL;
        else if (b.k == V_LIST)
            for (size_t i = 0; i < b.n && !found; i++)
                found = equal(a, b.items[i]);
        else if (b.k == V_DICT && a.k == V_STR)
            for (size_t i = 0; i < b.n && !found; i++)
                found = !strcmp(b.keys[i], a.s);
        else
            fail(r, TD_ERR_UNSUPPORTED, "'in' on a %s", kind_name(b.k));
        return vbool(op[0] == 'i' ? found : !found);
    }
    if (!strcmp(op, "+") && a.k == V_STR && b.k == V_STR)
        return str_concat(r, a, b);
    bool ints = (a.k == V_INT || a.k == V_BOOL) && (b.k == V_INT || b.k == V_BOOL);
    if (a.k == V_STR && b.k == V_STR && (op[0] == '<' || op[0] == '>')) {
        int c = strcmp(a.s, b.s);
        return vbool(!strcmp(op, "<") ? c < 0 : !strcmp(op, ">") ? c > 0 : !strcmp(op, "<=") ? c <= 0 : c >= 0);
    }
    if (!ints) {
        fail(r, TD_ERR_INVALID_ARGUMENT, "operator %s on %s and %s", op, kind_name(a.k), kind_name(b.k));
        return undef();
    }
    int64_t x = a.i, y = b.i, z = 0;
    /* Python integers do not overflow; 64 bits are plenty for a chat template, so leaving them is an error */
    if ((!strcmp(op, "+") && __builtin_add_overflow(x, y, &z)) || (!strcmp(op, "-") && __builtin_sub_overflow(x, y, &z)) ||
        (!strcmp(op, "*") && __builtin_mul_overflow(x, y, &z)) ||
        ((!strcmp(op, "%") || !strcmp(op, "//")) && x == INT64_MIN && y == -1)) {
        fail(r, TD_ERR_UNSUPPORTED, "integer overflow in %lld %s %lld (64-bit integers only)", (long long)x, op,
             (long long)y);
        return undef();
    }
    if (op[0] == '+' || op[0] == '-' || (op[0] == '*' && !op[1]))
        return vint(z);
    if (!strcmp(op, "<"))
        return vbool(x < y);
    if (!strcmp(op, ">"))
        return vbool(x > y);
    if (!strcmp(op, "<="))
        return vbool(x <= y);
    if (!strcmp(op, ">="))
        return vbool(x >= y);
    if (y == 0) {
        fail(r, TD_ERR_INVALID_ARGUMENT, "division by zero");
        return undef();
    }
    if (!strcmp(op, "%")) {
        int64_t m = x % y;
        return vint(m != 0 && ((m < 0) != (y < 0)) ? m + y : m); /* Python's modulo */
    }
    if (!strcmp(op, "//")) {
        int64_t q = x / y;
        return vint((x % y != 0 && ((x < 0) != (y < 0))) ? q - 1 : q);
    }
    fail(r, TD_ERR_UNSUPPORTED, "operator %s (true division) is not supported", op);
    return undef();
}

/* Python's str.isspace() for one code point (what str.strip() and Jinja's trim remove) */
static bool py_space(utf8proc_int32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The code point starting at byte i of s (len bytes); its length in *n (1 for a bad byte, which is no space). */
static utf8proc_int32_t cp_at(const char *s, size_t len, size_t i, size_t *n) {
    utf8proc_int32_t c = -1;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
    *n = k > 0 ? (size_t)k : 1;
    return k > 0 ? c : -1;
}

/* str.strip() / lstrip() / rstrip() without arguments */
static val py_strip(rt *r, val v, bool left, bool right) {
    v = to_str(r, v);
    if (v.k != V_STR)
        return v;
    size_t a = 0, b = v.len, n;
    while (left && a < b && py_space(cp_at(v.s, v.len, a, &n)))
        a += n;
    while (right && b > a) {
        size_t start = b - 1;
        while (start > a && ((unsigned char)v.s[start] & 0xC0) == 0x80)
            start--; /* back to the lead byte of the last code point */
        if (!py_space(cp_at(v.s, b, start, &n)) || start + n != b)
            break;
        b = start;
    }
    return vstr_n(r, v.s + a, b - a);
}

/* Number of code points (Python's len of a str); bytes that are not UTF-8 count one each. */
static size_t cp_count(const char *s, size_t len) {
    size_t count = 0, n;
    for (size_t i = 0; i < len; i += n, count++)
        cp_at(s, len, i, &n);
    return count;
}

/* Byte offset of code point k (k <= the count). */
static size_t cp_offset(const char *s, size_t len, size_t k) {
    size_t i = 0, n;
    for (; k > 0 && i < len; k--, i += n)
        cp_at(s, len, i, &n);
    return i;
}

/* Python's slice bound: None -> dflt, negative counts from the end, then clamped to [0, n]. */
static bool slice_bound(rt *r, val v, int64_t n, int64_t dflt, int64_t *out) {
    if (v.k == V_NONE || v.k == V_UNDEF) {
        *out = dflt;
        return true;
    }
    if (v.k != V_INT && v.k != V_BOOL) {
        fail(r, TD_ERR_INVALID_ARGUMENT, "slice bound is a %s, not an integer", kind_name(v.k));
        return false;
    }
    int64_t i = v.i < 0 ? (v.i < -n ? 0 : v.i + n) : v.i;
    *out = i > n ? n : i;
    return true;
}

static val slice(rt *r, val obj, val lo, val hi) {
    if (obj.k != V_LIST && obj.k != V_STR) {
        if (obj.k == V_UNDEF)
            fail(r, TD_ERR_INVALID_ARGUMENT, "slice of an undefined value");
        else
            fail(r, TD_ERR_UNSUPPORTED, "slice of a %s (only lists and strings)", kind_name(obj.k));
        return undef();
    }
    int64_t n = (int64_t)(obj.k == V_LIST ? obj.n : cp_count(obj.s, obj.len)), a, b;
    if (!slice_bound(r, lo, n, 0, &a) || !slice_bound(r, hi, n, n, &b))
        return undef();
    if (b < a)
        b = a;
    if (obj.k == V_LIST)
        return (val){.k = V_LIST, .items = obj.items + a, .n = (size_t)(b - a)};
    size_t ba = cp_offset(obj.s, obj.len, (size_t)a), bb = cp_offset(obj.s, obj.len, (size_t)b);
    return vstr_n(r, obj.s + ba, bb - ba);
}

static val case_map(rt *r, val v, bool upper) {
    /* Unicode case mapping per code point, as Python's str.upper/lower for these (utf8proc) */
    v = to_str(r, v);
    char *o = alloc(r, v.len * 4 + 1);
    if (!o) {
        oom(r);
        return undef();
    }
    size_t n = 0;
    for (size_t i = 0; i < v.len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)v.s + i, (utf8proc_ssize_t)(v.len - i), &cp);
        if (k <= 0) {
            fail(r, TD_ERR_INVALID_ARGUMENT, "invalid UTF-8 in a message");
            return undef();
        }
        cp = upper ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
        n += (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)o + n);
        i += (size_t)k;
    }
    o[n] = 0;
    return (val){.k = V_STR, .s = o, .len = n};
}


static val method(rt *r, const expr *e, val obj, scope *sc) {
    const char *m = e->name;
    bool affix = !strcmp(m, "startswith") || !strcmp(m, "endswith");
    if (obj.k != V_STR) {
        fail(r, TD_ERR_INVALID_ARGUMENT, "method .%s() of a %s (only strings have methods here)", m,
             kind_name(obj.k));
        return undef();
    }
    if (e->n_args != (affix ? 1u : 0u)) {
        fail(r, TD_ERR_UNSUPPORTED, "method .%s() with %zu arguments is not supported (%s)", m, e->n_args,
             affix ? "one string" : "none");
        return undef();
    }
    if (affix) {
        val x = eval(r, e->args[0], sc);
        if (x.k != V_STR) {
            fail(r, TD_ERR_UNSUPPORTED, "method .%s() of a %s argument (only a string)", m, kind_name(x.k));
            return undef();
        }
        if (x.len > obj.len)
            return vbool(false);
        return vbool(!memcmp(m[0] == 's' ? obj.s : obj.s + obj.len - x.len, x.s, x.len));
    }
    if (!strcmp(m, "upper") || !strcmp(m, "lower"))
        return case_map(r, obj, m[0] == 'u');
    return py_strip(r, obj, m[0] != 'r', m[0] != 'l');
}

static val filter(rt *r, const expr *e, val v, scope *sc) {
    (void)sc;
    const char *f = e->name;
    if (!strcmp(f, "trim"))
        return py_strip(r, v, true, true);
    if (!strcmp(f, "length") || !strcmp(f, "count"))
        return vint(v.k == V_STR ? (int64_t)cp_count(v.s, v.len) : (int64_t)v.n);
    if (!strcmp(f, "string"))
        return to_str(r, v);
    if (!strcmp(f, "upper") || !strcmp(f, "lower"))
        return case_map(r, v, f[0] == 'u');
    fail(r, TD_ERR_UNSUPPORTED, "filter '%s' is not in the supported Jinja subset (trim, length, string, upper, "
         "lower)", f);
    return undef();
}

static val eval_node(rt *r, const expr *e, scope *sc);

/* Every evaluation goes through here: the recursion depth (a chain like a|trim|trim|... or 1+1+1+... is a
 * deep tree) and the work budget are checked before the node is looked at. */
static val eval(rt *r, const expr *e, scope *sc) {
    if (r->st != TD_OK || !e)
        return undef();
    if (r->eval_depth >= MAX_EVAL_DEPTH) {
        fail(r, TD_ERR_UNSUPPORTED, "expression nested more than %d deep", MAX_EVAL_DEPTH);
        return undef();
    }
    if (++r->steps > MAX_STEPS) {
        fail(r, TD_ERR_UNSUPPORTED, "the template takes more than %llu steps to render (a loop bomb?)", MAX_STEPS);
        return undef();
    }
    r->eval_depth++;
    val v = eval_node(r, e, sc);
    r->eval_depth--;
    return v;
}

static val eval_node(rt *r, const expr *e, scope *sc) {
    switch (e->k) {
    case E_LIT: return e->lit;
    case E_NAME: return lookup(sc, e->name);
    case E_ATTR: return member(r, eval(r, e->a, sc), vstr(r, e->name));
    case E_ITEM: return member(r, eval(r, e->a, sc), eval(r, e->b, sc));
    case E_SLICE: {
        val obj = eval(r, e->a, sc), lo = e->b ? eval(r, e->b, sc) : (val){.k = V_NONE};
        val hi = e->c ? eval(r, e->c, sc) : (val){.k = V_NONE};
        return r->st == TD_OK ? slice(r, obj, lo, hi) : undef();
    }
    case E_NOT: return vbool(!truthy(eval(r, e->a, sc)));
    case E_NEG: {
        val v = eval(r, e->a, sc);
        if (v.k != V_INT)
            fail(r, TD_ERR_INVALID_ARGUMENT, "unary minus on a %s", kind_name(v.k));
        else if (v.i == INT64_MIN)
            fail(r, TD_ERR_UNSUPPORTED, "integer overflow in -(%lld) (64-bit integers only)", (long long)v.i);
        return r->st == TD_OK ? vint(-v.i) : undef();
    }
    case E_COND:
        if (truthy(eval(r, e->b, sc)))
            return eval(r, e->a, sc);
        return e->c ? eval(r, e->c, sc) : vstr(r, "");
    case E_BIN: {
        if (!strcmp(e->op, "an")) {
            val a = eval(r, e->a, sc);
            return truthy(a) ? eval(r, e->b, sc) : a;
        }
        if (!strcmp(e->op, "or")) {
            val a = eval(r, e->a, sc);
            return truthy(a) ? a : eval(r, e->b, sc);
        }
        val a = eval(r, e->a, sc), b = eval(r, e->b, sc);
        return binop(r, e->op, a, b);
    }
    case E_FILTER: return filter(r, e, eval(r, e->a, sc), sc);
    case E_TEST: {
        val v = eval(r, e->a, sc);
        bool res;
        if (!strcmp(e->name, "defined"))
            res = v.k != V_UNDEF;
        else if (!strcmp(e->name, "undefined"))
            res = v.k == V_UNDEF;
        else if (!strcmp(e->name, "none"))
            res = v.k == V_NONE;
        else if (!strcmp(e->name, "string"))
            res = v.k == V_STR;
        else {
            fail(r, TD_ERR_UNSUPPORTED, "test 'is %s' is not in the supported Jinja subset", e->name);
            return undef();
        }
        return vbool(res != e->negate);
    }
    case E_CALL:
        if (e->a) {
            val obj = eval(r, e->a, sc);
            return r->st == TD_OK ? method(r, e, obj, sc) : undef();
        }
        if (!strcmp(e->name, "raise_exception")) {
            val m = e->n_args ? to_str(r, eval(r, e->args[0], sc)) : vstr(r, "");
            fail(r, TD_ERR_INVALID_ARGUMENT, "the template refused the messages: %s", m.s ? m.s : "");
            return undef();
        }
        fail(r, TD_ERR_UNSUPPORTED, "function '%s' is not in the supported Jinja subset (raise_exception)", e->name);
        return undef();
    case E_LIST: {
        val *items = alloc(r, (e->n_args ? e->n_args : 1) * sizeof *items);
        if (!items) {
            oom(r);
            return undef();
        }
        for (size_t i = 0; i < e->n_args; i++)
            items[i] = eval(r, e->args[i], sc);
        return (val){.k = V_LIST, .items = items, .n = e->n_args};
    }
    }
    return undef();
}

static void emit(rt *r, const char *s, size_t n) {
    if (r->st != TD_OK)
        return;
    if (n > MAX_OUTPUT_BYTES - r->out_len) {
        fail(r, TD_ERR_UNSUPPORTED, "the rendered prompt grows past %llu MiB", MAX_OUTPUT_BYTES >> 20);
        return;
    }
    if (r->out_len + n + 1 > r->out_cap) {
        size_t cap = (r->out_len + n + 1) * 2;
        char *o = realloc(r->out, cap);
        if (!o) {
            oom(r);
            return;
        }
        r->out = o;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_len, s, n);
    r->out_len += n;
    r->out[r->out_len] = 0;
}

static void run(rt *r, const stmt *s, scope *sc) {
    for (; s && r->st == TD_OK; s = s->next) {
        if (++r->steps > MAX_STEPS) {
            fail(r, TD_ERR_UNSUPPORTED, "the template takes more than %llu steps to render (a loop bomb?)",
                 MAX_STEPS);
            return;
        }
        switch (s->k) {
        case S_TEXT: emit(r, s->text, s->len); break;
        case S_OUT: {
            val v = to_str(r, eval(r, s->e, sc));
            if (v.k == V_STR)
                emit(r, v.s, v.len);
            break;
        }
        case S_SET: assign(r, sc, s->name, eval(r, s->e, sc)); break;
        case S_IF:
            /* orelse is the else block, or for elif the S_IF parse_if built: running it is the elif */
            run(r, truthy(eval(r, s->e, sc)) ? s->body : s->orelse, sc);
            break;
        case S_FOR: {
            val it = eval(r, s->e, sc);
            if (it.k != V_LIST) {
                if (it.k != V_UNDEF)
                    fail(r, TD_ERR_UNSUPPORTED, "line %d: for over a %s (only lists)", s->line, kind_name(it.k));
                break;
            }
            static const char *loop_keys[] = {"index", "index0", "first", "last", "length", "revindex",
                                              "revindex0"};
            for (size_t i = 0; i < it.n && r->st == TD_OK; i++) {
                scope inner = {.up = sc};
                val *lv = alloc(r, 7 * sizeof *lv);
                if (!lv) {
                    oom(r);
                    break;
                }
                lv[0] = vint((int64_t)i + 1);
                lv[1] = vint((int64_t)i);
                lv[2] = vbool(i == 0);
                lv[3] = vbool(i + 1 == it.n);
                lv[4] = vint((int64_t)it.n);
                lv[5] = vint((int64_t)(it.n - i));
                lv[6] = vint((int64_t)(it.n - i - 1));
                assign(r, &inner, "loop", (val){.k = V_DICT, .items = lv, .keys = loop_keys, .n = 7});
                assign(r, &inner, s->name, it.items[i]);
                run(r, s->body, &inner);
            }
            break;
        }
        }
    }
}

td_status td_chat_render(td_ctx *ctx, const char *tmpl, const td_chat_message *messages, size_t n,
                         const td_chat_vars *vars, char **out) {
    *out = NULL;
    rt r = {.ctx = ctx, .st = TD_OK};
    pieces ps = {0};
    if (split(&r, tmpl, &ps)) {
        parser pr = {&r, &ps, 0};
        const char *stopped = NULL;
        stmt *prog = parse_block(&pr, NULL, &stopped);
        static const char *msg_keys[] = {"role", "content"};
        val *msgs = alloc(&r, (n ? n : 1) * sizeof *msgs);
        for (size_t i = 0; msgs && i < n && r.st == TD_OK; i++) {
            val *kv = alloc(&r, 2 * sizeof *kv);
            if (!kv) {
                oom(&r);
                break;
            }
            kv[0] = vstr(&r, messages[i].role);
            kv[1] = vstr(&r, messages[i].content);
            msgs[i] = (val){.k = V_DICT, .items = kv, .keys = msg_keys, .n = 2};
        }
        if (!msgs)
            oom(&r);
        scope global = {0};
        if (r.st == TD_OK) {
            assign(&r, &global, "messages", (val){.k = V_LIST, .items = msgs, .n = n});
            assign(&r, &global, "bos_token", vstr(&r, vars && vars->bos_token ? vars->bos_token : ""));
            assign(&r, &global, "eos_token", vstr(&r, vars && vars->eos_token ? vars->eos_token : ""));
            assign(&r, &global, "add_generation_prompt", vbool(vars && vars->add_generation_prompt));
            emit(&r, "", 0);
            run(&r, prog, &global);
        }
    }
    free(ps.v);
    while (r.mem) {
        chunk *c = r.mem->next;
        free(r.mem);
        r.mem = c;
    }
    if (r.st != TD_OK) {
        free(r.out);
        return r.st;
    }
    *out = r.out ? r.out : strdup("");
    return *out ? TD_OK : td_fail_oom(ctx, 1, "the chat prompt");
}
