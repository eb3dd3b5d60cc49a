"""Soak plugin: on_new_node gets stuck in native code (a sleep the interrupt cannot reach),
so the worker running it is abandoned and replaced; the thread ends when the sleep does."""
import time


def on_new_node(node_info):
    time.sleep(1)
    return "secondary"
