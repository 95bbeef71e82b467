"""Hand-framed protobuf: lets one serialized delta be reused for every subscriber.

Protobuf messages concatenate: two serialized `Delta` bodies joined are one `Delta` whose
repeated `changes` are appended. So the shared part of a revision is serialized once and a
node's own policy changes are appended to it; each Delta is then wrapped (as a length-
delimited field) into a `DeltaBatch` inside a `ServerMessage` without re-encoding anything.
"""

from __future__ import annotations

from bulkhead.v1 import subscription_pb2 as pb

_LEN = 2
DELTA_REVISION = pb.Delta.DESCRIPTOR.fields_by_name["revision"].number
DELTA_CHANGES = pb.Delta.DESCRIPTOR.fields_by_name["changes"].number
BATCH_DELTAS = pb.DeltaBatch.DESCRIPTOR.fields_by_name["deltas"].number
SNAPSHOT_REVISION = pb.SnapshotChunk.DESCRIPTOR.fields_by_name["revision"].number
SNAPSHOT_OBJECTS = pb.SnapshotChunk.DESCRIPTOR.fields_by_name["objects"].number
SERVER_DELTAS = pb.ServerMessage.DESCRIPTOR.fields_by_name["deltas"].number
SERVER_SNAPSHOT = pb.ServerMessage.DESCRIPTOR.fields_by_name["snapshot"].number


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def length_delimited(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | _LEN) + varint(len(payload)) + payload


def int_field(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def change_field(change_bytes: bytes) -> bytes:
    """A serialized Change as one `changes` element of a Delta (or `objects` of a chunk)."""
    return length_delimited(DELTA_CHANGES, change_bytes)


def delta_body(revision: int, framed_changes: list[bytes]) -> bytes:
    return int_field(DELTA_REVISION, revision) + b"".join(framed_changes)


def batch_entry(body: bytes) -> bytes:
    """One Delta as an element of DeltaBatch.deltas."""
    return length_delimited(BATCH_DELTAS, body)


def batch_message(entries: list[bytes]) -> bytes:
    """A ServerMessage{deltas: DeltaBatch{entries...}}."""
    return length_delimited(SERVER_DELTAS, b"".join(entries))


def snapshot_message(revision: int, framed_objects: list[bytes]) -> bytes:
    body = int_field(SNAPSHOT_REVISION, revision) + b"".join(framed_objects)
    return length_delimited(SERVER_SNAPSHOT, body)
