"""What the proxy sees of a request (``Call``), what it logs (``Request``), what it may answer (``Reply``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    """One request as the proxy saw it (times are ``time.time()``)."""

    start: float  # request fully received by the proxy
    end: float  # response fully sent back
    caller: str  # access key id of the signature
    service: str  # s3, sqs, sns, dynamodb, ...
    action: str  # GetObject, ReceiveMessage, PutItem, ...
    target: str  # queue name, bucket, table or topic ("" if none)
    status: int
    sent: int  # request body bytes (client -> AWS)
    received: int  # response body bytes (AWS -> client)
    detail: str = ""  # ReceiveMessage: "max=10 wait=20 got=3"

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Call:
    """A request received, before it is forwarded: what a fault is shown."""

    service: str  # s3, sqs, sns, dynamodb, ...
    action: str  # GetObject, ReceiveMessage, PutItem, ...
    method: str  # GET, PUT, POST, ...
    path: str  # path and query, as sent
    caller: str = "?"  # access key id of the signature
    target: str = ""  # queue name, bucket, table or topic


@dataclass(frozen=True)
class Reply:
    """The proxy's own answer to a request, instead of the emulator's; ``status`` 0: hang up without one."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
