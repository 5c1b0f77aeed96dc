"""docs/API.md lists every route and every metric the server has, and
nothing it does not have.

Routes come from the code: every router_add() in src/api/ (string macros
resolved) and the sub-resources of /v1/media/{id} (api_media.c's
sub_allow()). Metrics come from a live scrape after some traffic: every
family (# TYPE) with its type, and every label name seen on its series.
A failure names the route or metric and what to add where."""
import glob
import os
import re

from conftest import ROOT, make_file

API_MD = os.path.join(ROOT, "docs", "API.md")


def api_md():
    with open(API_MD) as f:
        return f.read()


def section(text, title):
    """The text of a '## title' section, up to the next '## '."""
    m = re.search(r"^## %s\n(.*?)(?=^## |\Z)" % re.escape(title), text, re.S | re.M)
    assert m, "docs/API.md has no '## %s' section" % title
    return m.group(1)


# ---------------------------------------------------------------- routes

def code_routes():
    """{(method, pattern)} from router_add() calls; a pattern ending in '/'
    is a prefix route."""
    routes = set()
    for path in glob.glob(os.path.join(ROOT, "src", "api", "*.c")):
        src = open(path).read()
        macros = dict(re.findall(r'^#define\s+(\w+)\s+"([^"]*)"', src, re.M))
        for method, expr in re.findall(r'router_add\(\s*"([^"]+)"\s*,\s*([^,]+),', src):
            parts = re.findall(r'"([^"]*)"|(\w+)', expr)
            pattern = ""
            for lit, name in parts:
                if name:
                    assert name in macros, "%s: router_add pattern %s is not a string macro" % (path, name)
                    pattern += macros[name]
                else:
                    pattern += lit
            routes.add((method, pattern))
    assert routes, "no router_add() found in src/api"
    return routes


def media_subresources():
    src = open(os.path.join(ROOT, "src", "api", "api_media.c")).read()
    m = re.search(r"static const char \*sub_allow\(const char \*rest\)\n\{(.*?)\n\}", src, re.S)
    assert m, "api_media.c: sub_allow() not found (update tests/blackbox/test_docs.py)"
    # strcmp(rest, "x"): /x; strncmp(rest, "x/", n): /x/{...} (one level more;
    # the docs may name the placeholder as they like)
    return (set(re.findall(r'strcmp\(rest, "([\w-]+)"\)', m.group(1))) |
            {p + "/{}" for p in re.findall(r'strncmp\(rest, "([\w-]+)/", \d+\)', m.group(1))})


def sub_covers(sub, doc_sub):
    """Does a sub-resource of sub_allow() ("shares", "shares/{}") cover a
    documented one ("shares/{}"; "versions/{}/restore" under "versions/{}")?"""
    return doc_sub == sub or (sub.endswith("/{}") and doc_sub.startswith(sub + "/"))


def placeholders(path):
    """/v1/media/{id}/shares/{user} -> /v1/media/{id}/shares/{} past the id."""
    head = "/v1/media/{id}/"
    if path.startswith(head):
        return head + re.sub(r"\{[^}/]+\}", "{}", path[len(head):])
    return path


def doc_routes():
    """{(method, path)} from the 'Routes at a glance' table: every
    backticked 'METHOD[/METHOD...] /path' in it, the query dropped."""
    table = section(api_md(), "Routes at a glance")
    routes = set()
    for methods, path in re.findall(r"`([A-Z]+(?:/[A-Z]+)*) (/[^`?\s]*)", table):
        for m in methods.split("/"):
            routes.add((m, path))
    return routes


def covers(doc_path, pattern):
    """Does a documented path fall under a code pattern?"""
    if pattern.endswith("/"):
        return doc_path.startswith(pattern) and len(doc_path) > len(pattern)
    return doc_path == pattern


def methods_match(code_method, doc_method):
    if code_method == "*":
        return True
    return code_method == doc_method or {code_method, doc_method} == {"GET", "HEAD"}


