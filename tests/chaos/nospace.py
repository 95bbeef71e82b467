"""etcd's space quota reached (the NOSPACE alarm) and the operator's way out of it, through
etcd's JSON gateway as etcdctl would: filler values until etcd refuses writes, then delete,
compact, defragment every member, disarm the alarm. The control plane is never restarted."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

QUOTA_BYTES = 64 << 20
"""The suite's etcd runs with this --quota-backend-bytes: reached with 1 MiB filler values in
a few seconds, far above what a run writes otherwise."""
FILLER = "/chaos-filler/"


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _post(endpoint: str, path: str, body: dict[str, Any], timeout: float = 30) -> Any:
    request = urllib.request.Request(f"http://{endpoint}{path}", data=json.dumps(body).encode(),
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}")


def fill(endpoint: str, limit: int = 4 * QUOTA_BYTES // (1 << 20)) -> int:
    """Puts 1 MiB values beside the cluster's keys until etcd answers "database space
    exceeded"; returns how many it took (raises if the quota never came)."""
    value = _b64(b"x" * (1 << 20))
    for n in range(limit):
        answer = _post(endpoint, "/v3/kv/put", {"key": _b64(f"{FILLER}{n}"), "value": value})
        if "space exceeded" in json.dumps(answer):
            return n
    raise RuntimeError(f"etcd took {limit} MiB without reaching its space quota")


def alarms(endpoint: str) -> list[str]:
    answer = _post(endpoint, "/v3/maintenance/alarm", {"action": "GET"})
    return [a.get("alarm", "") for a in answer.get("alarms", [])]


def recover(endpoints: list[str]) -> None:
    """What an operator does: remove what filled it, compact, defragment each member (which
    returns the space), disarm the alarm."""
    end = FILLER[:-1] + chr(ord(FILLER[-1]) + 1)
    answer = _post(endpoints[0], "/v3/kv/deleterange", {"key": _b64(FILLER),
                                                        "range_end": _b64(end)})
    revision = int(answer["header"]["revision"])
    _post(endpoints[0], "/v3/kv/compaction", {"revision": revision, "physical": True})
    for endpoint in endpoints:
        _post(endpoint, "/v3/maintenance/defragment", {}, timeout=60)
    raised = _post(endpoints[0], "/v3/maintenance/alarm", {"action": "GET"})
    for alarm in raised.get("alarms", []):
        _post(endpoints[0], "/v3/maintenance/alarm", {"action": "DEACTIVATE",
                                                      "memberID": alarm.get("memberID", "0"),
                                                      "alarm": alarm.get("alarm", "NOSPACE")})
