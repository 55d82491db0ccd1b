"""Drives `lfm ask --chat` on a pseudo-terminal: the first question comes from the command line,
a follow-up is typed at the prompt, then Ctrl-D. Prints one JSON line of what happened (read by
ask.test.ts)."""
import json, os, sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "helpers"))
from pty_session import PtySession

PROMPT = b"\x1b[1m? \x1b[0m"
s = PtySession(sys.argv[1:])
events = {}
# The first answer (its timing line ends it), then the prompt for a follow-up.
events["first_answer"] = s.read_until(lambda: b"tokens at" in s.out, 180)
events["prompt"] = s.read_until(lambda: s.out.count(PROMPT) >= 2, 60)
mark = len(s.out)
s.write(b"and the suction lift?\r")
events["second_answer"] = s.read_until(lambda: b"tokens at" in s.out[mark:], 120)
events["second_reused_prefix"] = b"system prefix reused" in s.out[mark:]
events["prompt_again"] = s.read_until(lambda: PROMPT in s.out[mark:] and s.out.rfind(PROMPT) > s.out.rfind(b"tokens at"), 60)
events["exit_status"] = s.end()
events["output_tail"] = s.out[-600:].decode("utf-8", "replace")
print(json.dumps(events))
