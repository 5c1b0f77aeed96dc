#!/usr/bin/env python3
"""A tus 1.0 endpoint that discards what it receives: the ceiling of the
client itself (tus-js-client under node on this machine), so the tus
scenario can say how much of the client's own speed a server reaches.

Usage: tus_sink.py PORT   (serves http://127.0.0.1:PORT/files/; one thread
per connection; keeps only each upload's offset in memory)
"""
import socket
import sys
import threading

uploads = {}
lock = threading.Lock()


def reply(conn, status, headers):
    lines = ["HTTP/1.1 %s" % status, "Tus-Resumable: 1.0.0",
             "Access-Control-Expose-Headers: Location, Upload-Offset, Upload-Length",
             "Content-Length: 0"]
    lines += ["%s: %s" % kv for kv in headers.items()]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())


def serve(conn):
    buf = bytearray(1 << 20)
    data = b""
    try:
        while True:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, data = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            h = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
            clen = int(h.get("content-length", "0"))
            got = min(clen, len(data))
            data = data[got:]
            left = clen - got
            view = memoryview(buf)
            while left > 0:
                n = conn.recv_into(view, min(left, len(buf)))
                if n == 0:
                    return
                left -= n
            if method == "POST":
                with lock:
                    uid = "u%d" % len(uploads)
                    uploads[uid] = clen
                hdr = {"Location": "/files/" + uid}
                if clen > 0:  # creation-with-upload: the bytes came with the POST
                    hdr["Upload-Offset"] = str(clen)
                reply(conn, "201 Created", hdr)
            elif method == "PATCH":
                uid = path.rsplit("/", 1)[1]
                with lock:
                    uploads[uid] = int(h.get("upload-offset", "0")) + clen
                    off = uploads[uid]
                reply(conn, "204 No Content", {"Upload-Offset": str(off)})
            elif method == "HEAD":
                uid = path.rsplit("/", 1)[1]
                reply(conn, "200 OK", {"Upload-Offset": str(uploads.get(uid, 0)),
                                       "Cache-Control": "no-store"})
            else:
                reply(conn, "204 No Content", {"Tus-Version": "1.0.0"})
    finally:
        conn.close()


def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(64)
    print("tus sink on http://127.0.0.1:%s/files/" % sys.argv[1], flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
