"""Which copier transaction wrote an output record: its key, or the header older copiers used."""

from __future__ import annotations

from workers.clients.kafka import TXN_HEADER, txn_token


class Out:
    def __init__(self, key: bytes | None = None, headers: list | None = None) -> None:
        self.k, self.h = key, headers

    def key(self) -> bytes | None:
        return self.k

    def headers(self) -> list | None:
        return self.h


def test_the_token_is_the_key_and_the_header_of_records_copied_before_it():
    assert txn_token(Out(key=b"ab12:7")) == b"ab12:7"
    assert txn_token(Out(headers=[("other", b"x"), (TXN_HEADER, b"ab12:6")])) == b"ab12:6"
    assert txn_token(Out(key=b"ab12:8", headers=[(TXN_HEADER, b"old")])) == b"ab12:8"
    assert txn_token(Out()) is None
    assert txn_token(Out(headers=[("other", b"x")])) is None
