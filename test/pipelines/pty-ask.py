"""Drives `lfm ask --chat` on a pseudo-terminal: the first question comes from the command line,
a follow-up is typed at the prompt, then Ctrl-D. Prints one JSON line of what happened (read by
ask.test.ts)."""
import json, os, pty, select, sys, time

argv = sys.argv[1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)

out = b""
def read_until(pred, timeout):
    global out
    end = time.time() + timeout
    while time.time() < end:
        if pred():  # what an earlier read already brought
            return True
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            out += chunk
            if pred():
                return True
    return pred()

PROMPT = b"\x1b[1m? \x1b[0m"
events = {}
# The first answer (its timing line ends it), then the prompt for a follow-up.
events["first_answer"] = read_until(lambda: b"tokens at" in out, 180)
events["prompt"] = read_until(lambda: out.count(PROMPT) >= 2, 60)
mark = len(out)
os.write(fd, b"and the suction lift?\r")
events["second_answer"] = read_until(lambda: b"tokens at" in out[mark:], 120)
events["second_reused_prefix"] = b"system prefix reused" in out[mark:]
events["prompt_again"] = read_until(lambda: PROMPT in out[mark:] and out.rfind(PROMPT) > out.rfind(b"tokens at"), 60)
os.write(fd, b"\x04")
deadline = time.time() + 30
status = None
while time.time() < deadline:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(st)
        break
    read_until(lambda: False, 0.1)
if status is None:
    os.kill(pid, 9)
events["exit_status"] = status
events["output_tail"] = out[-600:].decode("utf-8", "replace")
print(json.dumps(events))
