"""Tenant access keys: shaped as AWS issues them, kept in the store with their tenant, usable
by the SigV4 verifier, listed without secrets, revoked, and gone with their tenant; and the
operator's `openvpc tenant` commands on a temporary store."""

import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from service_setup import fails, open_service
from typer.testing import CliRunner

from openvpc.api.sigv4 import SigV4Error, verify
from openvpc.cli import app
from openvpc.service import Service
from openvpc.service.keys import MAX_KEYS_PER_TENANT, new_key_id, new_secret
from openvpc.store import Store

KEY_ID = re.compile(r"AKIA[A-Z2-7]{16}")
SECRET = re.compile(r"[A-Za-z0-9+/]{40}")


@pytest.fixture
def service(tmp_path: Path) -> Service:
    return open_service(tmp_path / "keys.db")


def test_keys_are_shaped_as_aws_issues_them() -> None:
    ids = {new_key_id() for _ in range(200)}
    secrets = {new_secret() for _ in range(200)}
    assert len(ids) == len(secrets) == 200
    assert all(len(k) == 20 and KEY_ID.fullmatch(k) for k in ids)
    assert all(len(s) == 40 and SECRET.fullmatch(s) for s in secrets)
    # every character of the alphabets turns up: the randomness is not confined
    assert set("".join(k[4:] for k in ids)) == set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert len(set("".join(secrets))) == 64


def test_a_key_names_its_tenant(service: Service) -> None:
    key_id, secret = service.create_tenant_key("red")
    assert KEY_ID.fullmatch(key_id) and SECRET.fullmatch(secret)
    assert service.access_key(key_id) == (secret, "red")
    assert service.tenant_keys("red") == (key_id,)
    assert service.tenant_keys("blue") == ()
    assert service.access_key("AKIAAAAAAAAAAAAAAAAA") is None
    assert service.access_key("not a key") is None


def test_keys_outlive_the_process(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    first = open_service(db)
    key_id, secret = first.create_tenant_key("red")
    first.store.close()
    again = Service(Store(db))
    try:
        assert again.access_key(key_id) == (secret, "red")
    finally:
        again.store.close()


def test_two_keys_per_tenant_then_rotate(service: Service) -> None:
    keys = [service.create_tenant_key("red")[0] for _ in range(MAX_KEYS_PER_TENANT)]
    with fails("LimitExceeded"):
        service.create_tenant_key("red")
    service.delete_tenant_key("red", keys[0])
    assert service.access_key(keys[0]) is None
    assert service.tenant_keys("red") == (keys[1],)
    new = service.create_tenant_key("red")[0]
    assert service.tenant_keys("red") == tuple(sorted([keys[1], new]))


def test_another_tenants_key_is_missing_to_you(service: Service) -> None:
    red_key, red_secret = service.create_tenant_key("red")
    with fails("NoSuchEntity"):
        service.delete_tenant_key("blue", red_key)
    assert service.access_key(red_key) == (red_secret, "red")
    with fails("NoSuchEntity"):
        service.delete_tenant_key("red", "AKIAAAAAAAAAAAAAAAAA")


def test_unknown_tenants_get_no_keys(service: Service) -> None:
    with fails("AuthFailure"):
        service.create_tenant_key("ghost")
    with fails("AuthFailure"):
        service.tenant_keys("ghost")
    with fails("AuthFailure"):
        service.delete_tenant("ghost")


def test_a_tenant_with_resources_stays_then_goes_with_its_keys(service: Service) -> None:
    key_id, _ = service.create_tenant_key("red")
    vpc = service.create_vpc("red", "prod", "10.0.0.0/16")
    with fails("DependencyViolation"):
        service.delete_tenant("red")
    assert service.access_key(key_id) is not None
    service.delete_vpc("red", vpc.id)
    service.delete_tenant("red")
    assert service.access_key(key_id) is None
    assert [t.name for t in service.describe_tenants()] == ["blue"]


def _signed(key_id: str, secret: str) -> tuple[list[tuple[str, str]], bytes, float]:
    request = AWSRequest(
        "POST",
        "http://127.0.0.1:8787/",
        data={"Action": "DescribeVpcs", "Version": "2016-11-15"},
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(key_id, secret), "ec2", "us-east-1").add_auth(request)
    prepared = request.prepare()
    headers = [*prepared.headers.items(), ("Host", urlsplit(prepared.url).netloc)]
    body = prepared.body
    assert isinstance(body, str | bytes)
    stamp = dict(headers)["X-Amz-Date"]
    when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    return headers, body.encode() if isinstance(body, str) else body, when


def test_an_issued_key_signs_requests_until_revoked(service: Service) -> None:
    key_id, secret = service.create_tenant_key("blue")
    headers, body, when = _signed(key_id, secret)
    assert verify("POST", "/", "", headers, body, when, service.access_key).tenant == "blue"
    service.delete_tenant_key("blue", key_id)
    with pytest.raises(SigV4Error, match=r"^AuthFailure: "):
        verify("POST", "/", "", headers, body, when, service.access_key)


# -- the operator's commands ------------------------------------------------------------------
def _run(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["tenant", *args])
    return done.exit_code, done.output


def test_create_prints_a_credentials_profile_and_list_never_shows_secrets(tmp_path: Path) -> None:
    db = str(tmp_path / "ov.db")
    code, out = _run("create", "red", "--db", db)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "[red]"
    key_id = lines[1].removeprefix("aws_access_key_id = ")
    secret = lines[2].removeprefix("aws_secret_access_key = ")
    assert KEY_ID.fullmatch(key_id) and SECRET.fullmatch(secret)
    store = Store(db)
    try:
        assert Service(store).access_key(key_id) == (secret, "red")
    finally:
        store.close()
    code, second = _run("create", "red", "--db", db)  # the tenant exists: another key
    assert code == 0 and key_id not in second
    other = second.splitlines()[1].removeprefix("aws_access_key_id = ")
    code, third = _run("create", "red", "--db", db)
    assert code == 1 and "LimitExceeded" in third
    code, listed = _run("list", "--db", db)
    assert code == 0
    assert listed.splitlines() == [f"red\t{','.join(sorted([key_id, other]))}"]
    assert secret not in listed
    assert _run("list", "ghost", "--db", db)[0] == 1


def test_delete_refuses_while_the_tenant_owns_resources(tmp_path: Path) -> None:
    db = str(tmp_path / "ov.db")
    assert _run("create", "red", "--db", db)[0] == 0
    store = Store(db)
    try:
        vpc = Service(store).create_vpc("red", "prod", "10.0.0.0/16")
    finally:
        store.close()
    code, out = _run("delete", "red", "--db", db)
    assert code == 1 and "DependencyViolation" in out and "vpc" in out
    store = Store(db)
    try:
        Service(store).delete_vpc("red", vpc.id)
    finally:
        store.close()
    code, out = _run("delete", "red", "--db", db)
    assert code == 0 and "deleted" in out
    assert _run("list", "--db", db) == (0, "")


def test_delete_one_key(tmp_path: Path) -> None:
    db = str(tmp_path / "ov.db")
    out = _run("create", "red", "--db", db)[1]
    key_id = out.splitlines()[1].removeprefix("aws_access_key_id = ")
    assert _run("delete", "red", "--key", "AKIAAAAAAAAAAAAAAAAA", "--db", db)[0] == 1
    code, out = _run("delete", "red", "--key", key_id, "--db", db)
    assert code == 0 and "revoked" in out
    assert _run("list", "--db", db) == (0, "red\t-\n")
