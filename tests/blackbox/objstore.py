"""The local object store as the tests see it on disk: keys, bytes, presence.

The "local" store (storage.local.path, <data_dir>/objects by default) keeps
most objects as one file each, named by its key. Since issue 15, small
sealed objects (the objects of uploads whose body was kept inline, at most
INGEST_INLINE_MAX = 16 KiB of plaintext: curl PUT and tus alike) are rows of
an SQLite database in that directory instead:

    <objects dir>/.small.db   (WAL: .small.db-wal and .small.db-shm beside it)
    CREATE TABLE objects(key TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL)

where key is the name the file would have had and data the bytes it would
have held. dripd reads the database first, then a file; deletes remove
both; listings yield rows and files. Larger objects, variants, metadata
objects and trash marks stay files.

A test that lists, reads, counts, corrupts or deletes objects goes through
this module, so it sees both kinds and need not know where an object
lives. Every function takes the objects directory (objects_dir(d) for a
daemon of conftest.Dripd). Temporary files of puts (".tmp-*") and the
database's own files start with '.', so they are never keys; tests of the
sweep of temporary files look at the files themselves.

The daemon may be writing the database while a test looks (WAL): each call
opens its own connection (busy timeout 10 s), does one short statement and
closes it. Nothing here ever creates the database: when .small.db is absent
(an older dripd, a PostgreSQL catalog whose bodies are never inline, a store
holding only large objects) every object is a file.
"""
import fnmatch
import os
import sqlite3

DB_NAME = ".small.db"


def objects_dir(d):
    """The local store's directory of a conftest.Dripd (or anything with
    .config and .data_dir): storage.local.path, else <data_dir>/objects."""
    return (d.config.get("storage", {}).get("local", {}).get("path")
            or os.path.join(d.data_dir, "objects"))


def db_path(objects_dir):
    return os.path.join(objects_dir, DB_NAME)


def _connect(objects_dir, write=False):
    """A connection to the small-object database, or None when it does not
    exist (never created here: mode=ro / mode=rw fail on a missing file)."""
    path = db_path(objects_dir)
    if not os.path.exists(path):
        return None
    try:
        return sqlite3.connect("file:%s?mode=%s" % (path, "rw" if write else "ro"), uri=True,
                               timeout=10)
    except sqlite3.OperationalError:
        if os.path.exists(path):
            raise
        return None  # removed between the check and the open


def _db(objects_dir, sql, args=(), write=False):
    """Run one statement; (rows, rowcount), or ([], 0) without a database."""
    c = _connect(objects_dir, write)
    if c is None:
        return [], 0
    try:
        with c:  # a write commits here
            cur = c.execute(sql, args)
            return cur.fetchall(), cur.rowcount
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):  # made by dripd a moment ago, its schema not yet
            return [], 0
        raise
    finally:
        c.close()


def _file(objects_dir, key):
    """The path of key's file, or None. The store is flat (keys have no
    '/'); a file in a subdirectory is found too, as the old helpers'
    recursive globs did."""
    p = os.path.join(objects_dir, key)
    if os.path.isfile(p):
        return p
    for top, _dirs, files in os.walk(objects_dir):
        if key in files:
            return os.path.join(top, key)
    return None


def db_keys(objects_dir):
    """The keys of the objects held as rows of .small.db."""
    rows, _ = _db(objects_dir, "SELECT key FROM objects")
    return {r[0] for r in rows}


def file_keys(objects_dir):
    """The keys of the objects held as files (names not starting with '.',
    in any subdirectory)."""
    return {f for _, _, fs in os.walk(objects_dir) for f in fs if not f.startswith(".")}


def keys(objects_dir):
    """Every object key in the store: files and rows."""
    return file_keys(objects_dir) | db_keys(objects_dir)


def in_db(objects_dir, key):
    rows, _ = _db(objects_dir, "SELECT 1 FROM objects WHERE key = ?", (key,))
    return bool(rows)


def is_file(objects_dir, key):
    return _file(objects_dir, key) is not None


def exists(objects_dir, key):
    return in_db(objects_dir, key) or is_file(objects_dir, key)


def read(objects_dir, key):
    """The object's bytes, from its row if it has one (as dripd reads),
    else from its file; FileNotFoundError when it is neither."""
    rows, _ = _db(objects_dir, "SELECT data FROM objects WHERE key = ?", (key,))
    if rows:
        return bytes(rows[0][0])
    p = _file(objects_dir, key)
    if p is None:
        raise FileNotFoundError("object %s: no row in %s and no file in %s"
                                % (key, DB_NAME, objects_dir))
    with open(p, "rb") as f:
        return f.read()


def size(objects_dir, key):
    rows, _ = _db(objects_dir, "SELECT length(data) FROM objects WHERE key = ?", (key,))
    if rows:
        return rows[0][0]
    p = _file(objects_dir, key)
    if p is None:
        raise FileNotFoundError("object %s: no row in %s and no file in %s"
                                % (key, DB_NAME, objects_dir))
    return os.path.getsize(p)


def write(objects_dir, key, data):
    """Replace the bytes of an existing object where it lives (to corrupt or
    truncate it): its row if it has one, else its file, rewritten in place
    (same inode, as the tests' open(..., "r+b") did). FileNotFoundError
    when it is neither."""
    _, n = _db(objects_dir, "UPDATE objects SET data = ? WHERE key = ?",
               (sqlite3.Binary(bytes(data)), key), write=True)
    if n:
        return
    p = _file(objects_dir, key)
    if p is None:
        raise FileNotFoundError("object %s: no row in %s and no file in %s"
                                % (key, DB_NAME, objects_dir))
    with open(p, "r+b") as f:
        f.write(data)
        f.truncate(len(data))


def flip(objects_dir, key, offset, mask=0xFF):
    """XOR the byte at offset (negative: from the end) with mask, wherever
    the object lives; returns the absolute offset."""
    data = bytearray(read(objects_dir, key))
    if offset < 0:
        offset += len(data)
    data[offset] ^= mask
    write(objects_dir, key, bytes(data))
    return offset


def truncate(objects_dir, key, length):
    write(objects_dir, key, read(objects_dir, key)[:length])


def delete(objects_dir, key):
    """Remove the object's row and its file; True when there was either."""
    _, n = _db(objects_dir, "DELETE FROM objects WHERE key = ?", (key,), write=True)
    p = _file(objects_dir, key)
    if p is not None:
        os.unlink(p)
    return bool(n) or p is not None


def matching(objects_dir, pattern):
    """The keys matching a glob pattern (fnmatch rules, on the key alone),
    files and rows, sorted: matching(od, mid + "~*")."""
    return sorted(k for k in keys(objects_dir) if fnmatch.fnmatchcase(k, pattern))


__all__ = ["DB_NAME", "objects_dir", "db_path", "db_keys", "file_keys", "keys", "in_db",
           "is_file", "exists", "read", "size", "write", "flip", "truncate", "delete",
           "matching"]
