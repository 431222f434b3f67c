/* ONNX backend node-test conformance of the CPU runtime.
 *
 * For every test case in Debian's libonnx-testdata (data/node/test_* /: model.onnx
 * plus test_data_set_N/{input,output}_K.pb TensorProtos) whose ops are all
 * implemented by the runtime (td_op_find), build a session, run every data set
 * and compare outputs the way ONNX's backend test does: |got - want| <=
 * atol + rtol * |want| with rtol 1e-3, atol 1e-7 for floats (NaN matches NaN),
 * exact equality for integers and bools, identical dtype and shape.
 *
 * Each case that passes on the cpu backend runs again on the reference backend (ref_kern.h loops,
 * which convert validates against) and must pass there too.
 *
 * A case is SKIPPED only when session creation rejects it as unsupported
 * (TD_ERR_UNSUPPORTED names the attribute value, dtype or input kind); every
 * other error and every mismatch is a FAILURE, and any failure fails the test.
 * Prints one line per non-passing case, then pass/skip/fail per op and totals.
 *
 * Pinned so that a regression cannot hide as a skip: the skipped cases must be exactly
 * expected_skips below (a new skip fails, and so does a listed case that no longer skips: take it
 * off the list), at least MIN_PASSED cases must pass and at most MAX_NOT_IMPLEMENTED cases may be
 * of ops the runtime does not register (an op dropped from the registry would move its cases there).
 * The pins hold for Debian 12's libonnx-testdata (ONNX 1.13 node tests); TD_NODE_FILTER turns them off.
 * TD_NODE_TESTS overrides the data directory; TD_NODE_FILTER=substr limits cases. */
#include "core/ctx.h"
#include "onnx.pb-c.h"
#include "onnx/load_internal.h"
#include "onnx/onnx_io.h"
#include "runtime/rt.h"
#include "tdeploy/session.h"
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DIR "/usr/share/libonnx-testdata/data/node"
#define MAX_OPS 256
#define MIN_PASSED 403
#define MAX_NOT_IMPLEMENTED 470

/* Every case the runtime skips, and why: dtypes it does not implement (double, string, 8/16-bit and
 * unsigned integers), optional/sequence graph inputs, and test data that contradicts the model's
 * declared input shape (ONNX Runtime rejects those too). */
