/* text_codec: the text encodings the text file nodes (TextReaderNode, TextWriterNode) really do,
 * named as Python's codecs name them. Private to src/nodes. Pure and thread-safe.
 *
 * Supported: utf-8, utf-8-sig (a byte-order mark read off and written first), ascii and latin-1
 * (ISO-8859-1), each by any of Python's names for it ("UTF8", "iso-8859-1", "us-ascii", ...).
 * Anything else is refused by name rather than approximated. */
#ifndef KAILASH_NODES_TEXT_CODEC_H
#define KAILASH_NODES_TEXT_CODEC_H

#include <jansson.h>
#include <stddef.h>

#include "kailash/util.h"

typedef enum text_codec { TEXT_UTF8, TEXT_UTF8_SIG, TEXT_ASCII, TEXT_LATIN1 } text_codec;

/* The names of the supported encodings, for messages. */
#define TEXT_CODEC_NAMES "utf-8, utf-8-sig, ascii and latin-1"

/* The codec Python's codecs.lookup(name) finds, into *c: 0, or -1 when it is not supported. */
int text_codec_find(const char *name, text_codec *c);

/* Reads `encoding` from src (config at load, inputs at run): absent or null is utf-8; at_load skips a
 * template. 0 with *c, or -1 with msg "encoding: ...". */
int text_codec_option(json_t *src, int at_load, text_codec *c, char *msg, size_t msglen);

/* Decodes the len bytes at in as Python's open(path, encoding=c).read() does (strict, then
 * universal newlines: "\r\n" and "\r" become "\n") into out as UTF-8 (caller frees out).
 * 0, or -1 with msg ("not valid utf-8: byte 0xff at offset 3"). */
int text_codec_decode(text_codec c, const char *in, size_t len, buf *out, char *msg, size_t msglen);

/* Encodes the len bytes of UTF-8 text at in as Python's text.encode(c) does (strict) into out
 * (caller frees out), without utf-8-sig's byte-order mark: text_codec_bom gives it.
 * 0, or -1 with msg ("character U+00E9 at offset 3 cannot be encoded in ascii"). */
int text_codec_encode(text_codec c, const char *in, size_t len, buf *out, char *msg, size_t msglen);

/* The byte-order mark c writes before the text (utf-8-sig: EF BB BF), or "" with *len 0. */
const char *text_codec_bom(text_codec c, size_t *len);

#endif
