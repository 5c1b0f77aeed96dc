"""make install DESTDIR=... gives the expected tree, keeps an existing
config and ships no secret; the documented `dripd -c /etc/dripd/dripd.yaml
--check` passes on the installed config as it is; the admin token is made
on the machine (dripd --make-token, run by dripd-token.service); and
everything dripd creates under data_dir is private to it."""
import os
import re
import stat
import subprocess

from conftest import DRIPD, ROOT, make_file


def install(dest):
    r = subprocess.run(["make", "-s", "install", "DESTDIR=" + dest, "PREFIX=/usr/local"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_install_tree(tmpdir_path):
    dest = os.path.join(tmpdir_path, "root")
    install(dest)
    for p in ["usr/local/bin/dripd", "usr/local/bin/dripctl", "etc/dripd/dripd.yaml",
              "usr/local/share/dripd/dripd.yaml.example",
              "usr/local/lib/systemd/system/dripd.service", "usr/local/lib/systemd/system/dripd.socket",
              "usr/local/lib/systemd/system/dripd-token.service",
              "usr/local/share/man/man8/dripd.8", "usr/local/share/man/man1/dripctl.1",
              "usr/local/share/man/man5/dripd.yaml.5"]:
        assert os.path.exists(os.path.join(dest, p)), p
    assert os.access(os.path.join(dest, "usr/local/bin/dripd"), os.X_OK)
    # No secret in the tree: a package built from it goes to many machines.
    tokens = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs if "token" in f and f.endswith(".token")]
    assert tokens == [], tokens
    unit = open(os.path.join(dest, "usr/local/lib/systemd/system/dripd.service")).read()
    assert "ExecStart=/usr/local/bin/dripd" in unit
    assert "LoadCredential=admin.token:/etc/dripd/admin.token" in unit
    assert re.search(r"^Wants=.*\bdripd-token\.service\b", unit, re.M)
    assert re.search(r"^After=.*\bdripd-token\.service\b", unit, re.M)
    tok_unit = open(os.path.join(dest, "usr/local/lib/systemd/system/dripd-token.service")).read()
    assert "ConditionPathExists=!/etc/dripd/admin.token" in tok_unit
    m = re.search(r"^ExecStart=(/usr/local/bin/dripd --make-token (/etc/dripd/admin\.token))$", tok_unit, re.M)
    assert m, tok_unit
    # The service config holds no secret and is readable by the dynamic user.
    cfg = os.path.join(dest, "etc/dripd/dripd.yaml")
    assert os.stat(cfg).st_mode & 0o777 == 0o644
    # The documented check, on the installed file as it is: the credential
    # (only the running service has it) is noted, the rest checked.
    r = subprocess.run([os.path.join(dest, "usr/local/bin/dripd"), "-c", cfg, "--check"],
                       capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                            if k != "CREDENTIALS_DIRECTORY"})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
    assert re.search(r"dripd\.yaml:\d+:\d+: note: users\[0\]\.token_file: \"/run/credentials/dripd\.service/"
                     r"admin\.token\" is a systemd credential", r.stderr), r.stderr
    # Inside the service (CREDENTIALS_DIRECTORY set) a missing credential is an error.
    r = subprocess.run([os.path.join(dest, "usr/local/bin/dripd"), "-c", cfg, "--check"], capture_output=True,
                       text=True, env=dict(os.environ, CREDENTIALS_DIRECTORY="/run/credentials/dripd.service"))
    assert r.returncode == 1 and "cannot read" in r.stderr, r.stderr
    # The first start: dripd-token.service's command makes the token once.
    token = os.path.join(dest, "etc/dripd/admin.token")
    cmd = m.group(1).replace("/usr/local/bin/dripd", os.path.join(dest, "usr/local/bin/dripd")).replace(
        m.group(2), token).split()
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and "created a new token" in r.stdout, r.stdout + r.stderr
    first = open(token).read()
    assert os.stat(token).st_mode & 0o777 == 0o600 and re.fullmatch(r"[0-9a-f]{48}\n", first)
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and "exists; kept" in r.stdout and open(token).read() == first
    # An operator's config survives a second install.
    with open(cfg, "w") as f:
        f.write("# mine\n")
    install(dest)
    assert open(cfg).read() == "# mine\n"


def test_check_still_fails_on_missing_files(tmpdir_path):
    """Only a systemd credential is let through --check unread."""
    cfg = os.path.join(tmpdir_path, "c.yaml")
    with open(cfg, "w") as f:
        f.write("users:\n  - name: a\n    token_file: %s/nope.token\n" % tmpdir_path)
    r = subprocess.run([DRIPD, "-c", cfg, "--check"], capture_output=True, text=True)
    assert r.returncode == 1 and "c.yaml:3:" in r.stderr and "cannot read" in r.stderr, r.stderr


def test_make_token_refuses_a_bad_file(tmpdir_path):
    bad = os.path.join(tmpdir_path, "short.token")
    with open(bad, "w") as f:
        f.write("abc\n")
    r = subprocess.run([DRIPD, "--make-token", bad], capture_output=True, text=True)
    assert r.returncode == 1 and "too short" in r.stderr
    assert open(bad).read() == "abc\n"


def test_data_dir_is_private_under_umask_022(dripd_factory, tmpdir_path):
    old = os.umask(0o022)
    try:
        d = dripd_factory()
    finally:
        os.umask(old)
    f = make_file(os.path.join(tmpdir_path, "p.bin"), 100000)
    st, doc = d.put_file(f, "/p/p.bin")
    assert st == 202
    d.wait_job(doc["job"]["id"])
    st, _, _ = d.curl(d.url("/v1/media/%s/content" % doc["media"]["id"]))  # fills the cache
    assert st == 200
    seen, loose = [], []
    for top, dirs, files in os.walk(d.data_dir):
        for name in dirs + files:
            p = os.path.join(top, name)
            mode = os.lstat(p).st_mode
            seen.append(os.path.relpath(p, d.data_dir))
            if stat.S_IMODE(mode) & 0o077:
                loose.append("%s %o" % (os.path.relpath(p, d.data_dir), stat.S_IMODE(mode)))
    assert {"catalog.db", "catalog.db-wal", "catalog.db-shm", "master.key"} <= set(seen), seen
    assert any(s.startswith("objects/") for s in seen) and any(s.startswith("cache/") for s in seen), seen
    assert loose == [], loose