static const char *const expected_skips[] = {
    "test_add_uint8", /* small/unsigned ints */
    "test_cast_DOUBLE_to_FLOAT", /* double */
    "test_cast_DOUBLE_to_FLOAT16", /* double */
    "test_cast_FLOAT16_to_DOUBLE", /* double */
    "test_cast_FLOAT_to_DOUBLE", /* double */
    "test_cast_FLOAT_to_STRING", /* string */
    "test_cast_STRING_to_FLOAT", /* string */
    "test_castlike_BFLOAT16_to_FLOAT", /* contradicting test data */
    "test_castlike_BFLOAT16_to_FLOAT_expanded", /* contradicting test data */
    "test_castlike_DOUBLE_to_FLOAT", /* double */
    "test_castlike_DOUBLE_to_FLOAT16", /* double */
    "test_castlike_DOUBLE_to_FLOAT16_expanded", /* double */
    "test_castlike_DOUBLE_to_FLOAT_expanded", /* double */
    "test_castlike_FLOAT16_to_DOUBLE", /* double */
    "test_castlike_FLOAT16_to_DOUBLE_expanded", /* double */
    "test_castlike_FLOAT_to_BFLOAT16", /* contradicting test data */
    "test_castlike_FLOAT_to_BFLOAT16_expanded", /* contradicting test data */
    "test_castlike_FLOAT_to_DOUBLE", /* double */
    "test_castlike_FLOAT_to_DOUBLE_expanded", /* double */
    "test_castlike_FLOAT_to_STRING", /* string */
    "test_castlike_FLOAT_to_STRING_expanded", /* string */
    "test_castlike_STRING_to_FLOAT", /* string */
    "test_castlike_STRING_to_FLOAT_expanded", /* string */
    "test_cumsum_1d", /* double */
    "test_cumsum_1d_exclusive", /* double */
    "test_cumsum_1d_reverse", /* double */
    "test_cumsum_1d_reverse_exclusive", /* double */
    "test_cumsum_2d_axis_0", /* double */
    "test_cumsum_2d_axis_1", /* double */
    "test_cumsum_2d_negative_axis", /* double */
    "test_div_uint8", /* small/unsigned ints */
    "test_identity_opt", /* optional/sequence input */
    "test_identity_sequence", /* optional/sequence input */
    "test_max_float64", /* double */
    "test_max_int16", /* small/unsigned ints */
    "test_max_int8", /* small/unsigned ints */
    "test_max_uint16", /* small/unsigned ints */
    "test_max_uint32", /* small/unsigned ints */
    "test_max_uint64", /* small/unsigned ints */
    "test_max_uint8", /* small/unsigned ints */
    "test_min_float64", /* double */
    "test_min_int16", /* small/unsigned ints */
    "test_min_int8", /* small/unsigned ints */
    "test_min_uint16", /* small/unsigned ints */
    "test_min_uint32", /* small/unsigned ints */
    "test_min_uint64", /* small/unsigned ints */
    "test_min_uint8", /* small/unsigned ints */
    "test_mul_uint8", /* small/unsigned ints */
    "test_pow_types_float32_uint32", /* small/unsigned ints */
    "test_pow_types_float32_uint64", /* small/unsigned ints */
    "test_reduce_log_sum_exp_default_axes_keepdims_example", /* double */
    "test_reduce_log_sum_exp_default_axes_keepdims_random", /* double */
    "test_reduce_log_sum_exp_do_not_keepdims_example", /* double */
    "test_reduce_log_sum_exp_do_not_keepdims_random", /* double */
    "test_reduce_log_sum_exp_keepdims_example", /* double */
    "test_reduce_log_sum_exp_keepdims_random", /* double */
    "test_reduce_log_sum_exp_negative_axes_keepdims_example", /* double */
    "test_reduce_log_sum_exp_negative_axes_keepdims_random", /* double */
    "test_sub_uint8", /* small/unsigned ints */
};
#define N_EXPECTED_SKIPS (int)(sizeof expected_skips / sizeof expected_skips[0])

static int expected_skip_index(const char *name) {
    for (int i = 0; i < N_EXPECTED_SKIPS; i++)
        if (strcmp(expected_skips[i], name) == 0)
            return i;
    return -1;
}

typedef struct op_count {
    char name[96];
    int pass, skip, fail;
} op_count;

static op_count ops[MAX_OPS];
static int n_ops;

static op_count *op_slot(const char *name) {
    for (int i = 0; i < n_ops; i++)
        if (strcmp(ops[i].name, name) == 0)
            return &ops[i];
    if (n_ops == MAX_OPS)
        return &ops[MAX_OPS - 1];
    snprintf(ops[n_ops].name, sizeof ops[n_ops].name, "%s", name);
    return &ops[n_ops++];
}

/* Read a TensorProto file through the ONNX loader's tensor decoding. */
static td_status read_pb(td_ctx *ctx, const char *path, td_tensor **out) {
    char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    TD_TRY(td_read_file(ctx, path, (size_t)1 << 30, &buf, &len));
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, len, (const uint8_t *)buf);
    free(buf);
    if (!tp)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: not a TensorProto", path);
    td_onnx_loader L;
    memset(&L, 0, sizeof L);
    L.ctx = ctx;
    L.src_name = path;
    td_status st = td_onnx_load_tensor(&L, tp, NULL, out);
    td_onnx_loader_release(&L);
    onnx__tensor_proto__free_unpacked(tp, NULL);
    return st;
}

