/* s3xml.c - expat parsing of S3 XML replies and the CompleteMultipartUpload
 * body (see s3xml.h).
 *
 * One small engine (struct px) walks a document with expat, keeps the
 * stack of element local names (bounded depth) and the text of the
 * current element (bounded length), and at each end tag calls the
 * document-specific handler with the element's path. The handlers only
 * copy the few fields dripd needs; everything else is ignored, so extra
 * elements from a newer or non-AWS service are harmless.
 *
 * Threads: none of its own; no global state. Never expands entities:
 * a DOCTYPE or entity declaration stops the parse with -EBADMSG.
 */
#include "s3xml.h"

#include <errno.h>
#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/util.h"

#define PX_MAX_DEPTH 8
#define PX_NAME_LEN 48
#define PX_NS_SEP '|'

struct px;
/* Called at each end tag; depth 1 is the root. Returns 0 or -errno (stops). */
typedef int (*px_end_fn)(struct px *x, int depth, const char *text, size_t len);

struct px {
    XML_Parser p;
    int depth;
    char names[PX_MAX_DEPTH + 1][PX_NAME_LEN]; /* names[1] is the root */
    char text[S3XML_MAX_TEXT + 1];
    size_t tlen;
    px_end_fn on_end;
    void *arg;
    int rc;
};

static const char *local_name(const char *name)
{
    const char *sep = strrchr(name, PX_NS_SEP);
    return sep ? sep + 1 : name;
}

static void px_fail(struct px *x, int rc)
{
    if (x->rc == 0)
        x->rc = rc;
    XML_StopParser(x->p, XML_FALSE);
}

static void XMLCALL px_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct px *x = ud;
    (void)attrs;
    x->depth++;
    x->tlen = 0;
    if (x->depth <= PX_MAX_DEPTH)
        snprintf(x->names[x->depth], PX_NAME_LEN, "%s", local_name(name));
}

static void XMLCALL px_end(void *ud, const XML_Char *name)
{
    struct px *x = ud;
    (void)name;
    if (x->depth <= PX_MAX_DEPTH && x->on_end != NULL) {
        x->text[x->tlen] = '\0';
        int rc = x->on_end(x, x->depth, x->text, x->tlen);
        if (rc < 0)
            px_fail(x, rc);
    }
    x->tlen = 0;
    x->depth--;
}

static void XMLCALL px_chars(void *ud, const XML_Char *s, int len)
{
    struct px *x = ud;
    if (x->depth > PX_MAX_DEPTH || len <= 0)
        return;
    if (x->tlen + (size_t)len > S3XML_MAX_TEXT) {
        px_fail(x, -E2BIG);
        return;
    }
    memcpy(x->text + x->tlen, s, (size_t)len);
    x->tlen += (size_t)len;
}

static void XMLCALL px_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
    px_fail(ud, -EBADMSG);
}

static void XMLCALL px_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value,
                              int value_len, const XML_Char *base, const XML_Char *sysid,
                              const XML_Char *pubid, const XML_Char *notation)
{
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid;
    (void)pubid, (void)notation;
    px_fail(ud, -EBADMSG);
}

/* Parse the whole buffer. Returns x->rc, or -EBADMSG if not well-formed. */
static int px_run(struct px *x, const char *xml, size_t len, px_end_fn on_end, void *arg)
{
    x->depth = 0;
    x->tlen = 0;
    x->rc = 0;
    x->on_end = on_end;
    x->arg = arg;
    x->names[0][0] = '\0';
    x->names[1][0] = '\0';
    if (len > (size_t)INT32_MAX)
        return -E2BIG;
    x->p = XML_ParserCreateNS(NULL, PX_NS_SEP);
    if (x->p == NULL)
        abort(); /* expat only fails on out-of-memory */
    XML_SetUserData(x->p, x);
    XML_SetElementHandler(x->p, px_start, px_end);
    XML_SetCharacterDataHandler(x->p, px_chars);
    XML_SetStartDoctypeDeclHandler(x->p, px_doctype);
    XML_SetEntityDeclHandler(x->p, px_entity);
    XML_SetParamEntityParsing(x->p, XML_PARAM_ENTITY_PARSING_NEVER);
    enum XML_Status st = XML_Parse(x->p, xml, (int)len, XML_TRUE);
    int rc = x->rc;
    if (rc == 0 && st != XML_STATUS_OK)
        rc = -EBADMSG;
    XML_ParserFree(x->p);
    x->p = NULL;
    return rc;
}

