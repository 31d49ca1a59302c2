"""Sweeps on a Dask scheduler: TLS with certificates, and a warning for plain TCP beyond loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sbrnn.child.sweep import executors
from sbrnn.cli import app
from sbrnn.errors import SbrnnError
from sbrnn.records import read_records

SWEEP = ["child", "sweep", "--task", "toy-anomaly", "--runs", "2", "--budget", "300", "--epochs", "1"]


def make_certificates(directory: Path) -> tuple[str, str, str]:
    """A throwaway CA and one certificate signed by it, with the README's openssl commands:
    (CA file, certificate, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    commands = [
        "openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=sbrnn-cluster-ca "
        "-keyout ca-key.pem -out ca.pem",
        "openssl req -newkey rsa:2048 -nodes -subj /CN=sbrnn-cluster -keyout key.pem -out cert.csr",
        "openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 365 -out cert.pem",
    ]
    for command in commands:
        subprocess.run(command.split(), cwd=directory, check=True, capture_output=True, timeout=60)
    return str(directory / "ca.pem"), str(directory / "cert.pem"), str(directory / "key.pem")


def test_plain_tcp_beyond_loopback_is_warned_about():
    for address in [
        "tcp://127.0.0.1:8786",
        "tcp://localhost:8786",
        "tcp://[::1]:8786",
        "tls://10.0.0.5:8786",
    ]:
        assert executors.plain_tcp_warning(address) is None, address
    for address in ["tcp://10.0.0.5:8786", "tcp://192.0.2.10:8786", "tcp://[2001:db8::1]:8786"]:
        warning = executors.plain_tcp_warning(address)
        assert warning is not None and address in warning and "tls://" in warning


def test_cli_warns_in_one_line_before_connecting_over_plain_tcp(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")

    def refuse(address, **kwargs):
        raise OSError(f"Timed out trying to connect to {address}")

    monkeypatch.setattr(distributed, "Client", refuse)
    records = str(tmp_path / "r")
    remote = CliRunner().invoke(app, [*SWEEP, "--records", records, "--scheduler", "tcp://192.0.2.10:8786"])
    assert remote.exit_code == 2
    lines = remote.stderr.strip().splitlines()
    warnings = [line for line in lines if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: the Dask scheduler tcp://192.0.2.10:8786")
    assert lines[-1].startswith("error: cannot reach the Dask scheduler at tcp://192.0.2.10:8786")
    local = CliRunner().invoke(app, [*SWEEP, "--records", records, "--scheduler", "tcp://127.0.0.1:8786"])
    assert local.exit_code == 2 and "warning" not in local.stderr


def test_tls_scheduler_without_certificates_is_refused_in_one_line(tmp_path):
    pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.comm.tls.ca-file": None, "distributed.comm.tls.client.cert": None}):
        cluster = executors.DaskCluster("tls://127.0.0.1:8786")
        with pytest.raises(SbrnnError, match="needs TLS certificates"):
            list(cluster.run([]))
    missing = executors.DaskCluster(
        "tls://127.0.0.1:8786", security=executors.TlsFiles("no-ca.pem", "no.pem")
    )
    with pytest.raises(SbrnnError, match="TLS CA file 'no-ca.pem' does not exist"):
        list(missing.run([]))
    with pytest.raises(SbrnnError, match="not a TLS address"):
        executors.DaskCluster("tcp://h:1", security=executors.TlsFiles("a", "b"))
    with pytest.raises(SbrnnError, match="apply to a scheduler address"):
        executors.make_executor(local_cluster=2, tls=executors.TlsFiles("a", "b"))


@pytest.mark.slow
def test_a_sweep_runs_on_a_tls_scheduler_with_the_certificate_flags(tmp_path, one_thread):
    pytest.importorskip("distributed")
    from distributed import LocalCluster, Security

    ca, cert, key = make_certificates(tmp_path / "tls")
    roles = {
        f"tls_{role}_{part}": path
        for role in ("scheduler", "worker", "client")
        for part, path in [("cert", cert), ("key", key)]
    }
    security = Security(require_encryption=True, tls_ca_file=ca, **roles)
    records = tmp_path / "runs"
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tls://",
        host="127.0.0.1",
        security=security,
        dashboard_address=None,
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        flags = ["--scheduler", address, "--tls-ca-file", ca, "--tls-cert", cert, "--tls-key", key]
        result = CliRunner().invoke(app, [*SWEEP, "--records", str(records), *flags, "--json"])
        assert result.exit_code == 0, result.stderr
        assert "warning" not in result.stderr
        assert json.loads(result.stdout)["statuses"] == {"ok": 2}
        # the same scheduler over plain TCP, or without a client certificate, lets nobody in
        plain = CliRunner().invoke(
            app,
            [*SWEEP, "--records", str(tmp_path / "x"), "--scheduler", address.replace("tls://", "tcp://")],
        )
        assert plain.exit_code == 2 and "error: cannot reach the Dask scheduler" in plain.stderr
    assert sorted(r.status for r in read_records(records)) == ["ok", "ok"]
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").glob("*.parquet"))
