/* test_s3xml.c - parsing of S3 XML replies (as AWS, MinIO and s3rver send
 * them) and the CompleteMultipartUpload body. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/s3xml.h"

#define XMLDECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
#define NS " xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""

static int perr(const char *s, struct s3xml_error *e)
{
    return s3xml_parse_error(s, strlen(s), e);
}

START_TEST(test_error_aws)
{
    const char *doc = XMLDECL "<Error><Code>NoSuchBucket</Code>"
                              "<Message>The specified bucket does not exist</Message>"
                              "<BucketName>media-x</BucketName>"
                              "<RequestId>4442587FB7D0A2F9</RequestId></Error>";
    struct s3xml_error e;
    ck_assert_int_eq(perr(doc, &e), 0);
    ck_assert_str_eq(e.code, "NoSuchBucket");
    ck_assert_str_eq(e.message, "The specified bucket does not exist");
    ck_assert_str_eq(e.bucket, "media-x");
}
END_TEST

START_TEST(test_error_entities_and_truncation)
{
    char doc[2048];
    char longmsg[1000];
    memset(longmsg, 'm', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    snprintf(doc, sizeof doc, "<Error><Code>Access&amp;Denied</Code><Message>%s</Message></Error>",
             longmsg);
    struct s3xml_error e;
    ck_assert_int_eq(perr(doc, &e), 0);
    ck_assert_str_eq(e.code, "Access&Denied");
    ck_assert_uint_eq(strlen(e.message), sizeof e.message - 1);
    ck_assert_str_eq(e.bucket, "");
}
END_TEST

START_TEST(test_error_wrong_root_and_garbage)
{
    struct s3xml_error e;
    ck_assert_int_eq(perr("<ListBucketResult/>", &e), -EBADMSG);
    ck_assert_str_eq(e.code, "");
    ck_assert_int_eq(perr("<Error><Code>x</Code>", &e), -EBADMSG); /* truncated */
    ck_assert_int_eq(perr("not xml at all", &e), -EBADMSG);
    ck_assert_int_eq(perr("", &e), -EBADMSG);
    /* An HTML error page from a proxy is not an S3 error. */
    ck_assert_int_eq(perr("<html><body>502 Bad Gateway</body></html>", &e), -EBADMSG);
}
END_TEST

START_TEST(test_no_entity_expansion)
{
    const char *bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
                       "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>"
                       "<Error><Code>&lol2;</Code></Error>";
    struct s3xml_error e;
    ck_assert_int_eq(perr(bomb, &e), -EBADMSG);
    const char *ext = "<!DOCTYPE Error SYSTEM \"file:///etc/passwd\"><Error><Code>x</Code></Error>";
    ck_assert_int_eq(perr(ext, &e), -EBADMSG);
}
END_TEST

START_TEST(test_initiate)
{
    const char *doc = XMLDECL "<InitiateMultipartUploadResult" NS ">"
                              "<Bucket>media</Bucket><Key>01J_20260101T000000Z.bin</Key>"
                              "<UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5t</UploadId>"
                              "</InitiateMultipartUploadResult>";
    char *id = NULL;
    ck_assert_int_eq(s3xml_parse_initiate(doc, strlen(doc), &id, NULL), 0);
    ck_assert_str_eq(id, "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5t");
    free(id);

    const char *empty = "<InitiateMultipartUploadResult><UploadId></UploadId>"
                        "</InitiateMultipartUploadResult>";
    ck_assert_int_eq(s3xml_parse_initiate(empty, strlen(empty), &id, NULL), -EBADMSG);
    ck_assert_ptr_null(id);
    const char *none =
        "<InitiateMultipartUploadResult><Key>k</Key></InitiateMultipartUploadResult>";
    ck_assert_int_eq(s3xml_parse_initiate(none, strlen(none), &id, NULL), -EBADMSG);
    /* A nested UploadId elsewhere does not count. */
    const char *nested = "<InitiateMultipartUploadResult><X><UploadId>a</UploadId></X>"
                         "</InitiateMultipartUploadResult>";
    ck_assert_int_eq(s3xml_parse_initiate(nested, strlen(nested), &id, NULL), -EBADMSG);
}
END_TEST

START_TEST(test_initiate_error_doc)
{
    const char *doc = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
    char *id = NULL;
    struct s3xml_error e;
    ck_assert_int_eq(s3xml_parse_initiate(doc, strlen(doc), &id, &e), -EREMOTEIO);
    ck_assert_ptr_null(id);
    ck_assert_str_eq(e.code, "AccessDenied");
    ck_assert_int_eq(s3xml_parse_initiate(doc, strlen(doc), &id, NULL), -EREMOTEIO);
}
END_TEST

