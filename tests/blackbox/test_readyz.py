"""/readyz: JSON detail; 503 while the store is unreachable, back to 200 after."""
import os

from conftest import wait_until


def readyz(d):
    st, h, body = d.curl(d.url("/readyz"), user=None)
    import json
    return st, json.loads(body)


def test_ready_with_detail(dripd_factory):
    d = dripd_factory(config={"health": {"store_probe_interval": "200ms"}})
    st, doc = wait_until(lambda: (lambda r: r if r[1]["store"] == "reachable" else None)(readyz(d)),
                         20, "store probed")
    assert st == 200 and doc["ready"] is True and doc["problems"] == []
    assert doc["queue_limit"] == 10000 and doc["free_disk"] > 0


def test_store_gone_then_back(dripd_factory):
    d = dripd_factory(config={"health": {"store_probe_interval": "200ms"}})
    objects = os.path.join(d.data_dir, "objects")
    wait_until(lambda: readyz(d)[0] == 200 and readyz(d)[1]["store"] == "reachable", 20, "ready")
    # The store breaks: its directory is replaced by a file (as a failed mount would leave).
    os.rename(objects, objects + ".away")
    open(objects, "w").close()
    st, doc = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(readyz(d)), 20, "503")
    assert doc["ready"] is False and doc["store"] == "unreachable"
    assert any("store" in p for p in doc["problems"])
    _, h, body = d.curl(d.url("/metrics"), user=None)
    assert b"\ndripd_store_up 0\n" in body
    os.unlink(objects)
    os.rename(objects + ".away", objects)
    st, doc = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(readyz(d)), 20, "ready again")
    assert doc["store"] == "reachable"


def test_s3_outage_then_back(dripd_factory, tmpdir_path):
    """With the S3 backend: killing s3rver turns /readyz 503, restarting it brings 200 back."""
    from s3util import S3rver, s3_config
    srv = S3rver(os.path.join(tmpdir_path, "s3"))
    srv.start()
    try:
        cfg = s3_config(srv.endpoint)
        cfg["health"] = {"store_probe_interval": "200ms"}
        d = dripd_factory(config=cfg)
        wait_until(lambda: readyz(d)[0] == 200 and readyz(d)[1]["store"] == "reachable", 30, "ready")
        srv.kill()
        st, doc = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(readyz(d)), 30, "503")
        assert any("s3" in p for p in doc["problems"]), doc
        srv.restart()
        wait_until(lambda: readyz(d)[0] == 200, 30, "ready again")
    finally:
        srv.stop()
