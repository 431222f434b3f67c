/* libcurl wrapper for Hub downloads. */
#define _GNU_SOURCE
#include "hf/hub_http.h"

#include "core/ctx.h"

#include <curl/curl.h>
#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ERROR_BODY_MAX 4096

struct td_http {
    CURL *curl;
    struct curl_slist *headers;
    long deadline_s; /* > 0: fixed for every request; else the defaults of hub_http.h */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code;
static void curl_init_once(void) { curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT); }

td_status td_http_new(td_ctx *ctx, const char *token, long deadline_s, td_http **out) {
    *out = NULL;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_code != CURLE_OK)
        return td_fail(ctx, TD_ERR_IO, "cannot initialise libcurl: %s", curl_easy_strerror(curl_init_code));
    td_http *h = calloc(1, sizeof *h);
    if (!h)
        return td_fail_oom(ctx, sizeof *h, "an HTTP client");
    h->curl = curl_easy_init();
    if (!h->curl) {
        free(h);
        return td_fail(ctx, TD_ERR_IO, "cannot create a libcurl handle");
    }
    /* Sizes are checked against the Hub's headers, so no transparent decompression. */
    struct curl_slist *hl = curl_slist_append(NULL, "Accept-Encoding: identity");
    if (hl && token && *token) {
        size_t n = strlen(token) + 32;
        char *auth = malloc(n);
        if (auth) {
            snprintf(auth, n, "Authorization: Bearer %s", token);
            struct curl_slist *t = curl_slist_append(hl, auth);
            free(auth);
            if (!t) {
                curl_slist_free_all(hl);
                hl = NULL;
            } else
                hl = t;
        } else {
            curl_slist_free_all(hl);
            hl = NULL;
        }
    }
    if (!hl) {
        curl_easy_cleanup(h->curl);
        free(h);
        return td_fail_oom(ctx, 64, "HTTP headers");
    }
    h->headers = hl;
    h->deadline_s = deadline_s;
    *out = h;
    return TD_OK;
}

void td_http_free(td_http *h) {
    if (!h)
        return;
    curl_slist_free_all(h->headers);
    curl_easy_cleanup(h->curl);
    free(h);
}

void td_http_response_clear(td_http_response *r) {
    if (!r)
        return;
    char **fields[] = {&r->etag,        &r->linked_etag, &r->linked_size, &r->content_length,
                       &r->content_range, &r->repo_commit, &r->location,  &r->error_code,
                       &r->error_message, &r->body,        &r->reason};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        free(*fields[i]);
        *fields[i] = NULL;
    }
    r->status = 0;
    r->body_len = 0;
}

char *td_url_escape(const char *s, int keep_slash) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1);
    if (!out)
        return NULL;
    char *p = out;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (isalnum(*c) || *c == '-' || *c == '_' || *c == '.' || *c == '~' || (keep_slash && *c == '/'))
            *p++ = (char)*c;
        else {
            *p++ = '%';
            *p++ = hex[*c >> 4];
            *p++ = hex[*c & 15];
        }
    }
    *p = '\0';
    return out;
}

/* Per-transfer state shared by the callbacks. */
typedef struct xfer {
    td_http_response *r;
    size_t max_body;
    bool body_overflow;     /* a 2xx answer larger than max_body: the transfer was stopped */
    bool error_body_capped; /* an error body reached ERROR_BODY_MAX: the transfer was stopped, the status stands */
    /* file downloads */
    FILE *fp;
    uint64_t offset;   /* requested start */
    uint64_t expected; /* the file's full size: never written past */
    uint64_t written;  /* bytes now in the file */
    bool too_long;     /* the server announced or sent more than expected */
    bool started;     /* first body byte of the final response seen */
    bool range_mismatch;
    bool write_failed;
    int write_errno;
    td_progress *progress;
} xfer;

static char *dup_trimmed(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    char *o = malloc(n + 1);
    if (o) {
        memcpy(o, s, n);
        o[n] = '\0';
    }
    return o;
}

