"""The soak's second client: sends a stuck-worker request every PERIOD seconds for SECONDS
seconds over its own connection (three Lua forms, then a Python one, in turn), checks that
each gets exactly one answer, and prints a JSON summary with the host's status at the end.

    stuck_client.py SOCKET SECONDS PERIOD
"""
import json
import socket
import sys
import threading
import time

path, seconds, period = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
FORMS = [
    ("user_login", ["find", "{}"]),
    ("user_login", ["xpcall", "{}"]),
    ("user_login", ["gsub", "{}"]),
    ("new_node", ["{}"]),
]

conn = socket.socket(socket.AF_UNIX)
conn.connect(path)
answers = {}
extra = []
decisions = {}
done = threading.Event()


def read():
    buffer = b""
    while not done.is_set():
        chunk = conn.recv(65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            answer = json.loads(line)
            key = answer.get("id")
            if key in answers:
                extra.append(key)
            answers[key] = answer
            if key == "status":
                continue
            result = answer.get("result", {})
            name = result.get("decision", "rpc_error") if isinstance(result, dict) else "status"
            decisions[name] = decisions.get(name, 0) + 1


reader = threading.Thread(target=read, daemon=True)
reader.start()
start = time.monotonic()
sent = 0
while time.monotonic() - start < seconds:
    method, params = FORMS[sent % len(FORMS)]
    request = {"jsonrpc": "2.0", "id": sent, "method": method, "params": params}
    conn.sendall(json.dumps(request).encode() + b"\n")
    sent += 1
    time.sleep(max(0.0, start + sent * period - time.monotonic()))
# Every stuck request is answered at its deadline; give the last ones time to come.
give_up = time.monotonic() + 10
while len(answers) < sent and time.monotonic() < give_up:
    time.sleep(0.05)
conn.sendall(b'{"jsonrpc":"2.0","id":"status","method":"status"}\n')
while "status" not in answers and time.monotonic() < give_up + 5:
    time.sleep(0.05)
done.set()
status = answers.pop("status", {}).get("result", {})
counters = status.get("counters", {})
print(json.dumps({
    "stuck_sent": sent,
    "stuck_answered": len(answers),
    "answered_twice": len(extra),
    "stuck_decisions": decisions,
    "workers_replaced": counters.get("workers_replaced"),
    "workers_abandoned_live_at_end": counters.get("workers_abandoned_live"),
    "timeouts": counters.get("timeouts"),
}))
