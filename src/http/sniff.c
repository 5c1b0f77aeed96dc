/* sniff.c - content type from magic bytes (see sniff.h).
 *
 * What: a short, ordered list of signatures checked against the first
 * bytes of a file (after the WHATWG MIME Sniffing patterns, trimmed to the
 * formats dripd cares about), then a plain-text heuristic: no "binary data
 * bytes" (WHATWG: 00-08, 0B, 0E-1A, 1C-1F) and well-formed UTF-8 (a
 * sequence cut by the end of the buffer is accepted), or at least 90%
 * printable ASCII for legacy 8-bit text. Never guesses HTML,
 * XML or script types: what it cannot name is application/octet-stream.
 *
 * Threads: pure functions, no state.
 */
#include "dripd/sniff.h"

#include <string.h>
#include <strings.h>

#define OCTET "application/octet-stream"

static bool starts(const uint8_t *b, size_t len, size_t off, const char *magic, size_t mlen)
{
    return len >= off + mlen && memcmp(b + off, magic, mlen) == 0;
}

static bool has_sub(const uint8_t *b, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(b + i, needle, n) == 0)
            return true;
    return false;
}

/* An MPEG audio layer I-III frame header at b. */
static bool mp3_frame(const uint8_t *b, size_t len)
{
    if (len < 4 || b[0] != 0xFF || (b[1] & 0xE0) != 0xE0)
        return false;
    unsigned version = (b[1] >> 3) & 3u, layer = (b[1] >> 1) & 3u;
    unsigned bitrate = b[2] >> 4, rate = (b[2] >> 2) & 3u;
    return version != 1 && layer != 0 && bitrate != 15 && bitrate != 0 && rate != 3;
}

/* Length of the UTF-8 sequence at b (1..4) if well formed, 0 if not, or
 * -1 if it is cut short by the end of the buffer. */
static int utf8_seq(const uint8_t *b, size_t len)
{
    uint8_t c = b[0];
    int n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    for (int i = 1; i < n; i++) {
        if ((size_t)i >= len)
            return -1;
        if ((b[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (b[i] & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static bool binary_byte(uint8_t c)
{
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1A) || (c >= 0x1C && c <= 0x1F);
}

static const char *sniff_text(const uint8_t *b, size_t len)
{
    if (starts(b, len, 0, "\xFE\xFF", 2))
        return "text/plain; charset=utf-16be";
    if (starts(b, len, 0, "\xFF\xFE", 2))
        return "text/plain; charset=utf-16le";
    bool utf8 = true;
    size_t ascii = 0;
    for (size_t i = 0; i < len; i++)
        ascii += (b[i] >= 0x20 && b[i] < 0x7f) || b[i] == '\t' || b[i] == '\r' || b[i] == '\n';
    for (size_t i = 0; i < len;) {
        if (binary_byte(b[i]))
            return OCTET;
        int n = utf8_seq(b + i, len - i);
        if (n < 0)
            break; /* cut by the sniff window */
        if (n == 0) {
            utf8 = false;
            n = 1;
        }
        i += (size_t)n;
    }
    if (utf8)
        return "text/plain; charset=utf-8";
    /* Some legacy 8-bit text: call it text only when it is mostly ASCII. */
    return ascii * 10 >= len * 9 ? "text/plain" : OCTET;
}

const char *sniff_content_type(const uint8_t *b, size_t len)
{
    if (!b || len == 0)
        return OCTET;
    if (len > SNIFF_LEN)
        len = SNIFF_LEN;
    if (starts(b, len, 0, "\x89PNG\r\n\x1A\n", 8))
        return "image/png";
    if (starts(b, len, 0, "\xFF\xD8\xFF", 3))
        return "image/jpeg";
    if (starts(b, len, 0, "GIF87a", 6) || starts(b, len, 0, "GIF89a", 6))
        return "image/gif";
    if (starts(b, len, 0, "RIFF", 4) && starts(b, len, 8, "WEBPVP", 6))
        return "image/webp";
    if (starts(b, len, 0, "RIFF", 4) && starts(b, len, 8, "WAVE", 4))
        return "audio/wav";
    if (starts(b, len, 0, "%PDF-", 5))
        return "application/pdf";
    if (starts(b, len, 4, "ftyp", 4) && len >= 12) {
        if (starts(b, len, 8, "M4A ", 4))
            return "audio/mp4";
        if (starts(b, len, 8, "qt  ", 4))
            return "video/quicktime";
        return "video/mp4";
    }
    if (starts(b, len, 0, "\x1A\x45\xDF\xA3", 4)) {
        if (has_sub(b, len, "webm"))
            return "video/webm";
        if (has_sub(b, len, "matroska"))
            return "video/x-matroska";
        return OCTET;
    }
    if (starts(b, len, 0, "\xFE\xFF", 2) || starts(b, len, 0, "\xFF\xFE", 2))
        return sniff_text(b, len); /* a UTF-16 BOM, before FF Fx looks like MPEG audio */
    if (starts(b, len, 0, "ID3", 3) || mp3_frame(b, len))
        return "audio/mpeg";
    if (starts(b, len, 0, "OggS", 5)) /* includes the version byte 0 */
        return "audio/ogg";
    if (starts(b, len, 0, "PK\x03\x04", 4) || starts(b, len, 0, "PK\x05\x06", 4))
        return "application/zip";
    return sniff_text(b, len);
}

static bool tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

bool sniff_type_usable(const char *ct)
{
    if (!ct)
        return false;
    size_t n = strlen(ct);
    if (n == 0 || n > 255)
        return false;
    const char *p = ct;
    size_t t = 0;
    while (tchar(p[t]))
        t++;
    if (t == 0 || p[t] != '/')
        return false;
    p += t + 1;
    t = 0;
    while (tchar(p[t]))
        t++;
    if (t == 0)
        return false;
    for (const char *q = p + t; *q; q++) {
        unsigned char c = (unsigned char)*q;
        if (c < 0x20 || c > 0x7e)
            return false;
    }
    if (p[t] != '\0' && p[t] != ';' && p[t] != ' ' && p[t] != '\t')
        return false;
    static const char generic[] = "application/octet-stream";
    if (strncasecmp(ct, generic, sizeof generic - 1) == 0) {
        char c = ct[sizeof generic - 1];
        if (c == '\0' || c == ';' || c == ' ' || c == '\t')
            return false;
    }
    return true;
}
