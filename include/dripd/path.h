/* path.h - validation and normalisation of user-supplied media paths.
 *
 * A media path is absolute, UTF-8 (well-formed, no overlongs, no
 * surrogates), has no NUL or control characters (< 0x20, 0x7f), no empty
 * segments ("//"), no "." or ".." segments, no trailing '/', each segment
 * <= 255 bytes and the whole <= 1024 bytes. Folders follow the same rules,
 * except that "/" is the root folder. Pure functions, thread-safe.
 */
#ifndef DRIPD_PATH_H
#define DRIPD_PATH_H

#include <stddef.h>

#define DR_PATH_MAX 1024
#define DR_SEGMENT_MAX 255

/* Validate a file path (e.g. from PUT /v1/files{path}). Returns 0 and a
 * heap copy in *out (caller frees), or -EINVAL with a reason in err
 * ("path segment '..' is not allowed"). */
int path_normalize_file(const char *in, char **out, char *err, size_t errlen);
/* Validate a folder; "" and "/" give "/". Same contract. */
int path_normalize_folder(const char *in, char **out, char *err, size_t errlen);
/* Join folder and file name into a file path ("/" + "a.txt" -> "/a.txt"),
 * validating the name as one segment. Same contract. */
int path_join(const char *folder, const char *name, char **out, char *err, size_t errlen);
/* Split "/a/b/c.txt" into folder "/a/b" and name "c.txt" (heap copies). */
void path_split(const char *path, char **folder, char **name);

#endif
