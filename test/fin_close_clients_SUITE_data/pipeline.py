# Keep-alive and pipelining on one connection to 127.0.0.1:PORT: three GET
# requests in one write, then a fourth after a pause; prints "bodies N" with
# the number of "hello" answers read, then "end" once the server closes or
# the client does.
import socket, sys, time

port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
req = b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n"
s.sendall(req * 3)
buf = b""
def answers(buf):
    return buf.count(b"\r\n\r\nhello")
while answers(buf) < 3:
    buf += s.recv(65536)
time.sleep(0.1)
s.sendall(req)
while answers(buf) < 4:
    buf += s.recv(65536)
print("bodies %d" % answers(buf), flush=True)
s.close()
