"""TEMPORARY stand-in (pickle) until the versioned codec lands."""

from __future__ import annotations

import pickle
from typing import Any

FORMAT_VERSION = 0


class ForgetRequest(tuple):
    pass


def _d(o: Any) -> bytes:
    return pickle.dumps(o, protocol=pickle.HIGHEST_PROTOCOL)


encode_user = encode_account = encode_meta = encode_account_meta = encode_facts = _d
decode_user = decode_account = decode_meta = decode_account_meta = pickle.loads


def encode_forget(customer: str, request_id: str) -> bytes:
    return _d(("\x00forget", customer, request_id))


def decode_facts_message(data: bytes) -> Any:
    v = pickle.loads(data)
    if isinstance(v, tuple) and v and v[0] == "\x00forget":
        return ForgetRequest((v[1], v[2]))
    return v