/* ---- Error ---- */

static void copy_field(char *dst, size_t cap, const char *text, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(dst, text, n);
    dst[n] = '\0';
}

/* Fills the struct s3xml_error in x->arg from an <Error> document's fields. */
static int error_end(struct px *x, int depth, const char *text, size_t len)
{
    struct s3xml_error *e = x->arg;
    if (depth != 2 || strcmp(x->names[1], "Error") != 0)
        return 0;
    const char *n = x->names[2];
    if (strcmp(n, "Code") == 0)
        copy_field(e->code, sizeof e->code, text, len);
    else if (strcmp(n, "Message") == 0)
        copy_field(e->message, sizeof e->message, text, len);
    else if (strcmp(n, "BucketName") == 0)
        copy_field(e->bucket, sizeof e->bucket, text, len);
    return 0;
}

int s3xml_parse_error(const char *xml, size_t len, struct s3xml_error *out)
{
    struct px x;
    memset(out, 0, sizeof *out);
    int rc = px_run(&x, xml, len, error_end, out);
    if (rc == 0 && strcmp(x.names[1], "Error") != 0)
        rc = -EBADMSG;
    if (rc < 0)
        memset(out, 0, sizeof *out);
    return rc;
}

/* For a result document: if the root turned out to be <Error>, parse it
 * into err and return -EREMOTEIO; else -EBADMSG (wrong root). */
static int wrong_root(const char *xml, size_t len, const char *root, struct s3xml_error *err)
{
    if (strcmp(root, "Error") != 0)
        return -EBADMSG;
    if (err != NULL)
        s3xml_parse_error(xml, len, err);
    return -EREMOTEIO;
}

/* ---- InitiateMultipartUploadResult ---- */

struct one_field {
    const char *root;
    const char *name;
    char *value;
};

static int one_field_end(struct px *x, int depth, const char *text, size_t len)
{
    struct one_field *f = x->arg;
    if (depth == 2 && strcmp(x->names[1], f->root) == 0 && strcmp(x->names[2], f->name) == 0) {
        free(f->value);
        f->value = xstrndup(text, len);
    }
    return 0;
}

static int parse_one_field(const char *xml, size_t len, const char *root, const char *name,
                           char **out, struct s3xml_error *err)
{
    struct px x;
    struct one_field f = {root, name, NULL};
    *out = NULL;
    int rc = px_run(&x, xml, len, one_field_end, &f);
    if (rc == 0 && strcmp(x.names[1], root) != 0)
        rc = wrong_root(xml, len, x.names[1], err);
    if (rc < 0) {
        free(f.value);
        return rc;
    }
    *out = f.value;
    return 0;
}

int s3xml_parse_initiate(const char *xml, size_t len, char **upload_id, struct s3xml_error *err)
{
    int rc = parse_one_field(xml, len, "InitiateMultipartUploadResult", "UploadId", upload_id, err);
    if (rc == 0 && (*upload_id == NULL || (*upload_id)[0] == '\0')) {
        free(*upload_id);
        *upload_id = NULL;
        rc = -EBADMSG;
    }
    return rc;
}

int s3xml_parse_complete(const char *xml, size_t len, char **etag, struct s3xml_error *err)
{
    return parse_one_field(xml, len, "CompleteMultipartUploadResult", "ETag", etag, err);
}

/* ---- ListBucketResult (ListObjectsV2) ---- */

struct list_state {
    struct s3xml_list *l;
    size_t cap;
    char *key; /* current Contents */
    uint64_t size;
    bool have_size;
};

static int parse_u64(const char *text, uint64_t *out)
{
    uint64_t v = 0;
    if (*text == '\0')
        return -EBADMSG;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return -EBADMSG;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return 0;
}

