"""The AWS proxy of the tests and benchmarks: latency, a request log, faults at named calls."""

from tests.support.awsproxy.faults import Fault, call, json_error, s3_error
from tests.support.awsproxy.proxy import AwsProxy, count
from tests.support.awsproxy.wire import Call, Reply, Request

__all__ = ["AwsProxy", "Call", "Fault", "Reply", "Request", "call", "count", "json_error", "s3_error"]