def test_every_route_is_documented():
    docs = doc_routes()
    missing = []
    for method, pattern in sorted(code_routes()):
        if pattern == "/":  # the web UI's catch-all: GET / and GET /{file}
            ok = ("GET", "/") in docs and ("GET", "/{file}") in docs
        else:
            ok = any(covers(p, pattern) and methods_match(method, m) for m, p in docs)
        if not ok:
            missing.append("%s %s%s" % (method, pattern, "{...}" if pattern.endswith("/") else ""))
    for sub in sorted(media_subresources()):
        if not any(sub_covers(sub, placeholders(p)[len("/v1/media/{id}/"):]) for _, p in docs):
            missing.append("/v1/media/{id}/" + sub)
    assert not missing, ("routes the server has and docs/API.md's 'Routes at a glance' does not list "
                         "(add a row, and a section for each): %s" % ", ".join(missing))


def test_every_documented_route_exists():
    code = code_routes()
    subs = media_subresources()
    stale = []
    for method, path in sorted(doc_routes()):
        if path in ("/", "/{file}"):
            ok = ("GET", "/") in code
        elif path.startswith("/v1/media/{id}/"):
            ok = any(sub_covers(s, placeholders(path)[len("/v1/media/{id}/"):]) for s in subs)
        else:
            ok = any(covers(path, p) and methods_match(m, method) for m, p in code)
        if not ok:
            stale.append("%s %s" % (method, path))
    assert not stale, "docs/API.md lists routes the server does not have: %s" % ", ".join(stale)


# ---------------------------------------------------------------- metrics

def scrape_families(text):
    """{family: (type, {label names})} from Prometheus text."""
    fams = {}
    for name, typ in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        fams[name] = (typ, set())
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?", line)
        name, labels = m.group(1), m.group(2) or ""
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in fams:
                fam = name[: -len(suffix)]
        assert fam in fams, "series %s has no # TYPE line" % name
        fams[fam][1].update(k for k in re.findall(r'(\w+)="', labels) if k != "le")
    return fams


def doc_metrics():
    """{family: (type, {label names})} from the '## Metrics' table."""
    out = {}
    for name, typ, labels in re.findall(r"^\| `(dripd_\w+)` \| (\w+) \|([^|]*)\|", section(api_md(), "Metrics"),
                                        re.M):
        out[name] = (typ, set(re.findall(r"`(\w+)`", labels)))
    assert out, "docs/API.md: the Metrics table has no rows"
    return out


def test_every_metric_and_label_is_documented(dripd, tmpdir_path):
    # Traffic, so that the labelled series exist: an upload, its job, a
    # download through the cache, a 404 and a metrics scrape.
    f = make_file(os.path.join(tmpdir_path, "d.bin"), 50000)
    st, doc = dripd.put_file(f, "/d/d.bin")
    assert st == 202
    dripd.wait_job(doc["job"]["id"])
    st, _, _ = dripd.curl(dripd.url("/v1/media/%s/content" % doc["media"]["id"]))
    assert st == 200
    dripd.curl(dripd.url("/v1/media/nope"))
    dripd.curl(dripd.url("/metrics"), user=None)
    st, _, body = dripd.curl(dripd.url("/metrics"), user=None)
    assert st == 200
    real = scrape_families(body.decode())
    documented = doc_metrics()
    problems = []
    for name, (typ, labels) in sorted(real.items()):
        if name not in documented:
            problems.append("%s (%s%s) is not in the table" % (name, typ, ", labels " + ", ".join(sorted(labels))
                                                                if labels else ""))
            continue
        dtyp, dlabels = documented[name]
        if dtyp != typ:
            problems.append("%s is a %s, documented as a %s" % (name, typ, dtyp))
        if labels - dlabels:
            problems.append("%s has label(s) %s, documented: %s" % (
                name, ", ".join(sorted(labels - dlabels)), ", ".join(sorted(dlabels)) or "none"))
    for name in sorted(set(documented) - set(real)):
        problems.append("%s is documented but the server has no such metric" % name)
    assert not problems, "docs/API.md '## Metrics' and GET /metrics differ:\n  " + "\n  ".join(problems)


def test_the_docs_point_only_at_files_users_have():
    """Links and file names in docs/API.md name files of this repository."""
    text = api_md()
    assert "/work/" not in text and "shared/CONTRACT.md" not in text
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert os.path.exists(os.path.join(ROOT, "docs", target)), "docs/API.md links to a missing %s" % target
