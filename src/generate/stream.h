/* Incremental text for streaming: how much of a row's decoded text can be shown
 * now without ever taking it back. A byte-level tokenizer can end a step in the
 * middle of a UTF-8 character (the decoder then shows U+FFFD for the partial
 * bytes), and the end of the text may be the start of a stop string that the
 * next token completes; both are held back until they resolve. */
#ifndef TD_GENERATE_STREAM_H
#define TD_GENERATE_STREAM_H

#include <stddef.h>

/* Length of the prefix of text[len] that is safe to emit: it ends on a complete
 * UTF-8 character, not on a trailing U+FFFD, and leaves out any suffix that is
 * a proper prefix of one of the stop strings. */
size_t td_stream_safe_len(const char *text, size_t len, const char *const *stop, size_t n_stop);

/* Offset of the first stop string in text, or len when none occurs; *which gets its index. */
size_t td_stream_find_stop(const char *text, size_t len, const char *const *stop, size_t n_stop, size_t *which);

#endif
