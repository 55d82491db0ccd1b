"""Runs a command on a pseudo-terminal (stdout and stderr both a TTY) until it exits; prints one
JSON line {"exit_status", "output"} with everything it wrote (read by ingest.test.ts)."""
import json, os, pty, select, sys, time

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])

out = b""
status = None
deadline = time.time() + 120
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.05)
    if r:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal: it is exiting
            chunk = b""
        out += chunk
        if chunk:
            continue
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(st)
        break
if status is None:
    os.kill(pid, 9)
# What the child wrote just before exiting may still be in the terminal's buffer.
while select.select([fd], [], [], 0.2)[0]:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
print(json.dumps({"exit_status": status, "output": out.decode("utf-8", "replace")}))
