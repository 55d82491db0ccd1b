"""Drives `lfm chat` on a pseudo-terminal, as a person would: a question, Ctrl-C during the reply,
then Ctrl-D at the prompt. Prints one JSON line of what happened (read by interactive-chat.test.ts)."""
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

events = {}
events["first_prompt"] = read_until(lambda: b"> " in out, 120)
os.write(fd, b"Status of pump 7?\r")
mark = len(out)
# the reply has started: a few bytes after the echoed question
events["reply_started"] = read_until(lambda: len(out) > mark + 40, 60)
os.write(fd, b"\x03")
events["stopped"] = read_until(lambda: b"[stopped]" in out, 30)
# the summary line of the stopped reply (stderr shares the terminal)
events["summary"] = b"finish: cancelled" in out[mark:]
# from the marker itself: the next prompt may have come in the same read
after_stop = out.find(b"[stopped]") if events["stopped"] else len(out)
events["prompt_again"] = read_until(lambda: b"> " in out[after_stop:], 30)
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
events["output_tail"] = out[-300:].decode("utf-8", "replace")
print(json.dumps(events))
