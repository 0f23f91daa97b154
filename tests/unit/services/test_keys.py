from __future__ import annotations

import pytest
from tests.support import DataDir

from imagegate.container import Services
from imagegate.errors import AuthenticationFailed, NotFound
from imagegate.models import Role


async def test_a_created_key_authenticates_as_its_user(services: Services) -> None:
    issued = await services.keys.create("alice", Role.USER)
    principal = await services.keys.authenticate(f"Bearer {issued.secret}")
    assert principal.user_name == "alice"
    assert principal.role is Role.USER
    assert principal.key_id == issued.key.id
    assert issued.secret.startswith("ig_")
    assert len(issued.secret) >= 3 + 43
    assert issued.key.prefix == issued.secret[:11]


async def test_only_the_hash_is_stored(services: Services, data_dir: DataDir) -> None:
    issued = await services.keys.create("alice")
    assert issued.secret.encode() not in data_dir.db_path.read_bytes()
    (stored_hash,) = data_dir.rows("SELECT key_hash FROM api_keys")[0]
    assert stored_hash != issued.secret
    assert len(str(stored_hash)) == 64


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic abc", "Bearer ig_wrong", "ig_no_scheme"],
)
async def test_missing_or_wrong_keys_are_refused(services: Services, header: str | None) -> None:
    await services.keys.create("alice")
    with pytest.raises(AuthenticationFailed) as caught:
        await services.keys.authenticate(header)
    assert caught.value.status == 401


async def test_error_messages_never_echo_the_whole_secret(services: Services) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        await services.keys.authenticate("Bearer ig_thisIsAVeryLongWrongSecretValue")
    assert "ig_thisIsAVeryLongWrongSecretValue" not in caught.value.message


async def test_a_revoked_key_is_refused_at_once(services: Services) -> None:
    issued = await services.keys.create("alice")
    await services.keys.authenticate(f"Bearer {issued.secret}")  # now cached
    revoked = await services.keys.revoke(issued.key.prefix)
    assert [k.id for k in revoked] == [issued.key.id]
    with pytest.raises(AuthenticationFailed):
        await services.keys.authenticate(f"Bearer {issued.secret}")
    assert await services.keys.list_keys() == []
    assert [k.revoked_at is not None for k in await services.keys.list_keys(True)] == [True]


async def test_revoking_an_unknown_prefix_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        await services.keys.revoke("ig_nothing")


async def test_the_bootstrap_admin_key_is_issued_once(services: Services) -> None:
    first = await services.keys.ensure_bootstrap_admin()
    assert first is not None
    assert first.key.role is Role.ADMIN
    assert await services.keys.ensure_bootstrap_admin() is None
    principal = await services.keys.authenticate(f"Bearer {first.secret}")
    assert principal.is_admin


async def test_keys_of_one_user_share_the_user(services: Services) -> None:
    one = await services.keys.create("laptop", Role.USER, user="carol")
    two = await services.keys.create("phone", Role.ADMIN, user="carol")
    assert one.key.user_id == two.key.user_id
    assert two.key.role is Role.USER  # an existing user keeps their role
