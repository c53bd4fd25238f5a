"""W7, the gevent peer: gevent's StreamServer with TCP_NODELAY on every
connection (pywsgi does not set it, so keep-alive answers would wait for
delayed ACKs), the same request counting and responses as the C servers.
Runs until killed.   py_w7.py PORT
"""
import socket
import sys

from gevent.server import StreamServer

RESPONSE = (b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/plain\r\n"
            b"Content-Length: 13\r\n"
            b"\r\n"
            b"Hello, World!")


def handle(sock, addr):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tail = b""
    while True:
        data = sock.recv(16384)
        if not data:
            break
        data = tail + data
        k = data.count(b"\r\n\r\n")
        tail = data[data.rfind(b"\r\n\r\n") + 4:] if k else data
        tail = tail[-3:]
        if k:
            sock.sendall(RESPONSE * k)
    sock.close()


def main():
    if len(sys.argv) != 2:
        print("usage: py_w7.py PORT", file=sys.stderr)
        sys.exit(2)
    server = StreamServer(("127.0.0.1", int(sys.argv[1])), handle, backlog=1024)
    server.serve_forever()


if __name__ == "__main__":
    main()
