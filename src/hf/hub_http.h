/* The HTTP side of Hub downloads: one libcurl handle with the endpoint's
 * Authorization header, the response headers the Hub uses (ETag,
 * X-Linked-Etag, X-Linked-Size, X-Repo-Commit, X-Error-Code), small GETs into
 * memory and resumable GETs into a file. Only http and https are allowed, also
 * on redirects; the token is never sent to another host (libcurl drops custom
 * Authorization headers on a redirect to a different host).
 *
 * A hostile or broken server cannot make a request run or grow without bound:
 * every request has a total deadline besides the stall check, a file body
 * stops at the size the caller expects, a small answer at its cap, and an
 * error body is cut at ERROR_BODY_MAX and reported by its HTTP status. */
#ifndef TD_HF_HUB_HTTP_H
#define TD_HF_HUB_HTTP_H

#include "core/log.h"
#include "tdeploy/tdeploy.h"
#include <stdint.h>
#include <stdio.h>

typedef struct td_http_response {
    long status;  /* of the last response received (0 when none) */
    char *reason; /* its reason phrase ("Not Found"), "" when none */
    char *etag, *linked_etag, *linked_size, *content_length, *content_range, *repo_commit, *location;
    char *error_code, *error_message; /* X-Error-Code / X-Error-Message */
    char *body;                       /* small GETs, and the start of an error body; NUL-terminated */
    size_t body_len;
} td_http_response;

typedef struct td_http td_http;

/* Default total deadline of a metadata request; a download gets this plus the
 * time its bytes take at TD_HTTP_SLOWEST_BPS, so only a server that drips
 * bytes to hold the connection open runs into it. */
#define TD_HTTP_DEFAULT_DEADLINE_S 600L
#define TD_HTTP_SLOWEST_BPS (32u * 1024u)

/* token may be NULL/"". deadline_s > 0: the most seconds any one request may
 * take in all; <= 0: the defaults above. */
td_status td_http_new(td_ctx *ctx, const char *token, long deadline_s, td_http **out);
void td_http_free(td_http *h);
void td_http_response_clear(td_http_response *r); /* frees the strings; zeroed struct stays harmless */

/* GET url into memory (at most max_bytes of a 2xx body, TD_ERR_FORMAT past it),
 * following redirects. Any HTTP status is returned in r->status (an error body
 * is cut at its cap and the transfer stopped there); the td_status reports
 * transport failures and an oversized answer. */
td_status td_http_get(td_ctx *ctx, td_http *h, const char *url, size_t max_bytes, td_http_response *r);

/* HEAD url without following redirects: the Hub puts the metadata of an LFS file
 * on the redirect to its storage, and a relative redirect (a renamed repository)
 * is for the caller to follow. */
td_status td_http_head(td_ctx *ctx, td_http *h, const char *url, td_http_response *r);

/* GET url into fp, asking for bytes from `offset` on (Range) when offset > 0.
 * If the server answers 206 the bytes are appended at offset; if it answers 200
 * the file is rewritten from the start. The file never grows past
 * expected_size: a server announcing or sending more is stopped at once and
 * the call returns TD_ERR_FORMAT (the file's content is then not to be
 * trusted). *file_size_out is the file's size after the transfer, also when
 * the transfer broke (so the caller can keep it to resume). progress may be NULL. */
td_status td_http_download(td_ctx *ctx, td_http *h, const char *url, FILE *fp, uint64_t offset,
                           uint64_t expected_size, td_progress *progress, td_http_response *r,
                           uint64_t *file_size_out);

/* Percent-encode s; '/' is kept when keep_slash. malloc'd, NULL on OOM. */
char *td_url_escape(const char *s, int keep_slash);

#endif