static bool close_enough(float got, float want, td_dtype t) {
    if (isnan(want))
        return isnan(got);
    if (isinf(want))
        return got == want;
    /* bfloat16 has 8 significant bits: rtol 1e-3 is below one ulp there, and
     * the test data rounds by truncation where ONNX Runtime rounds to nearest
     * even, so bfloat16 values may differ by one bf16 ulp (2^-7 relative). */
    float rtol = t == TD_BF16 ? 1.0f / 128.0f : 1e-3f;
    return fabsf(got - want) <= 1e-7f + rtol * fabsf(want);
}

static float load_f(const void *p, td_dtype t, size_t i) {
    switch (t) {
    case TD_F32: return ((const float *)p)[i];
    case TD_F16: return td_f16_to_f32(((const uint16_t *)p)[i]);
    case TD_BF16: return td_bf16_to_f32(((const uint16_t *)p)[i]);
    case TD_F64: return (float)((const double *)p)[i];
    default: return 0.0f;
    }
}

/* Compare one output; writes a reason into why on mismatch. */
static bool compare(const td_session_output *o, const td_tensor *want, char *why, size_t n) {
    if ((td_dtype)o->dtype != want->dtype) {
        snprintf(why, n, "output %s: dtype %s, expected %s", o->name, td_dtype_name((td_dtype)o->dtype),
                 td_dtype_name(want->dtype));
        return false;
    }
    bool shape_ok = o->rank == want->rank;
    for (int d = 0; shape_ok && d < o->rank; d++)
        shape_ok = o->shape[d] == want->dims[d];
    if (!shape_ok) {
        char a[128], b[128];
        snprintf(why, n, "output %s: shape %s, expected %s", o->name, td_shape_str(o->shape, o->rank, a, sizeof a),
                 td_shape_str(want->dims, want->rank, b, sizeof b));
        return false;
    }
    size_t es = td_dtype_size(want->dtype), numel = es ? want->nbytes / es : 0;
    if (o->nbytes != want->nbytes) {
        snprintf(why, n, "output %s: %zu bytes, expected %zu", o->name, o->nbytes, want->nbytes);
        return false;
    }
    if (td_dtype_is_float(want->dtype)) {
        for (size_t i = 0; i < numel; i++) {
            float g = load_f(o->data, want->dtype, i), w = load_f(want->data, want->dtype, i);
            if (!close_enough(g, w, want->dtype)) {
                snprintf(why, n, "output %s[%zu] = %.9g, expected %.9g", o->name, i, g, w);
                return false;
            }
        }
    } else if (want->nbytes && memcmp(o->data, want->data, want->nbytes) != 0) {
        for (size_t i = 0; i < want->nbytes; i++)
            if (((const uint8_t *)o->data)[i] != ((const uint8_t *)want->data)[i]) {
                snprintf(why, n, "output %s differs at byte %zu (element %zu)", o->name, i, es ? i / es : i);
                break;
            }
        return false;
    }
    return true;
}

typedef enum verdict { V_PASS, V_SKIP, V_FAIL, V_NA } verdict;