static void set_field(char **field, const char *v, size_t n) {
    free(*field);
    *field = dup_trimmed(v, n);
}

/* The standard reason phrase of a status, for HTTP/2 answers, which carry none. */
static const char *standard_reason(long status) {
    static const struct {
        long status;
        const char *reason;
    } known[] = {
        {400, "Bad Request"},          {401, "Unauthorized"},        {403, "Forbidden"},
        {404, "Not Found"},            {408, "Request Timeout"},     {410, "Gone"},
        {416, "Range Not Satisfiable"}, {429, "Too Many Requests"},  {500, "Internal Server Error"},
        {502, "Bad Gateway"},          {503, "Service Unavailable"}, {504, "Gateway Timeout"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (known[i].status == status)
            return known[i].reason;
    return "";
}

/* Headers of every response arrive here (redirects included); a status line
 * starts a new response, so the fields always describe the latest one. */
static size_t on_header(char *buf, size_t size, size_t nitems, void *user) {
    xfer *x = user;
    td_http_response *r = x->r;
    size_t n = size * nitems;
    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        td_http_response_clear(r); /* what came before was a redirect or an interim answer */
        /* "HTTP/1.1 404 Not Found": the status, then the reason phrase (absent in HTTP/2) */
        const char *sp = memchr(buf, ' ', n);
        char *end = NULL;
        r->status = sp ? strtol(sp + 1, &end, 10) : 0;
        if (r->status < 100 || r->status > 999)
            r->status = 0;
        const char *reason = end && end < buf + n ? end : buf + n;
        r->reason = dup_trimmed(reason, (size_t)(buf + n - reason));
        if (r->reason && !*r->reason) {
            free(r->reason);
            r->reason = strdup(standard_reason(r->status));
        }
        for (char *c = r->reason; c && *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = '?'; /* printed in messages: no control characters from the server */
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon)
        return n;
    size_t klen = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vlen = n - klen - 1;
    static const struct {
        const char *name;
        size_t off;
    } known[] = {
        {"etag", offsetof(td_http_response, etag)},
        {"x-linked-etag", offsetof(td_http_response, linked_etag)},
        {"x-linked-size", offsetof(td_http_response, linked_size)},
        {"content-length", offsetof(td_http_response, content_length)},
        {"content-range", offsetof(td_http_response, content_range)},
        {"x-repo-commit", offsetof(td_http_response, repo_commit)},
        {"location", offsetof(td_http_response, location)},
        {"x-error-code", offsetof(td_http_response, error_code)},
        {"x-error-message", offsetof(td_http_response, error_message)},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i].name) == klen && strncasecmp(buf, known[i].name, klen) == 0)
            set_field((char **)((char *)r + known[i].off), v, vlen);
    return n;
}

/* Keep what fits of data under max bytes of body; 0 (stop the transfer) when
 * it does not all fit or memory runs out. */
static size_t append_body(xfer *x, const char *data, size_t n, size_t max) {
    td_http_response *r = x->r;
    size_t room = max > r->body_len ? max - r->body_len : 0;
    size_t take = n < room ? n : room;
    if (take) {
        char *nb = realloc(r->body, r->body_len + take + 1);
        if (!nb)
            return 0; /* aborts the transfer: reported as a write error */
        memcpy(nb + r->body_len, data, take);
        r->body = nb;
        r->body_len += take;
        r->body[r->body_len] = '\0';
    }
    return take == n ? n : 0;
}

static bool is_success(long status) { return status >= 200 && status < 300; }

/* An error body is only the start of a message: stop reading at the cap, the status says what happened. */
static size_t append_error_body(xfer *x, const char *data, size_t n) {
    size_t took = append_body(x, data, n, ERROR_BODY_MAX);
    if (took != n && x->r->body_len >= ERROR_BODY_MAX)
        x->error_body_capped = true;
    return took;
}