static int list_end(struct px *x, int depth, const char *text, size_t len)
{
    struct list_state *s = x->arg;
    if (strcmp(x->names[1], "ListBucketResult") != 0)
        return 0;
    if (depth == 3 && strcmp(x->names[2], "Contents") == 0) {
        if (strcmp(x->names[3], "Key") == 0) {
            free(s->key);
            s->key = xstrndup(text, len);
        } else if (strcmp(x->names[3], "Size") == 0) {
            if (parse_u64(text, &s->size) < 0)
                return -EBADMSG;
            s->have_size = true;
        }
        return 0;
    }
    if (depth != 2)
        return 0;
    const char *n = x->names[2];
    if (strcmp(n, "Contents") == 0) {
        if (s->key == NULL || s->key[0] == '\0' || !s->have_size)
            return -EBADMSG;
        if (s->l->n == S3XML_MAX_OBJECTS)
            return -E2BIG;
        if (s->l->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 64;
            s->l->objects = xrealloc(s->l->objects, s->cap * sizeof *s->l->objects);
        }
        s->l->objects[s->l->n++] = (struct s3xml_object){s->key, s->size};
        s->key = NULL;
        s->have_size = false;
    } else if (strcmp(n, "IsTruncated") == 0) {
        s->l->truncated = strcmp(text, "true") == 0;
    } else if (strcmp(n, "NextContinuationToken") == 0) {
        free(s->l->next_token);
        s->l->next_token = xstrndup(text, len);
    }
    return 0;
}

int s3xml_parse_list(const char *xml, size_t len, struct s3xml_list *out, struct s3xml_error *err)
{
    struct px x;
    struct list_state s = {.l = out};
    memset(out, 0, sizeof *out);
    int rc = px_run(&x, xml, len, list_end, &s);
    if (rc == 0 && strcmp(x.names[1], "ListBucketResult") != 0)
        rc = wrong_root(xml, len, x.names[1], err);
    if (rc == 0 && out->truncated && (out->next_token == NULL || out->next_token[0] == '\0'))
        rc = -EBADMSG; /* a truncated page must say where to go on */
    free(s.key);
    if (rc < 0)
        s3xml_list_clear(out);
    return rc;
}

void s3xml_list_clear(struct s3xml_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->objects[i].key);
    free(l->objects);
    free(l->next_token);
    memset(l, 0, sizeof *l);
}

/* ---- CompleteMultipartUpload body ---- */

/* Appends s with &, <, >, " escaped. */
static size_t escape_into(char *dst, const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        const char *rep = NULL;
        switch (*s) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        default:
            break;
        }
        if (rep != NULL) {
            size_t rl = strlen(rep);
            if (dst != NULL)
                memcpy(dst + n, rep, rl);
            n += rl;
        } else {
            if (dst != NULL)
                dst[n] = *s;
            n++;
        }
    }
    return n;
}

char *s3xml_complete_body(const struct s3xml_part *parts, size_t n)
{
    static const char head[] = "<CompleteMultipartUpload>";
    static const char tail[] = "</CompleteMultipartUpload>";
    static const char part_fmt[] = "<Part><PartNumber>%d</PartNumber><ETag>";
    static const char part_end[] = "</ETag></Part>";
    /* Size first: a part number has at most 11 characters. */
    size_t cap = sizeof head + sizeof tail;
    for (size_t i = 0; i < n; i++)
        cap += sizeof part_fmt + 11 + escape_into(NULL, parts[i].etag ? parts[i].etag : "") +
               sizeof part_end;
    char *out = xmalloc(cap);
    size_t at = 0;
    memcpy(out, head, sizeof head - 1);
    at += sizeof head - 1;
    for (size_t i = 0; i < n; i++) {
        at += (size_t)snprintf(out + at, cap - at, part_fmt, parts[i].number);
        at += escape_into(out + at, parts[i].etag ? parts[i].etag : "");
        memcpy(out + at, part_end, sizeof part_end - 1);
        at += sizeof part_end - 1;
    }
    memcpy(out + at, tail, sizeof tail);
    return out;
}