/* Run every data set of one case directory. */
static verdict run_case(td_ctx *ctx, const char *dir, const char *backend, char *op_name, size_t op_len, char *why,
                        size_t n) {
    char path[4096];
    td_model *m = NULL;
    td_session *s = NULL;
    verdict v = V_PASS;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (td_onnx_load(ctx, path, &m) != TD_OK) {
        snprintf(why, n, "load: %s", td_error_message(ctx));
        snprintf(op_name, op_len, "(unloadable)");
        return V_NA;
    }
    /* The case belongs to its op when it has one node; multi-node cases are
     * counted under "(composite)" when the runtime implements all their ops. */
    const td_graph *g = m->graph;
    bool all_known = g->n_nodes > 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const td_node *nd = g->nodes[i];
        const char *dom = nd->domain && strcmp(nd->domain, "ai.onnx") != 0 ? nd->domain : "";
        if (!td_op_find(dom, nd->op_type))
            all_known = false;
    }
    if (g->n_nodes == 1)
        snprintf(op_name, op_len, "%s%s%s", g->nodes[0]->domain && *g->nodes[0]->domain ? g->nodes[0]->domain : "",
                 g->nodes[0]->domain && *g->nodes[0]->domain ? "::" : "", g->nodes[0]->op_type);
    else
        snprintf(op_name, op_len, "(composite)");
    if (!all_known) {
        v = V_NA;
        goto out;
    }
    td_session_options opt;
    td_session_options_init(&opt);
    opt.threads = 1;
    opt.backend = backend;
    td_status st = td_session_create_model(ctx, m, &opt, &s);
    if (st != TD_OK) {
        snprintf(why, n, "%s", td_error_message(ctx));
        v = st == TD_ERR_UNSUPPORTED ? V_SKIP : V_FAIL;
        goto out;
    }
    for (int ds = 0; v == V_PASS; ds++) {
        char dsdir[4096];
        snprintf(dsdir, sizeof dsdir, "%s/test_data_set_%d", dir, ds);
        DIR *probe = opendir(dsdir);
        if (!probe) {
            if (ds == 0) {
                snprintf(why, n, "no test_data_set_0");
                v = V_FAIL;
            }
            break;
        }
        closedir(probe);
        int n_in = td_session_input_count(s), n_out = td_session_output_count(s);
        td_tensor **ins = calloc((size_t)n_in + 1, sizeof *ins);
        td_tensor **outs = calloc((size_t)n_out + 1, sizeof *outs);
        for (int i = 0; i < n_in && v == V_PASS; i++) {
            snprintf(path, sizeof path, "%s/input_%d.pb", dsdir, i);
            if (read_pb(ctx, path, &ins[i]) != TD_OK) {
                snprintf(why, n, "%s", td_error_message(ctx));
                v = V_FAIL;
                break;
            }
            td_tensor *t = ins[i];
            int32_t want_dt;
            td_session_input_info(s, i, &want_dt, NULL, NULL, NULL);
            if (t->dtype == TD_U16 && want_dt == TD_BF16)
                t->dtype = TD_BF16; /* ONNX's test data stores bfloat16 as its uint16 bits */
            td_status ist = td_session_set_input(ctx, s, td_session_input_name(s, i), (int32_t)t->dtype, t->rank,
                                                 t->dims, t->data, t->nbytes);
            if (ist == TD_ERR_SHAPE) {
                /* A few cases ship inputs that contradict the model's declared
                 * input shape (ONNX Runtime rejects them as well). */
                snprintf(why, n, "invalid test data: data set %d: %s", ds, td_error_message(ctx));
                v = V_SKIP;
            } else if (ist != TD_OK) {
                snprintf(why, n, "data set %d: %s", ds, td_error_message(ctx));
                v = V_FAIL;
            }
        }
        if (v == V_PASS && td_session_run(ctx, s) != TD_OK) {
            snprintf(why, n, "data set %d: run: %s", ds, td_error_message(ctx));
            v = V_FAIL;
        }
        for (int k = 0; k < n_out && v == V_PASS; k++) {
            snprintf(path, sizeof path, "%s/output_%d.pb", dsdir, k);
            td_session_output o;
            if (read_pb(ctx, path, &outs[k]) != TD_OK || td_session_get_output(ctx, s, k, &o) != TD_OK) {
                snprintf(why, n, "%s", td_error_message(ctx));
                v = V_FAIL;
            } else {
                if (outs[k]->dtype == TD_U16 && o.dtype == TD_BF16)
                    outs[k]->dtype = TD_BF16; /* bfloat16 stored as uint16 bits, as above */
                if (!compare(&o, outs[k], why, n))
                    v = V_FAIL;
            }
        }
        for (int i = 0; i < n_in; i++)
            td_tensor_free(ins[i]);
        for (int k = 0; k < n_out; k++)
            td_tensor_free(outs[k]);
        free(ins);
        free(outs);
    }
