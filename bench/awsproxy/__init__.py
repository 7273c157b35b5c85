"""The AWS proxy of the tests and benchmarks: latency, a request log, faults at named calls."""

from bench.awsproxy.faults import Fault, call, json_error, s3_error
from bench.awsproxy.proxy import AwsProxy, count
from bench.awsproxy.wire import Call, Reply, Request

__all__ = ["AwsProxy", "Call", "Fault", "Reply", "Request", "call", "count", "json_error", "s3_error"]
