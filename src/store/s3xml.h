/* s3xml.h - the XML of S3-compatible services: parse the replies dripd
 * reads (Error, InitiateMultipartUploadResult, ListBucketResult of
 * ListObjectsV2, CompleteMultipartUploadResult) and build the one body it
 * sends (CompleteMultipartUpload).
 *
 * Pure functions over a complete, caller-bounded buffer; no global state,
 * so any thread may call them. Element names are matched by local name,
 * so a default or prefixed S3 namespace makes no difference. Documents
 * with a DOCTYPE or entity declarations are refused (no entity expansion).
 *
 * Errors: 0 on success; -EBADMSG when the text is not well-formed XML or
 * its root is not the expected element; -EREMOTEIO when the root is
 * <Error> where a result was expected (S3 answers CompleteMultipartUpload
 * with "200 OK" and an <Error> body on some failures): then *err is filled
 * when err is not NULL; -E2BIG when a field or the object count exceeds
 * the bounds below.
 *
 * Ownership: strings in results are heap copies owned by the caller
 * (free with free(), or s3xml_list_clear for a list). Fixed-size fields in
 * struct s3xml_error are truncated, always NUL-terminated.
 */
#ifndef DRIPD_S3XML_H
#define DRIPD_S3XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define S3XML_MAX_TEXT 4096     /* longest element text accepted (S3 keys are <= 1024 bytes) */
#define S3XML_MAX_OBJECTS 10000 /* per ListObjectsV2 page (S3 sends <= 1000) */

struct s3xml_error {
    char code[64];     /* "NoSuchBucket", "AccessDenied", ... ("" if absent) */
    char message[512]; /* the service's human message */
    char bucket[256];  /* <BucketName> when given */
};

struct s3xml_object {
    char *key;
    uint64_t size;
};

struct s3xml_list {
    struct s3xml_object *objects;
    size_t n;
    bool truncated;   /* <IsTruncated>true</IsTruncated> */
    char *next_token; /* <NextContinuationToken>, NULL if absent */
};

/* <Error><Code/><Message/><BucketName/></Error>. 0 when the root is Error
 * (fields may be empty), -EBADMSG otherwise (out is then all empty). */
int s3xml_parse_error(const char *xml, size_t len, struct s3xml_error *out);

/* InitiateMultipartUploadResult/UploadId -> *upload_id (caller frees).
 * -EBADMSG also when UploadId is missing or empty. */
int s3xml_parse_initiate(const char *xml, size_t len, char **upload_id, struct s3xml_error *err);

/* ListBucketResult: every Contents/Key + Size, IsTruncated,
 * NextContinuationToken. On failure *out is left empty. */
int s3xml_parse_list(const char *xml, size_t len, struct s3xml_list *out, struct s3xml_error *err);
void s3xml_list_clear(struct s3xml_list *l); /* zeroed struct ok */

/* CompleteMultipartUploadResult; its ETag into *etag (caller frees; NULL
 * if the service sent none). */
int s3xml_parse_complete(const char *xml, size_t len, char **etag, struct s3xml_error *err);

struct s3xml_part {
    int number;       /* 1..10000 */
    const char *etag; /* as the UploadPart reply gave it, quotes included */
};

/* The CompleteMultipartUpload request body for parts (in the order
 * given), with XML escaping. Caller frees. */
char *s3xml_complete_body(const struct s3xml_part *parts, size_t n);

#endif