static size_t on_body_memory(char *data, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t n = size * nmemb;
    if (!is_success(x->r->status))
        return append_error_body(x, data, n);
    size_t took = append_body(x, data, n, x->max_body);
    if (took != n && x->r->body_len >= x->max_body)
        x->body_overflow = true;
    return took;
}

/* The Content-Length of the final response, or UINT64_MAX when absent or unreadable. */
static uint64_t content_length(const td_http_response *r) {
    const char *v = r->content_length;
    if (!v || !isdigit((unsigned char)*v))
        return UINT64_MAX;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    return errno || *end ? UINT64_MAX : (uint64_t)n;
}

/* Parse "bytes START-END/TOTAL" and return START, or UINT64_MAX. */
static uint64_t content_range_start(const char *cr) {
    if (!cr || strncasecmp(cr, "bytes ", 6) != 0)
        return UINT64_MAX;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(cr + 6, &end, 10);
    if (errno || end == cr + 6 || *end != '-')
        return UINT64_MAX;
    return (uint64_t)v;
}

static size_t on_body_file(char *data, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t n = size * nmemb;
    long st = x->r->status;
    if (st != 200 && st != 206)
        return append_error_body(x, data, n);
    if (!x->started) {
        x->started = true;
        uint64_t start = st == 206 ? x->offset : 0, announced = content_length(x->r);
        if (announced != UINT64_MAX && (start > x->expected || announced > x->expected - start)) {
            x->too_long = true; /* refused before a byte is written */
            return 0;
        }
        if (st == 206) {
            if (content_range_start(x->r->content_range) != x->offset) {
                x->range_mismatch = true;
                return 0;
            }
            if (fseeko(x->fp, (off_t)x->offset, SEEK_SET) != 0)
                goto write_error;
            x->written = x->offset;
        } else { /* full body: start over */
            if (fflush(x->fp) != 0 || ftruncate(fileno(x->fp), 0) != 0 || fseeko(x->fp, 0, SEEK_SET) != 0)
                goto write_error;
            x->written = 0;
        }
    }
    if (x->written > x->expected || n > x->expected - x->written) {
        /* more than announced (a lying Content-Length, a compressed or endless body):
         * write up to the expected size, then stop */
        n = (size_t)(x->expected - x->written);
        x->too_long = true;
    }
    if (fwrite(data, 1, n, x->fp) != n)
        goto write_error;
    x->written += n;
    if (x->too_long)
        return 0;
    if (x->progress)
        td_progress_update(x->progress, x->written);
    return n;
write_error:
    x->write_failed = true;
    x->write_errno = errno;
    return 0;
}

/* The total deadline of one request: fixed when configured, else the default
 * plus the time `bytes` take at the slowest rate we wait for. */
static long request_deadline(const td_http *h, uint64_t bytes) {
    if (h->deadline_s > 0)
        return h->deadline_s;
    uint64_t extra = bytes / TD_HTTP_SLOWEST_BPS;
    uint64_t cap = (uint64_t)LONG_MAX / 1000 - (uint64_t)TD_HTTP_DEFAULT_DEADLINE_S; /* curl keeps milliseconds */
    return TD_HTTP_DEFAULT_DEADLINE_S + (long)(extra < cap ? extra : cap);
}

static void common_setup(td_http *h, const char *url, xfer *x, uint64_t bytes) {
    CURL *c = h->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tdeploy/" TD_VERSION_STRING);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* A stalled connection (no byte for a minute) fails instead of hanging. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    /* ...and one that drips bytes to stay above the stall check still ends. */
    curl_easy_setopt(c, CURLOPT_TIMEOUT, request_deadline(h, bytes));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
}

