"""Holds N idle keep-alive connections open against a server.

    python3.11 idle_holder.py HOST PORT N PATH

Opens N connections, sends one keep-alive `GET PATH` on each and reads its
response, so each connection is a real keep-alive connection that has served
a request and now sits idle. Then it prints one JSON line
(`{"opened", "answered", "open"}`) and waits for a line on stdin (or EOF),
checks how many of the connections the server still holds open, prints a
second JSON line (`{"still_open"}`) and exits. Standard library only.

Bounded: the set-up phase gives up after SETUP_SECS, and the whole process
exits after LIFETIME_SECS whatever happens (SIGALRM).
"""

import json
import selectors
import signal
import socket
import sys
import time

SETUP_SECS = 30
LIFETIME_SECS = 600


def still_open(sock):
    """True while the server has neither closed nor reset the connection."""
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    # Unread bytes (a late response) also mean open; b"" means FIN.
    return data != b""


def main():
    host, port, count, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    signal.signal(signal.SIGALRM, lambda *_: sys.exit(2))
    signal.alarm(LIFETIME_SECS)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    sel = selectors.DefaultSelector()
    socks, buffers = [], {}
    deadline = time.monotonic() + SETUP_SECS
    # Open in batches so the listen queue is not flooded past its backlog.
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((host, port))
        if err not in (0, 115):  # EINPROGRESS
            s.close()
            continue
        socks.append(s)
        buffers[s] = b""
        sel.register(s, selectors.EVENT_WRITE)
        if i % 100 == 99:
            pump(sel, buffers, request, until=time.monotonic() + 0.05)
    answered = pump(sel, buffers, request, until=deadline)
    open_now = sum(1 for s in socks if still_open(s))
    print(json.dumps({"opened": len(socks), "answered": answered, "open": open_now}), flush=True)

    sys.stdin.readline()
    print(json.dumps({"still_open": sum(1 for s in socks if still_open(s))}), flush=True)
    for s in socks:
        s.close()


def pump(sel, buffers, request, until):
    """Sends the request on writable sockets and reads responses until every
    registered socket has one whole response (head + Content-Length body),
    or `until` passes. Returns how many sockets have been answered so far."""
    answered = sum(1 for b in buffers.values() if b is None)
    while sel.get_map() and time.monotonic() < until:
        for key, mask in sel.select(timeout=min(0.2, max(0.0, until - time.monotonic()))):
            s = key.fileobj
            if mask & selectors.EVENT_WRITE:
                try:
                    s.send(request)
                    sel.modify(s, selectors.EVENT_READ)
                except OSError:
                    sel.unregister(s)
                continue
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                continue
            buf = buffers[s] + data
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                length, close = 0, False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name, value = name.strip().lower(), value.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value == b"close":
                        close = True
                if len(body) >= length:
                    buffers[s] = None
                    answered += 1
                    sel.unregister(s)
                    if close:
                        # As a real client does: a server that keeps no
                        # idle connections (Gunicorn's sync worker, uWSGI's
                        # --http-socket) gets its FIN answered, not held.
                        s.shutdown(socket.SHUT_RDWR)
                    continue
            buffers[s] = buf
    return answered


if __name__ == "__main__":
    main()
