"""make install DESTDIR=... gives the expected tree and keeps an existing config."""
import os
import subprocess

from conftest import ROOT


def test_install_tree(tmpdir_path):
    dest = os.path.join(tmpdir_path, "root")
    r = subprocess.run(["make", "-s", "install", "DESTDIR=" + dest, "PREFIX=/usr/local"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for p in ["usr/local/bin/dripd", "usr/local/bin/dripctl", "usr/local/bin/dripd-decode",
              "etc/dripd/dripd.yaml", "etc/dripd/admin.token",
              "usr/local/share/dripd/dripd.yaml.example",
              "usr/local/lib/systemd/system/dripd.service", "usr/local/lib/systemd/system/dripd.socket",
              "usr/local/share/man/man8/dripd.8", "usr/local/share/man/man1/dripctl.1",
              "usr/local/share/man/man5/dripd.yaml.5"]:
        assert os.path.exists(os.path.join(dest, p)), p
    assert os.access(os.path.join(dest, "usr/local/bin/dripd"), os.X_OK)
    unit = open(os.path.join(dest, "usr/local/lib/systemd/system/dripd.service")).read()
    assert "ExecStart=/usr/local/bin/dripd" in unit
    # The service config holds no secret and is readable by the dynamic user;
    # the token is a 0600 credential file that the unit hands over.
    cfg = os.path.join(dest, "etc/dripd/dripd.yaml")
    tok = os.path.join(dest, "etc/dripd/admin.token")
    assert os.stat(cfg).st_mode & 0o777 == 0o644
    assert os.stat(tok).st_mode & 0o777 == 0o600 and len(open(tok).read().strip()) >= 32
    assert "LoadCredential=admin.token:/etc/dripd/admin.token" in unit
    text = open(cfg).read().replace("/run/credentials/dripd.service/admin.token", tok)
    text = text.replace("/var/lib/dripd", os.path.join(tmpdir_path, "state"))
    check = os.path.join(tmpdir_path, "check.yaml")
    with open(check, "w") as f:
        f.write(text)
    r = subprocess.run([os.path.join(dest, "usr/local/bin/dripd"), "-c", check, "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
    # An operator's config survives a second install.
    with open(cfg, "w") as f:
        f.write("# mine\n")
    r = subprocess.run(["make", "-s", "install", "DESTDIR=" + dest, "PREFIX=/usr/local"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0
    assert open(cfg).read() == "# mine\n"