static td_status transport_error(td_ctx *ctx, const td_http *h, CURLcode rc, const char *url, char *errbuf,
                                 uint64_t bytes) {
    for (size_t n = strlen(errbuf); n && isspace((unsigned char)errbuf[n - 1]); n--)
        errbuf[n - 1] = '\0';
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return td_fail(ctx, TD_ERR_IO,
                       "request to %s timed out (%s): a request may take at most %ld s in all (%s) and may not "
                       "stall for 60 s",
                       url, *errbuf ? errbuf : curl_easy_strerror(rc), request_deadline(h, bytes),
                       h->deadline_s > 0 ? "set by TDEPLOY_HUB_DEADLINE" : "raise it with TDEPLOY_HUB_DEADLINE=SECONDS");
    return td_fail(ctx, TD_ERR_IO, "request to %s failed: %s%s%s", url, curl_easy_strerror(rc), *errbuf ? " (" : "",
                   *errbuf ? errbuf : "");
}

td_status td_http_get(td_ctx *ctx, td_http *h, const char *url, size_t max_bytes, td_http_response *r) {
    td_http_response_clear(r);
    xfer x = {.r = r, .max_body = max_bytes};
    char errbuf[CURL_ERROR_SIZE] = "";
    common_setup(h, url, &x, 0); /* a metadata answer: the default deadline, whatever its cap */
    curl_easy_setopt(h->curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_body_memory);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(h->curl);
    if (x.error_body_capped)
        return TD_OK; /* r->status says what went wrong; the rest of the body does not matter */
    if (x.body_overflow)
        return td_fail(ctx, TD_ERR_FORMAT, "the answer from %s (HTTP %ld) is larger than the %zu bytes allowed", url,
                       r->status, max_bytes);
    if (rc != CURLE_OK)
        return transport_error(ctx, h, rc, url, errbuf, 0);
    return TD_OK;
}

td_status td_http_head(td_ctx *ctx, td_http *h, const char *url, td_http_response *r) {
    td_http_response_clear(r);
    xfer x = {.r = r, .max_body = 0};
    char errbuf[CURL_ERROR_SIZE] = "";
    common_setup(h, url, &x, 0);
    curl_easy_setopt(h->curl, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(h->curl);
    if (rc != CURLE_OK)
        return transport_error(ctx, h, rc, url, errbuf, 0);
    return TD_OK;
}

td_status td_http_download(td_ctx *ctx, td_http *h, const char *url, FILE *fp, uint64_t offset,
                           uint64_t expected_size, td_progress *progress, td_http_response *r,
                           uint64_t *file_size_out) {
    td_http_response_clear(r);
    xfer x = {.r = r, .fp = fp, .offset = offset, .expected = expected_size, .written = offset, .progress = progress};
    char errbuf[CURL_ERROR_SIZE] = "";
    char range[32];
    uint64_t to_fetch = expected_size > offset ? expected_size - offset : 0;
    common_setup(h, url, &x, to_fetch);
    curl_easy_setopt(h->curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_body_file);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, errbuf);
    if (offset > 0) {
        snprintf(range, sizeof range, "%llu-", (unsigned long long)offset);
        curl_easy_setopt(h->curl, CURLOPT_RANGE, range);
    }
    CURLcode rc = curl_easy_perform(h->curl);
    int flush_failed = fflush(fp) != 0;
    *file_size_out = x.written;
    if (x.write_failed || flush_failed)
        return td_fail(ctx, TD_ERR_IO, "writing the download of %s failed: %s (disk full?)", url,
                       strerror(x.write_failed ? x.write_errno : errno));
    if (x.too_long)
        return td_fail(ctx, TD_ERR_FORMAT,
                       "%s %s more than the %llu bytes expected (HTTP %ld, Content-Length %s); stopped there",
                       url, x.written > offset ? "sent" : "announced", (unsigned long long)expected_size, r->status,
                       r->content_length ? r->content_length : "none");
    if (x.error_body_capped)
        return TD_OK; /* r->status says what went wrong */
    if (x.range_mismatch)
        return td_fail(ctx, TD_ERR_IO,
                       "%s answered a resume request from byte %llu with a different range (%s); remove the "
                       ".incomplete file to start over",
                       url, (unsigned long long)offset, r->content_range ? r->content_range : "none");
    if (rc != CURLE_OK)
        return transport_error(ctx, h, rc, url, errbuf, to_fetch);
    return TD_OK;
}