START_TEST(test_list_page)
{
    const char *doc =
        XMLDECL "<ListBucketResult" NS "><Name>media</Name><Prefix></Prefix><KeyCount>2</KeyCount>"
                "<MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
                "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
                "</NextContinuationToken>"
                "<Contents><Key>a_20260101T000000Z.jpg</Key><LastModified>2026-01-01T00:00:00.000Z"
                "</LastModified><ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag>"
                "<Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>"
                "<Contents><Key>b &amp; c.bin</Key><Size>68719476736</Size>"
                "<Owner><ID>x</ID><DisplayName>y</DisplayName></Owner></Contents>"
                "</ListBucketResult>";
    struct s3xml_list l;
    ck_assert_int_eq(s3xml_parse_list(doc, strlen(doc), &l, NULL), 0);
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(l.objects[0].key, "a_20260101T000000Z.jpg");
    ck_assert_uint_eq(l.objects[0].size, 0);
    ck_assert_str_eq(l.objects[1].key, "b & c.bin");
    ck_assert_uint_eq(l.objects[1].size, 68719476736ull);
    ck_assert(l.truncated);
    ck_assert_str_eq(l.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    s3xml_list_clear(&l);
    ck_assert_ptr_null(l.objects);
    ck_assert_uint_eq(l.n, 0);
}
END_TEST

START_TEST(test_list_last_and_empty)
{
    /* s3rver writes an empty prefix as <Prefix/> and omits the token. */
    const char *doc = "<ListBucketResult><Name>media</Name><Prefix/><KeyCount>1</KeyCount>"
                      "<IsTruncated>false</IsTruncated>"
                      "<Contents><Key>k</Key><Size>5</Size></Contents></ListBucketResult>";
    struct s3xml_list l;
    ck_assert_int_eq(s3xml_parse_list(doc, strlen(doc), &l, NULL), 0);
    ck_assert_uint_eq(l.n, 1);
    ck_assert(!l.truncated);
    ck_assert_ptr_null(l.next_token);
    s3xml_list_clear(&l);

    const char *empty = "<ListBucketResult><Name>media</Name><KeyCount>0</KeyCount>"
                        "<IsTruncated>false</IsTruncated></ListBucketResult>";
    ck_assert_int_eq(s3xml_parse_list(empty, strlen(empty), &l, NULL), 0);
    ck_assert_uint_eq(l.n, 0);
    s3xml_list_clear(&l);
}
END_TEST

START_TEST(test_list_malformed)
{
    struct s3xml_list l;
    struct s3xml_error e;
    const char *bad_size = "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents>"
                           "</ListBucketResult>";
    ck_assert_int_eq(s3xml_parse_list(bad_size, strlen(bad_size), &l, NULL), -EBADMSG);
    ck_assert_uint_eq(l.n, 0);
    const char *no_key = "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>";
    ck_assert_int_eq(s3xml_parse_list(no_key, strlen(no_key), &l, NULL), -EBADMSG);
    const char *overflow = "<ListBucketResult><Contents><Key>k</Key>"
                           "<Size>18446744073709551616</Size></Contents></ListBucketResult>";
    ck_assert_int_eq(s3xml_parse_list(overflow, strlen(overflow), &l, NULL), -EBADMSG);
    const char *trunc_no_token = "<ListBucketResult><IsTruncated>true</IsTruncated>"
                                 "</ListBucketResult>";
    ck_assert_int_eq(s3xml_parse_list(trunc_no_token, strlen(trunc_no_token), &l, NULL), -EBADMSG);
    /* Cut off mid-document (a connection dropped): nothing leaks, nothing returned. */
    const char *cut = "<ListBucketResult><Contents><Key>k</Key><Size>1</Size></Contents>"
                      "<Contents><Key>j</Key>";
    ck_assert_int_eq(s3xml_parse_list(cut, strlen(cut), &l, NULL), -EBADMSG);
    ck_assert_uint_eq(l.n, 0);
    const char *err = "<Error><Code>NoSuchBucket</Code><BucketName>m</BucketName></Error>";
    ck_assert_int_eq(s3xml_parse_list(err, strlen(err), &l, &e), -EREMOTEIO);
    ck_assert_str_eq(e.code, "NoSuchBucket");
    ck_assert_str_eq(e.bucket, "m");
}
END_TEST

START_TEST(test_list_bounds)
{
    /* A key longer than S3XML_MAX_TEXT is refused, not truncated. */
    size_t klen = S3XML_MAX_TEXT + 10;
    char *doc = malloc(klen + 200);
    char *p = doc;
    p += sprintf(p, "<ListBucketResult><Contents><Key>");
    memset(p, 'k', klen);
    p += klen;
    sprintf(p, "</Key><Size>1</Size></Contents></ListBucketResult>");
    struct s3xml_list l;
    ck_assert_int_eq(s3xml_parse_list(doc, strlen(doc), &l, NULL), -E2BIG);
    free(doc);

    /* More objects than S3XML_MAX_OBJECTS in one page. */
    size_t n = S3XML_MAX_OBJECTS + 1;
    const char *one = "<Contents><Key>k</Key><Size>1</Size></Contents>";
    doc = malloc(n * strlen(one) + 64);
    p = doc + sprintf(doc, "<ListBucketResult>");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s", one);
    sprintf(p, "</ListBucketResult>");
    ck_assert_int_eq(s3xml_parse_list(doc, strlen(doc), &l, NULL), -E2BIG);
    ck_assert_uint_eq(l.n, 0);
    free(doc);
}
END_TEST

START_TEST(test_list_prefixed_namespace)
{
    const char *doc = "<s3:ListBucketResult xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                      "<s3:Contents><s3:Key>k</s3:Key><s3:Size>7</s3:Size></s3:Contents>"
                      "</s3:ListBucketResult>";
    struct s3xml_list l;
    ck_assert_int_eq(s3xml_parse_list(doc, strlen(doc), &l, NULL), 0);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_uint_eq(l.objects[0].size, 7);
    s3xml_list_clear(&l);
}
END_TEST

START_TEST(test_complete_result)
{
    const char *doc = XMLDECL
        "<CompleteMultipartUploadResult" NS "><Location>http://h/media/k</Location>"
        "<Bucket>media</Bucket><Key>k</Key>"
        "<ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag></CompleteMultipartUploadResult>";
    char *etag = NULL;
    ck_assert_int_eq(s3xml_parse_complete(doc, strlen(doc), &etag, NULL), 0);
    ck_assert_str_eq(etag, "\"3858f62230ac3c915f300c664312c11f-9\"");
    free(etag);

    /* "200 OK" with an Error body: the upload did not complete. */
    const char *err = XMLDECL "\n\n<Error><Code>InternalError</Code>"
                              "<Message>We encountered an internal error.</Message></Error>";
    struct s3xml_error e;
    ck_assert_int_eq(s3xml_parse_complete(err, strlen(err), &etag, &e), -EREMOTEIO);
    ck_assert_ptr_null(etag);
    ck_assert_str_eq(e.code, "InternalError");
}
END_TEST

START_TEST(test_complete_body)
{
    struct s3xml_part parts[] = {{1, "\"aa\""}, {2, "bb&<>"}, {10000, ""}};
    char *body = s3xml_complete_body(parts, 3);
    ck_assert_str_eq(body, "<CompleteMultipartUpload>"
                           "<Part><PartNumber>1</PartNumber><ETag>&quot;aa&quot;</ETag></Part>"
                           "<Part><PartNumber>2</PartNumber><ETag>bb&amp;&lt;&gt;</ETag></Part>"
                           "<Part><PartNumber>10000</PartNumber><ETag></ETag></Part>"
                           "</CompleteMultipartUpload>");
    free(body);
    body = s3xml_complete_body(NULL, 0);
    ck_assert_str_eq(body, "<CompleteMultipartUpload></CompleteMultipartUpload>");
    free(body);
}
END_TEST

START_TEST(test_complete_body_many_parts)
{
    /* 10000 parts (the S3 maximum) with real-looking ETags: sized right. */
    static struct s3xml_part parts[10000];
    for (int i = 0; i < 10000; i++)
        parts[i] = (struct s3xml_part){i + 1, "\"0123456789abcdef0123456789abcdef\""};
    char *body = s3xml_complete_body(parts, 10000);
    const char *last = "<Part><PartNumber>10000</PartNumber><ETag>&quot;0123456789abcdef"
                       "0123456789abcdef&quot;</ETag></Part></CompleteMultipartUpload>";
    ck_assert_ptr_nonnull(strstr(body, last));
    ck_assert_str_eq(body + strlen(body) - strlen(last), last);
    free(body);
}
END_TEST

static Suite *s3xml_suite(void)
{
    Suite *s = suite_create("s3xml");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_error_aws);
    tcase_add_test(tc, test_error_entities_and_truncation);
    tcase_add_test(tc, test_error_wrong_root_and_garbage);
    tcase_add_test(tc, test_no_entity_expansion);
    tcase_add_test(tc, test_initiate);
    tcase_add_test(tc, test_initiate_error_doc);
    tcase_add_test(tc, test_list_page);
    tcase_add_test(tc, test_list_last_and_empty);
    tcase_add_test(tc, test_list_malformed);
    tcase_add_test(tc, test_list_bounds);
    tcase_add_test(tc, test_list_prefixed_namespace);
    tcase_add_test(tc, test_complete_result);
    tcase_add_test(tc, test_complete_body);
    tcase_add_test(tc, test_complete_body_many_parts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(s3xml_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
