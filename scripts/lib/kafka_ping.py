#!/usr/bin/env python3
"""Exit 0 when a Kafka broker answers an ApiVersions request on HOST PORT."""
import socket
import struct
import sys


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    client_id = b"mee-dev-up"
    # Request header v1: api_key=18 (ApiVersions), api_version=0, correlation_id, client_id.
    body = struct.pack(">hhih", 18, 0, 4242, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
            resp = s.recv(size, socket.MSG_WAITALL)
    except (OSError, struct.error):
        return 1
    correlation_id, error_code = struct.unpack(">ih", resp[:6])
    return 0 if correlation_id == 4242 and error_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
