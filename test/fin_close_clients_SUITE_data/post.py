# Python requests posting SIZE bytes to URL: prints "<status> <body length>",
# or the exception's class and message when the post fails. TIMEOUT
# (seconds, default 30) bounds each of requests' socket operations.
import sys

import requests

url, size = sys.argv[1], int(sys.argv[2])
timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 30
try:
    r = requests.post(url, data=b"u" * size, timeout=timeout)
    print(r.status_code, len(r.content))
except Exception as e:
    print(type(e).__name__, str(e).replace("\n", " "))
