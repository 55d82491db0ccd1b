"""Drives `lfm chat` on a pseudo-terminal, as a person would: a question, Ctrl-C during the reply,
then Ctrl-D at the prompt. Prints one JSON line of what happened (read by interactive-chat.test.ts)."""
import json, os, sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "helpers"))
from pty_session import PtySession

s = PtySession(sys.argv[1:])
events = {}
events["first_prompt"] = s.read_until(lambda: b"> " in s.out, 120)
s.write(b"Status of pump 7?\r")
mark = len(s.out)
# the reply has started: a few bytes after the echoed question
events["reply_started"] = s.read_until(lambda: len(s.out) > mark + 40, 60)
s.write(b"\x03")
events["stopped"] = s.read_until(lambda: b"[stopped]" in s.out, 30)
# the summary line of the stopped reply (stderr shares the terminal)
events["summary"] = b"finish: cancelled" in s.out[mark:]
# from the marker itself: the next prompt may have come in the same read
after_stop = s.out.find(b"[stopped]") if events["stopped"] else len(s.out)
events["prompt_again"] = s.read_until(lambda: b"> " in s.out[after_stop:], 30)
events["exit_status"] = s.end()
events["output_tail"] = s.out[-300:].decode("utf-8", "replace")
print(json.dumps(events))