out:
    td_session_free(s);
    td_model_free(m);
    return v;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
    const char *root = td_test_env("TD_NODE_TESTS", DEFAULT_DIR);
    const char *filter = getenv("TD_NODE_FILTER");
    DIR *d = opendir(root);
    if (!d) {
        fprintf(stderr, "node conformance: cannot open %s (install libonnx-testdata)\n", root);
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "test_", 5) != 0 || (filter && !strstr(e->d_name, filter)))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            names = realloc(names, cap * sizeof *names);
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    td_ctx *ctx = td_ctx_new();
    int tot_pass = 0, tot_skip = 0, tot_fail = 0, na = 0, unloadable = 0;
    bool skipped[N_EXPECTED_SKIPS] = {false};
    for (size_t i = 0; i < n; i++) {
        char dir[4096], op[96] = "", why[1024] = "";
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        td_clear_error(ctx);
        verdict v = run_case(ctx, dir, "cpu", op, sizeof op, why, sizeof why);
        if (v == V_PASS) { /* the reference backend (ref_kern.h loops) must pass every case the cpu backend passes */
            v = run_case(ctx, dir, "reference", op, sizeof op, why, sizeof why);
            if (v != V_PASS) {
                char tmp[1024];
                snprintf(tmp, sizeof tmp, "reference backend: %s", why);
                snprintf(why, sizeof why, "%s", tmp);
                v = V_FAIL;
            }
        }
        if (v == V_NA) {
            if (strcmp(op, "(unloadable)") == 0) {
                unloadable++;
                printf("NOTE %s: the ONNX loader rejects it: %s\n", names[i], why);
            }
            na++;
            continue;
        }
        op_count *c = op_slot(op);
        if (v == V_PASS) {
            c->pass++;
            tot_pass++;
        } else if (v == V_SKIP) {
            c->skip++;
            tot_skip++;
            printf("SKIP %s [%s]: %s\n", names[i], op, why);
            int k = expected_skip_index(names[i]);
            if (k >= 0)
                skipped[k] = true;
            CHECK_MSG(k >= 0 || filter, "%s is skipped but not in expected_skips: a regression, or a new "
                                        "unsupported case to list there with its reason", names[i]);
        } else {
            c->fail++;
            tot_fail++;
            printf("FAIL %s [%s]: %s\n", names[i], op, why);
        }
        CHECK_MSG(v != V_FAIL, "%s", names[i]);
    }
    printf("\n%-36s %5s %5s %5s\n", "op", "pass", "skip", "fail");
    for (int i = 0; i < n_ops; i++)
        printf("%-36s %5d %5d %5d\n", ops[i].name, ops[i].pass, ops[i].skip, ops[i].fail);
    /* Ops the runtime claims that no case exercised (contrib ops have no ONNX tests). */
    for (int i = 0; i < td_op_count(); i++) {
        const td_op_def *def = td_op_at(i);
        char name[96];
        snprintf(name, sizeof name, "%s%s%s", def->domain, *def->domain ? "::" : "", def->op_type);
        bool seen = false;
        for (int k = 0; k < n_ops; k++)
            seen |= strcmp(ops[k].name, name) == 0;
        if (!seen)
            printf("%-36s (no node tests)\n", name);
    }
    printf("\nnode conformance: %d passed, %d skipped, %d failed (%d cases of ops the runtime does not implement, "
           "%d of them not loadable)\n", tot_pass, tot_skip, tot_fail, na, unloadable);
    if (!filter) {
        for (int k = 0; k < N_EXPECTED_SKIPS; k++)
            CHECK_MSG(skipped[k], "%s is in expected_skips but did not skip (passed, failed or is gone): update the list",
                      expected_skips[k]);
        CHECK_MSG(tot_pass >= MIN_PASSED, "only %d cases passed, at least %d must", tot_pass, MIN_PASSED);
        CHECK_MSG(na <= MAX_NOT_IMPLEMENTED, "%d cases are of ops the runtime does not implement, at most %d may be "
                  "(was an op dropped from the registry?)", na, MAX_NOT_IMPLEMENTED);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    td_ctx_free(ctx);
    return td_test_finish("test_node_conformance");
}
