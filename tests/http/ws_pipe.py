"""A WebSocket client for tests/it/websocket.rs, with Python's `websockets`: connects to the
URL given, sends each line of stdin as one text frame, and prints the text of the frame that
answers it as one JSON string per line."""
import json
import sys

from websockets.sync.client import connect

with connect(sys.argv[1], open_timeout=120, close_timeout=5) as ws:
    for line in sys.stdin:
        ws.send(line.rstrip("\n"))
        reply = ws.recv(timeout=120)
        if isinstance(reply, bytes):
            sys.exit(f"a binary frame came back: {reply!r}")
        print(json.dumps(reply), flush=True)
