"""The library's start-up: what OpenERP's on_starting runs once, in the
master (`initialized_in` records where)."""
import os

initialized_in = None


def start_internal():
    global initialized_in
    initialized_in = os.getpid()
