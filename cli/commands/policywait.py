"""`bulkhead policy wait --revision R`: block until the nodes concerned acked revision R.

Not a noun of its own: the `policy` command module adds the verb (`add_wait_verb()`), and
`policy apply --wait` calls `wait_for()` with the revision of its change and the identities it
affected, then prints the outcome with `report()`.
"""

from __future__ import annotations

import sys
from typing import Any

from bulkhead.v1 import subscription_pb2, subscription_pb2_grpc

from .. import argtypes
from ..output import count, emit_json, output_flag, to_dict


def add_wait_verb(verbs: Any) -> None:
    w = verbs.add_parser("wait", help="wait until every concerned node applied a revision")
    w.add_argument("--revision", type=argtypes.revision("--revision"),
                   required=True, help="etcd revision of the change")
    w.add_argument("--identity", type=argtypes.uint32("--identity"), action="append", default=[],
                   help="only nodes hosting this identity (repeatable); default: all nodes")
    w.add_argument("--timeout", type=argtypes.seconds("--timeout"),
                   default=30.0, help="seconds (default 30)")
    output_flag(w)
    w.set_defaults(run=run_wait)


def wait_for(ctx: Any, revision: int, identities: list[int], timeout: float
             ) -> subscription_pb2.WaitForRevisionResponse:
    stub = ctx.stub(subscription_pb2_grpc.SubscriptionAdminServiceStub)
    return stub.WaitForRevision(subscription_pb2.WaitForRevisionRequest(
        revision=revision, identities=identities, timeout_seconds=timeout),
        timeout=timeout + 10)


def report(result: subscription_pb2.WaitForRevisionResponse, revision: int) -> int:
    """Prints the outcome; exit code 0 when converged, 1 when nodes are missing."""
    if result.converged:
        line = f"revision {revision} applied on {count(len(result.nodes), 'node')}"
        if result.covered:
            # Converged without an ack of `revision`: said, not hidden (README, policy wait).
            line += (f"; covered, nothing up to revision {revision} concerns them: "
                     + ", ".join(f"{c.name} (acked {c.acked_revision})" for c in result.covered))
        print(line)
        return 0
    missing = ", ".join(f"{p.name} (acked {p.acked_revision}"
                        f"{'' if p.connected else ', not connected'})" for p in result.pending)
    print(f"timed out: {len(result.pending)} of {count(len(result.nodes), 'node')} did not apply "
          f"revision {revision}: {missing}", file=sys.stderr)
    return 1


def run_wait(ctx: Any) -> int:
    args = ctx.args
    result = wait_for(ctx, args.revision, args.identity, args.timeout)
    if ctx.json:
        emit_json(to_dict(result))
        return 0 if result.converged else 1
    return report(result, args.revision)
