"""One `bulkhead connectivity test` at a time per cluster: the control plane's lock (an etcd key
on a lease) against a real replica and etcd. A second run is refused naming the holder while
the first holds it, and may run once the first ended normally, once its client went away, and
(the lease) once the replica holding it stopped renewing it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator

import grpc
import pytest

from bulkhead.errors import FailedPrecondition
from bulkhead.v1 import connectivity_pb2 as pb
from bulkhead.v1 import connectivity_pb2_grpc
from cli.connectivity.runner import Options, Runner, SetupError
from controlplane.connectivity.lock import ConnectivityLock
from controlplane.records.codec import LockRecord
from tests.conftest import Replica, ReplicaFactory, eventually
from tests.test_cli import ROOT, bulkhead

pytestmark = pytest.mark.timeout(120)


def _stub(replica: Replica) -> connectivity_pb2_grpc.ConnectivityServiceStub:
    return connectivity_pb2_grpc.ConnectivityServiceStub(replica.channel())


@contextlib.asynccontextmanager
async def holding(replica: Replica, holder: str) -> AsyncIterator[pb.TestLock]:
    """The lock held by one call of its own for the block, released by closing the call."""
    call = _stub(replica).HoldTestLock(pb.HoldTestLockRequest(holder=holder))
    try:
        yield await call.read()
    finally:
        call.cancel()


async def _refused(replica: Replica, holder: str = "second") -> grpc.aio.AioRpcError:
    call = _stub(replica).HoldTestLock(pb.HoldTestLockRequest(holder=holder))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    return err.value


async def _free(replica: Replica) -> bool:
    """Whether a new run may take the lock now (taken and given back at once)."""
    call = _stub(replica).HoldTestLock(pb.HoldTestLockRequest(holder="probe"))
    try:
        await call.read()
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc
        return False
    call.cancel()
    return True


async def _key_gone(replica: Replica) -> bool:
    return await replica.cp.etcd.get(replica.cp.keys.connectivity_lock) is None


async def test_a_second_run_is_refused_naming_the_holder_until_the_first_ends(
        replicas: ReplicaFactory) -> None:
    a, b = await replicas(), await replicas()
    async with holding(a, "alice@ops pid 1") as held:
        assert held.holder == "alice@ops pid 1" and held.replica == a.cp.config.replica_id
        kv = await a.cp.etcd.get(a.cp.keys.connectivity_lock)
        assert kv is not None and kv.lease != 0
        stored = LockRecord.decode(kv.value)
        assert stored.holder == "alice@ops pid 1" and stored.since_ns == held.since_ns
        for replica in (a, b):   # any replica: the lock is in etcd
            refused = await _refused(replica)
            assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
            details = refused.details() or ""
            assert "another connectivity test is running: held by alice@ops pid 1 since " \
                   "20" in details and a.cp.config.replica_id in details, details
    assert await eventually(lambda: _key_gone(a))
    assert await _free(b)


async def test_the_holder_is_required(replicas: ReplicaFactory) -> None:
    refused = await _refused(await replicas(), holder=" ")
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_cli_is_refused_while_another_run_holds_the_lock(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    async with holding(replica, "alice@ops pid 1"):
        for output in ([], ["-o", "json"]):
            rc, out, err = await bulkhead(replica.address, "connectivity", "test", *output)
            assert rc == 1 and out == ""
            assert err.startswith("bulkhead: FAILED_PRECONDITION: another connectivity test "
                                  "is running: held by alice@ops pid 1 since "), err
    assert await eventually(lambda: _key_gone(replica))
    # A run that ends normally (here: no two nodes to test on) gives the lock back.
    rc, _, err = await bulkhead(replica.address, "connectivity", "test")
    assert rc == 1 and "needs two nodes with a reachable agent" in err, err
    assert await eventually(lambda: _key_gone(replica))
    assert await _free(replica)


HOLDER = textwrap.dedent("""
    import sys, grpc
    from bulkhead.v1 import connectivity_pb2 as pb, connectivity_pb2_grpc
    stub = connectivity_pb2_grpc.ConnectivityServiceStub(grpc.insecure_channel(sys.argv[1]))
    call = stub.HoldTestLock(pb.HoldTestLockRequest(holder="killed run"))
    print(next(call).holder, flush=True)
    sys.stdin.read()
""")


async def test_the_lock_is_released_when_its_client_goes_away(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, replica.address, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'proto'}"})
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.decode().strip() == "killed run"
        assert "held by killed run" in ((await _refused(replica)).details() or "")
        process.send_signal(signal.SIGKILL)
        await process.wait()
        assert await eventually(lambda: _key_gone(replica), timeout=30)
        assert await _free(replica)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_lock_whose_replica_died_expires_with_its_lease(
        replicas: ReplicaFactory) -> None:
    """A replica that dies neither releases the lock nor renews its lease: the key goes when
    the lease expires (here a 2 s TTL; the service's is lock.TTL)."""
    replica = await replicas()
    etcd, keys = replica.cp.etcd, replica.cp.keys
    dying = ConnectivityLock(etcd, keys, "dying", ttl=2)
    block = dying.held("crashed run")
    _, keeper = await block.__aenter__()   # not left until the end: the replica "died"
    try:
        keeper.cancel()   # its renewals stop
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        other = ConnectivityLock(etcd, keys, "other", ttl=2)
        with pytest.raises(FailedPrecondition, match="held by crashed run"):
            async with other.held("second"):
                pass

        async def taken() -> bool:
            with contextlib.suppress(FailedPrecondition):
                async with other.held("second") as (me, _):
                    return me.replica == "other"
            return False

        assert await eventually(taken, timeout=30)
        assert await _key_gone(replica)
    finally:
        await block.__aexit__(None, None, None)


async def test_a_run_stops_when_its_lock_is_gone(replicas: ReplicaFactory) -> None:
    """The CLI's runner checks its lock's call before every test: once the call ended (here
    its replica stopped), the run stops rather than go on unguarded."""
    replica = await replicas()
    channel = grpc.insecure_channel(replica.address)
    runner = Runner(lambda factory: factory(channel), Options(), lambda _: None)
    try:
        held = await asyncio.to_thread(runner.hold_lock, "the run")
        assert held.holder == "the run"
        runner.check_lock()   # held: nothing said
        await replica.stop()

        async def stopped() -> bool:
            try:
                runner.check_lock()
            except SetupError as exc:
                assert "lost the cluster's connectivity-test lock" in str(exc)
                return True
            return False

        assert await eventually(stopped, timeout=30)
    finally:
        runner.release_lock()
        channel.close()
