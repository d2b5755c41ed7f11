# A raw HTTP/1.1 client: uploads SIZE bytes to 127.0.0.1:PORT at RATE
# bytes/s, in 256 KiB chunks, before it reads anything; then reads the answer
# to its end. Over TLS (MODE tlsv1.2 or tlsv1.3; default tcp, plain) it
# trusts SSL_CERT_FILE, and the end counts as eof only after the server's
# close_notify (a bare FIN is an SSLEOFError). Prints one line:
#   status=<status line> body=<bytes after the head> end=<eof|error class> upload=<ok|error>
import socket
import ssl
import sys
import time

port, size, rate = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "tcp"
chunk = b"u" * (256 * 1024)
s = socket.create_connection(("127.0.0.1", port), timeout=30)
if mode != "tcp":
    context = ssl.create_default_context()
    version = ssl.TLSVersion.TLSv1_3 if mode == "tlsv1.3" else ssl.TLSVersion.TLSv1_2
    context.minimum_version = context.maximum_version = version
    # Python 3.13 verifies strictly by default (RFC 5280 extensions that the
    # suites' minimal certificates lack); curl and requests do not.
    context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    s = context.wrap_socket(s, server_hostname="127.0.0.1", suppress_ragged_eofs=False)
upload, sent = "ok", 0
try:
    s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
              b"Content-Length: %d\r\n\r\n" % size)
    start = time.monotonic()
    while sent < size:
        n = min(len(chunk), size - sent)
        s.sendall(chunk[:n])
        sent += n
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
except OSError as e:
    upload = "%s after %d bytes" % (type(e).__name__, sent)
got, end = [], "eof"
try:
    while True:
        data = s.recv(65536)
        if not data:
            break
        got.append(data)
except OSError as e:
    end = type(e).__name__
head, _, body = b"".join(got).partition(b"\r\n\r\n")
status = head.split(b"\r\n")[0].decode() or "none"
print("status=%s body=%d end=%s upload=%s" % (status, len(body), end, upload))
