"""An OTLP/HTTP collector stand-in (test tooling): takes
`POST /v1/traces` and `POST /v1/metrics` in protobuf or JSON, decodes them
with the official `opentelemetry-proto` classes, and appends each request as
one JSON line (`{"signal": "traces"|"metrics", "body": {...}}`, the
protobuf's canonical JSON form) to OUT.

    collector.py OUT       prints `port N`, then serves until killed
"""

import base64
import http.server
import json
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

out = sys.argv[1]
KINDS = {
    "/v1/traces": ("traces", trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse),
    "/v1/metrics": ("metrics", metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse),
}


def hex_ids(v):
    """Span and trace ids as OTLP's JSON writes them (hex)."""
    if isinstance(v, dict):
        return {k: (base64.b64decode(x).hex() if k in ("traceId", "spanId", "parentSpanId") and isinstance(x, str) else hex_ids(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [hex_ids(x) for x in v]
    return v


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        kind = KINDS.get(self.path)
        if kind is None:
            self.send_response(404)
            self.end_headers()
            return
        signal, request, response = kind
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            # OTLP's JSON: ids are hex already (not protobuf's base64).
            decoded = json.loads(body)
        else:
            msg = request()
            msg.ParseFromString(body)
            decoded = hex_ids(json_format.MessageToDict(msg))
        with open(out, "a") as f:
            f.write(json.dumps({"signal": signal, "content_type": ctype, "body": decoded}) + "\n")
        reply = response().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("port", server.server_address[1], flush=True)
server.serve_forever()
