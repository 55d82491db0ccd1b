"""Runs a command with a pseudo-terminal as its stdin, stdout and stderr, as in a person's shell,
and prints one JSON line: {"status": exit status, "output": everything it wrote, as hex}.
Usage: pty-run.py TIMEOUT_SECONDS COMMAND [ARGS...]"""
import json, os, pty, select, sys, time

timeout = float(sys.argv[1])
argv = sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)

out = b""
deadline = time.time() + timeout
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.05)
    if r:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
status = None
while time.time() < deadline + 5:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(st)
        break
    time.sleep(0.05)
if status is None:
    os.kill(pid, 9)
print(json.dumps({"status": status, "output": out.hex()}))
