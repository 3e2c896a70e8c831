"""The hub on TLS (``wss://``): a CA and a server certificate for 127.0.0.1 / localhost
are made at test time; the SDK connects with that CA as ``ca_file`` and exchanges a
signed prediction, and a client without the CA fails at once with a clear error."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from bittensor import Wallet
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from agents.cli.common import CliError, connection_options
from sdk.connection import ValidatorConnection
from sdk.errors import CertificateError
from sdk.models import Prediction
from server_stub.cli import app
from server_stub.testing import LocalHub

from .kit.games import future_game
from .kit.keys import VALIDATOR, miner_key
from .kit.process import fresh_user_env
from .test_cli_process import accepted_count, bt_miner
from .test_hub_cli import free_port

BOB = miner_key("Bob")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a private CA and a certificate it signed for
    127.0.0.1 and localhost, valid for a day."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("bettensor-ws test CA"))
          .issuer_name(_name("bettensor-ws test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    server = (x509.CertificateBuilder().subject_name(_name("localhost"))
              .issuer_name(ca.subject).public_key(key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5))
              .not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([
                  x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                  critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                             critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                  ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_certificates(tmp_path)


@pytest.fixture
async def tls_hub(certificates, tmp_path):
    """A real hub serving wss:// on 127.0.0.1 with one game; stopped after the test."""
    _ca, cert, key = certificates
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with LocalHub(signer=VALIDATOR, feed=None, store_path=tmp_path / "hub.sqlite3",
                        ssl_context=context) as local:
        await local.hub.publish([future_game("g1")])
        yield local


async def test_the_sdk_exchanges_a_prediction_over_wss_with_a_private_ca(
        tls_hub, certificates, miner):
    ca, _cert, _key = certificates
    assert tls_hub.url.startswith("wss://127.0.0.1:")
    async with miner(tls_hub.url, BOB, ca_file=str(ca)) as conn:
        game = conn.games["g1"]
        receipt = await asyncio.wait_for(
            conn.submit(Prediction.for_game(game, 0, 1.0)), 10.0)
    assert receipt.status == "accepted", receipt  # submit() verified its signature
    assert receipt.validator_hotkey == VALIDATOR.ss58_address


async def test_without_the_ca_the_sdk_fails_at_once_with_a_certificate_error(tls_hub, miner):
    conn = miner(tls_hub.url, BOB)
    with pytest.raises(CertificateError, match=r"cannot verify the TLS certificate.*ca_file"):
        async with conn:
            pass
    assert not CertificateError.retryable


def test_a_ca_file_goes_only_into_a_session_the_connection_makes(certificates):
    ca, _cert, _key = certificates

    async def build() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ValueError, match="ca_file applies to the session"):
                ValidatorConnection("wss://127.0.0.1:1", BOB, VALIDATOR.ss58_address,
                                    options=connection_options(ca), session=session)

    asyncio.run(build())


def test_bt_miner_refuses_an_unreadable_ca_file(tmp_path):
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    for path in (garbage, tmp_path / "missing.pem"):
        with pytest.raises(CliError, match="--ca-file"):
            connection_options(path)
    assert connection_options(None) is None


@pytest.mark.parametrize("which", ["cert-only", "key-only", "swapped"])
def test_serve_refuses_an_incomplete_or_wrong_tls_pair(certificates, tmp_path, which):
    _ca, cert, key = certificates
    flags = {"cert-only": ["--tls-cert", str(cert)], "key-only": ["--tls-key", str(key)],
             "swapped": ["--tls-cert", str(key), "--tls-key", str(cert)]}[which]
    result = CliRunner().invoke(app, ["serve", "--validator-uri", "//Alice", "--open",
                                      "--store", str(tmp_path / "hub.sqlite3"), *flags])
    assert result.exit_code == 2, result.output
    assert "--tls-" in result.output


async def test_serve_with_tls_flags_answers_https_with_the_certificate(certificates, tmp_path):
    ca, cert, key = certificates
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server_stub", "serve", "--dev", "--port", str(port),
        "--store", str(tmp_path / "hub.sqlite3"), "--tls-cert", str(cert), "--tls-key", str(key),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        banner = b""
        for _ in range(3):  # the hotkey line, then the URLs
            banner += await asyncio.wait_for(proc.stdout.readline(), 30)
        assert f"wss://127.0.0.1:{port}/ws".encode() in banner, banner
        context = ssl.create_default_context(cafile=ca)
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # bounded: the banner comes just before listening
                try:
                    async with session.get(f"https://127.0.0.1:{port}/ws/health",
                                           ssl=context) as response:
                        assert response.status == 200
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the TLS hub never answered")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


async def _bt_miner(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """``bt-miner ARGS`` as a process with a fresh wallet; (exit code, stdout, stderr)."""
    wallets = tmp_path / "wallets"
    if not wallets.exists():
        Wallet(name="miner", hotkey="default", path=str(wallets)).create_new_hotkey(
            use_password=False, suppress=True, overwrite=True)
    proc = await asyncio.create_subprocess_exec(
        *bt_miner(), *args, "--wallet.name", "miner", "--wallet.path", str(wallets),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=fresh_user_env(tmp_path))
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def _bt_miner_run(tmp_path: Path, url: str, *extra: str) -> tuple[int, str, str]:
    return await _bt_miner(tmp_path, "run", "--validator", f"{VALIDATOR.ss58_address}@{url}",
                           "--agent", "favorite", "--outbox-dir", str(tmp_path / "outbox"),
                           "--log-level", "error", *extra)


async def test_bt_miner_run_with_ca_file_predicts_over_wss(tls_hub, certificates, tmp_path):
    ca, _cert, _key = certificates
    code, stdout, stderr = await _bt_miner_run(tmp_path, tls_hub.url, "--ca-file", str(ca),
                                               "--duration", "4")
    assert code == 0, stderr
    assert accepted_count(stdout) >= 1


async def test_bt_miner_run_without_the_ca_stops_with_a_clear_error(tls_hub, tmp_path):
    code, _stdout, stderr = await _bt_miner_run(tmp_path, tls_hub.url, "--duration", "30")
    assert code == 1, stderr
    assert "cannot verify the TLS certificate" in stderr
    assert "--ca-file" in stderr


async def test_bt_miner_submit_and_record_take_the_ca_file_too(tls_hub, certificates, tmp_path):
    ca, _cert, _key = certificates
    validator = f"{VALIDATOR.ss58_address}@{tls_hub.url}"
    code, stdout, stderr = await _bt_miner(
        tmp_path, "submit", "--validator", validator, "--game-id", "g1", "--outcome", "0",
        "--wager", "1", "--ca-file", str(ca), "--outbox-dir", str(tmp_path / "outbox"),
        "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["receipt"]["status"] == "accepted"
    out = tmp_path / "stream.jsonl"
    code, stdout, stderr = await _bt_miner(
        tmp_path, "record", "--validator", validator, "--out", str(out), "--duration", "2",
        "--ca-file", str(ca))
    assert code == 0, stderr
    assert "g1" in out.read_text()
    code, _stdout, stderr = await _bt_miner(
        tmp_path, "submit", "--validator", validator, "--game-id", "g1", "--outcome", "0",
        "--wager", "1", "--outbox-dir", str(tmp_path / "outbox"))
    assert code == 1, stderr
    assert "--ca-file" in stderr
