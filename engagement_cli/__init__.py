"""The `engagement` command line: the dispatcher (cli.py), one module per command (cmd_*.py)
and the helpers only the commands use (client.py, producer.py, acls.py).

It imports the worker's runtime (agents/) and the engine (streams/), never the other way round;
only `engagement worker` imports Faust, and only when it runs a worker.
"""
